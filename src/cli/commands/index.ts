/** The command table, in the order `larch --help` lists them. */
import type { Command } from '../command.ts';
import { announceCmd } from './announce.ts';
import { barrierCommands } from './barrier.ts';
import { bootenvCommands } from './bootenv.ts';
import { checkout } from './checkout.ts';
import { commit } from './commit.ts';
import { compose } from './compose.ts';
import { dbCommands } from './db.ts';
import { daemon } from './daemon.ts';
import { deltaApply, deltaGenerate, deltaList, deltaShow } from './delta.ts';
import { deviceCommands } from './device.ts';
import { failpoints } from './failpoints.ts';
import { fsck } from './fsck.ts';
import { imageBuildCommand } from './image.ts';
import { init } from './init.ts';
import { diff, log, ls, refs, show } from './inspect.ts';
import { keygen } from './keygen.ts';
import { layeringCommands } from './layering.ts';
import { prune } from './prune.ts';
import { publish } from './publish.ts';
import { pullLocal } from './pull-local.ts';
import { serve } from './serve.ts';
import { sendCommandCmd } from './send-command.ts';
import { sign, trust, verify } from './verify.ts';
import { trustCommands } from './trust.ts';

export const commands: Command[] = [init, keygen, commit, compose, sign, verify, trust, ...trustCommands, log, show, ls, diff, ...dbCommands, refs, checkout, fsck, prune, pullLocal, imageBuildCommand, deltaGenerate, deltaApply, deltaList, deltaShow, ...barrierCommands, publish, serve, ...deviceCommands, ...layeringCommands, daemon, announceCmd, sendCommandCmd, ...bootenvCommands, failpoints];

/**
 * What the device commands share: the sysroot of --sysroot, the update context (remote, /etc
 * merger, download bar) and the device lock around a command. Its own file, so the command
 * files (device.ts, layering.ts) import it and not each other.
 */
import { resolve } from 'node:path';
import { withDeviceLock } from '../agent/device-lock.ts';
import { cancelSignal } from '../cancellation.ts';
import { bundleFetcher } from '../agent/remote/bundle-fetch.ts';
import { deltaFileRemote, isDeltaFile } from '../agent/remote/delta-file.ts';
import { remoteOver } from '../agent/remote/remote.ts';
import { mergerFor } from '../agent/etc/merger.ts';
import { DEFAULT_SYSROOT, Sysroot } from '../agent/sysroot.ts';
import type { UpdateContext } from '../agent/update.ts';
import { type Command, type Io, type ParsedArgs, intOption, opt } from './command.ts';
import { createProgressBar } from './progress.ts';
import { type RemoteLimits, minSpeedOf, remoteFor } from './remote.ts';

export function sysrootOf(args: ParsedArgs): Sysroot {
  return new Sysroot(opt(args, 'sysroot') ?? DEFAULT_SYSROOT);
}

/** A download bar's update function; finishProgress() draws its final amount and ends the line. */
export type ProgressFn = ((done: number, total: number | null) => void) & { finish?: () => void };

export function progressFor(io: Io, label: string): ProgressFn | undefined {
  if (!process.stderr.isTTY) return undefined;
  const bar = createProgressBar(label);
  let used = false;
  const fn: ProgressFn = (done, total) => {
    used = true;
    bar.update(done, total);
  };
  // The bar redraws at most every 100 ms: without a last draw a fast transfer ends short of its size.
  fn.finish = () => used && bar.done();
  return fn;
}

export async function context(args: ParsedArgs, io: Io): Promise<UpdateContext> {
  const sysroot = sysrootOf(args);
  const config = await sysroot.readConfig();
  const progress = args.json ? undefined : progressFor(io, 'download');
  // --from-file: a bundle read as the remote (upgrade, deploy): the same checks, no network.
  const file = opt(args, 'from-file');
  if (file !== undefined) {
    // A one-file delta (LARCHDLT) or a bundle (LARCHBDL): told by the magic.
    if (await isDeltaFile(file)) return { sysroot, remote: deltaFileRemote(file), merger: mergerFor(), progress, fromDelta: resolve(file) };
    return { sysroot, remote: remoteOver(await bundleFetcher(file), { cancel: cancelSignal }), merger: mergerFor(), progress, fromFile: resolve(file) };
  }
  return { sysroot, remote: remoteFor(config, remoteLimits(args)), merger: mergerFor(), progress };
}

/** --timeout, --min-speed and --min-speed-time (check, upgrade, deploy); a `larch cancel` ends the exchange too. */
export function remoteLimits(args: ParsedArgs): RemoteLimits {
  const timeoutS = intOption(opt(args, 'timeout'), 'timeout', 'larch', 1);
  const speed = intOption(opt(args, 'min-speed'), 'min-speed', 'larch', 0);
  const speedTime = intOption(opt(args, 'min-speed-time'), 'min-speed-time', 'larch', 1);
  return { timeoutMs: timeoutS === undefined ? undefined : timeoutS * 1000, minSpeed: minSpeedOf(speed, speedTime), cancel: cancelSignal };
}

/** The command, run holding the device lock. */
export function locked(cmd: Command): Command {
  return { ...cmd, run: (args, io) => withDeviceLock(sysrootOf(args), `larch ${cmd.name}`, () => cmd.run(args, io)) };
}

/**
 * Rebooting the device, as a capability the daemon and the CLI verbs are given: on the device's
 * own root (`sysroot.realDevice`) it runs `systemctl reboot` (`reboot` when that fails); on a
 * test sysroot it records the request in S/larch/daemon/reboot-requested.json and the journal
 * instead (`larch sim-boot` then stands in for the reboot). docs/fleet.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../_durable.ts';
import { type JournalEvent, appendJournal } from './journal.ts';
import type { Sysroot } from './sysroot.ts';

/** Reboots (or, on a test sysroot, records that it would) for the reason given. */
export type Reboot = (reason: string) => Promise<void>;

export interface RebootOptions {
  /** A line for the caller's log before the machine goes down. */
  log?: (line: string) => void;
  /** Runs a reboot command and gives its exit status (tests pass a fake; null: it did not run). */
  run?: (command: string, args: string[]) => number | null;
}

/** S/larch/daemon/reboot-requested.json: the last reboot a test sysroot was asked for. */
export function rebootRequestPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'daemon', 'reboot-requested.json');
}

export function rebootFor(sysroot: Sysroot, opts: RebootOptions = {}): Reboot {
  const run = opts.run ?? ((command, args) => spawnSync(command, args, { stdio: 'inherit' }).status);
  if (sysroot.realDevice) {
    return async (reason) => {
      opts.log?.(`rebooting: ${reason}`);
      if (run('systemctl', ['reboot']) !== 0) run('reboot', []);
    };
  }
  return async (reason) => {
    const path = rebootRequestPath(sysroot);
    await mkdir(dirname(path), { recursive: true });
    await writeFileAtomic(path, JSON.stringify({ time: new Date().toISOString(), reason }) + '\n');
    await appendJournal(sysroot.journalPath, { event: 'reboot' as JournalEvent, message: `reboot requested (test sysroot: recorded, not done; larch sim-boot stands in): ${reason}` });
  };
}

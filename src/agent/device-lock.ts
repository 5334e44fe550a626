/**
 * The device lock: one flock(2) on S/larch/lock (the repo lock's mechanism, src/store/lock.ts)
 * held by every command that changes the sysroot (upgrade, deploy, rollback, finalize, cleanup,
 * mark-good/bad, boot-check, sim-boot, pin/unpin, provision) and by the daemon while it runs one
 * of them, so two updates can never write one slot at once. A dead holder never keeps it (the
 * kernel drops a flock with its process). Re-entrant within a process: a command that calls
 * another (sim-boot -> boot-check -> cleanup) takes it once. A sysroot without S/larch (not
 * provisioned, or being provisioned for the first time, which builds its state aside) is not
 * locked. The holder names itself in S/larch/lock.owner (lock-owner.ts), which `larch cancel`
 * reads.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type CancelPhase, cancelRequested, isCancelled, stoppedAt } from '../cancellation.ts';
import { LarchError } from '../errors.ts';
import { type Lock, acquireLock } from '../store/lock.ts';
import { claimLock, releaseClaim } from './lock-owner.ts';
import type { Sysroot } from './sysroot.ts';

/** How long a command waits for the lock's holder by default (LARCH_LOCK_TIMEOUT, seconds, overrides). */
export const DEFAULT_LOCK_WAIT_MS = 60_000;

const held = new Map<string, { lock: Lock; depth: number }>();

export function deviceLockPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'lock');
}

function waitMs(): number {
  const env = process.env.LARCH_LOCK_TIMEOUT;
  if (env === undefined || env === '') return DEFAULT_LOCK_WAIT_MS;
  const s = Number(env);
  if (!Number.isFinite(s) || s < 0) throw new LarchError('USAGE', `LARCH_LOCK_TIMEOUT must be a number of seconds, got '${env}'`, { data: { env: 'LARCH_LOCK_TIMEOUT', value: env } });
  return s * 1000;
}

/**
 * Runs fn holding the device lock, waiting up to LARCH_LOCK_TIMEOUT seconds (default 60), or
 * opts.waitMs, for another holder. `what` names the command in the LOCKED error and in lock.owner.
 * @throws LOCKED when another larch process keeps it longer
 */
export async function withDeviceLock<T>(sysroot: Sysroot, what: string, fn: () => Promise<T>, opts: { waitMs?: number } = {}): Promise<T> {
  const path = deviceLockPath(sysroot);
  const mine = held.get(path);
  if (mine) {
    mine.depth++;
    try {
      return await fn();
    } finally {
      mine.depth--;
    }
  }
  // Not provisioned (yet): nothing to protect, and a mistyped --sysroot must not be created.
  if (!existsSync(sysroot.larchDir)) return fn();
  if (process.env.LARCH_PAUSEPOINT && sysroot.realDevice) {
    throw new LarchError('USAGE', `LARCH_PAUSEPOINT is a test hook: it stops ${what} until 'larch cancel', and ${sysroot.path} is a real device`, { hint: 'unset LARCH_PAUSEPOINT; use it on a test sysroot (--sysroot DIR)', data: { variable: 'LARCH_PAUSEPOINT' } });
  }
  const timeout = opts.waitMs ?? waitMs();
  let lock: Lock;
  try {
    lock = await acquireLock(path, timeout);
  } catch (err) {
    if (err instanceof LarchError && err.code === 'LOCKED') {
      throw new LarchError('LOCKED', `${what}: the device is busy: another larch command (or the daemon) is changing ${sysroot.path} and held the device lock ${path} for ${Math.round(timeout / 1000)} s`, {
        hint: 'wait for it to finish and run the command again (larch history shows what it is doing); set LARCH_LOCK_TIMEOUT=SECONDS to wait longer',
        data: { path },
      });
    }
    throw err;
  }
  const entry = { lock, depth: 1 };
  held.set(path, entry);
  let stopped: Parameters<typeof releaseClaim>[1] = null;
  try {
    await claimLock(sysroot, what);
    return await fn();
  } catch (err) {
    if (cancelRequested() && isCancelled(err)) stopped = { phase: stoppedAt() ?? (err.data.phase as CancelPhase) };
    throw err;
  } finally {
    held.delete(path);
    await releaseClaim(sysroot, stopped).catch(() => {});
    await lock.release();
  }
}

/**
 * Who holds the device lock, and how `larch cancel` reaches it (docs/formats.md "lock.owner and
 * cancel.json"). The lock is a flock held by a helper child (store/lock.ts), so the lock says
 * nothing of the larch process behind it: its holder writes S/larch/lock.owner right after taking
 * it and removes it before letting go. A cancel request is S/larch/cancel.json, written by
 * `larch cancel` and followed by SIGUSR2 to the owner; the owner acts on it only when it names
 * the owner's own lock session, so a stale request, a reused pid or a signal from elsewhere
 * cancels nothing.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../_durable.ts';
import { type CancelPhase, armCancel, armedLockId, disarmCancel, readCancelRequest, requestCancel } from '../cancellation.ts';
import type { Sysroot } from './sysroot.ts';

/** S/larch/lock.owner. */
export interface LockOwner {
  pid: number;
  /** Field 22 of /proc/PID/stat: with pid and boot_id, names one process for the life of a boot. */
  start_ticks: number;
  boot_id: string;
  /** A new random id each time the lock is taken: what a cancel request names. */
  lock_id: string;
  /** What holds it ("larch upgrade", "daemon upgrade"). */
  command: string;
  started: string;
}

/** S/larch/cancel.json. `outcome` and `phase` are the owner's answer, written before it lets go of the lock. */
export interface CancelRequest {
  lock_id: string;
  pid: number;
  start_ticks: number;
  requested: string;
  nonce: string;
  outcome?: 'cancelled';
  phase?: CancelPhase;
}

export const lockOwnerPath = (sysroot: Sysroot) => join(sysroot.larchDir, 'lock.owner');
export const cancelRequestFile = (sysroot: Sysroot) => join(sysroot.larchDir, 'cancel.json');

/** A process's start time in clock ticks since boot, or null when it is gone. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isSafeInteger(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** Is the owner the process it names, still running in this boot? */
export function ownerAlive(owner: LockOwner): boolean {
  return owner.boot_id === bootId() && processStartTicks(owner.pid) === owner.start_ticks;
}

function parseOwner(text: string): LockOwner | null {
  try {
    const o = JSON.parse(text) as LockOwner;
    const ok = Number.isSafeInteger(o.pid) && o.pid > 0 && Number.isSafeInteger(o.start_ticks) && typeof o.boot_id === 'string' && typeof o.lock_id === 'string' && typeof o.command === 'string' && typeof o.started === 'string';
    return ok ? o : null;
  } catch {
    return null;
  }
}

/** lock.owner, or null when there is none or it cannot be read (a holder cut before writing it whole). */
export async function readLockOwner(sysroot: Sysroot): Promise<LockOwner | null> {
  return parseOwner(await readFile(lockOwnerPath(sysroot), 'utf8').catch(() => ''));
}

export async function readCancelRequestFile(sysroot: Sysroot): Promise<CancelRequest | null> {
  try {
    return JSON.parse(await readFile(cancelRequestFile(sysroot), 'utf8')) as CancelRequest;
  } catch {
    return null;
  }
}

let listening = false;

/**
 * The lock was just taken: writes lock.owner (when the filesystem lets it) and makes this
 * process cancellable for this lock session. SIGUSR2 (SIGUSR1 is Node's inspector; SIGTERM and SIGINT keep meaning "exit") makes
 * it read cancel.json. The handler stays installed: SIGUSR2's default action would end the
 * process, and a request that comes between two lock sessions must cancel nothing.
 */
export async function claimLock(sysroot: Sysroot, command: string): Promise<LockOwner> {
  const owner: LockOwner = { pid: process.pid, start_ticks: processStartTicks(process.pid) ?? 0, boot_id: bootId(), lock_id: randomUUID(), command, started: new Date().toISOString() };
  const requestPath = cancelRequestFile(sysroot);
  armCancel({
    lockId: owner.lock_id,
    requestPath,
    readRequest: () => {
      let req: CancelRequest;
      try {
        req = JSON.parse(readFileSync(requestPath, 'utf8')) as CancelRequest;
      } catch {
        return; // not there, or not whole yet (it is written atomically: a rename)
      }
      if (req.pid === owner.pid && req.start_ticks === owner.start_ticks) requestCancel(req.lock_id);
    },
  });
  if (!listening) {
    listening = true;
    process.on('SIGUSR2', () => readCancelRequest());
  }
  // Whole or absent (a rename), but not synced: after a power cut it names a process of another boot.
  // Best-effort: on a full or read-only filesystem the command runs on (and cannot be cancelled).
  const path = lockOwnerPath(sysroot);
  try {
    await writeFile(`${path}.tmp`, JSON.stringify(owner) + '\n');
    await rename(`${path}.tmp`, path);
  } catch {
    await rm(`${path}.tmp`, { force: true }).catch(() => {});
  }
  return owner;
}

/**
 * The lock is about to be let go: answers a cancel request that stopped this session (outcome
 * and phase into cancel.json, for `larch cancel` to report) and removes lock.owner.
 */
export async function releaseClaim(sysroot: Sysroot, stopped: { phase: CancelPhase } | null): Promise<void> {
  const lockId = armedLockId();
  disarmCancel();
  if (stopped && lockId) {
    const req = await readCancelRequestFile(sysroot);
    if (req && req.lock_id === lockId) await writeFileAtomic(cancelRequestFile(sysroot), JSON.stringify({ ...req, outcome: 'cancelled', phase: stopped.phase }) + '\n').catch(() => {});
  }
  await rm(lockOwnerPath(sysroot), { force: true });
}

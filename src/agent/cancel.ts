/**
 * `larch cancel`: stops the command that holds the device lock (a CLI upgrade, deploy, rebase,
 * kargs, or the daemon's job) and leaves the device as it was (docs/reliability.md "Cancel").
 * The request goes through S/larch/cancel.json and SIGUSR2 (lock-owner.ts); the holder ends at
 * its next cancel point, or at once in an exchange with the server. A holder past its point of
 * no return finishes its stage; cancel then takes the lock and unstages what it staged, as
 * `larch rollback` does for a staged update, so the booted slot stays first either way.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { writeFileAtomic } from '../_durable.ts';
import type { CancelPhase } from '../cancellation.ts';
import { LarchError } from '../errors.ts';
import { bootedSlot, readBootState } from './boot.ts';
import { readDeployment } from './deploy.ts';
import { withDeviceLock } from './device-lock.ts';
import { appendJournal } from './journal.ts';
import { type CancelRequest, type LockOwner, cancelRequestFile, ownerAlive, readCancelRequestFile, readLockOwner } from './lock-owner.ts';
import type { Sysroot } from './sysroot.ts';
import { other, planRollback } from '../bootcount/state.ts';
import { rollback } from './update.ts';

/** How long `larch cancel` waits for the holder to stop, by default. */
export const DEFAULT_CANCEL_WAIT_MS = 60_000;

export interface CancelResult {
  /**
   * idle: nothing held the device lock; cancelled: the holder stopped at a cancel point (phase);
   * unstaged: it was past its point of no return and staged a slot, which cancel unstaged;
   * completed: it ended with nothing to undo (it had no cancel point left, or staged nothing).
   */
  result: 'idle' | 'cancelled' | 'unstaged' | 'completed';
  pid: number | null;
  command: string | null;
  phase: CancelPhase | null;
  /** unstaged: the slot whose stage was undone (its old deployment is gone: it is unbootable). */
  slot: string | null;
  version: string | null;
}

/** A request sent: the holder it went to and what it asked. */
export interface SentCancel {
  owner: LockOwner;
  request: CancelRequest;
}

export const IDLE: CancelResult = { result: 'idle', pid: null, command: null, phase: null, slot: null, version: null };

/**
 * Asks the device lock's holder to stop: cancel.json, then SIGUSR2 (to this process too, when it
 * is the holder: the daemon's MQTT cancel). Null when nothing holds the lock.
 */
export async function sendCancel(sysroot: Sysroot): Promise<SentCancel | null> {
  const owner = await readLockOwner(sysroot);
  if (!owner || !ownerAlive(owner)) return null;
  const request: CancelRequest = { lock_id: owner.lock_id, pid: owner.pid, start_ticks: owner.start_ticks, requested: new Date().toISOString(), nonce: randomUUID() };
  await writeFileAtomic(cancelRequestFile(sysroot), JSON.stringify(request) + '\n');
  try {
    process.kill(owner.pid, 'SIGUSR2');
  } catch {
    // Gone since it was read: its lock is free, and what it left is judged by settleCancel.
  }
  return { owner, request };
}

/**
 * Waits up to waitMs for the holder to let go of the lock, then says what it did with the
 * request, undoing a stage it made past its point of no return.
 * @throws LOCKED when it still holds the lock after waitMs
 */
export async function settleCancel(sysroot: Sysroot, sent: SentCancel, opts: { waitMs?: number } = {}): Promise<CancelResult> {
  const waitMs = opts.waitMs ?? DEFAULT_CANCEL_WAIT_MS;
  const { owner, request } = sent;
  const who = `${owner.command} (pid ${owner.pid})`;
  try {
    return await withDeviceLock(sysroot, 'larch cancel', () => judge(sysroot, owner, request, who), { waitMs });
  } catch (err) {
    if (err instanceof LarchError && err.code === 'LOCKED') {
      throw new LarchError('LOCKED', `${who} was asked to stop and still holds the device lock after ${Math.round(waitMs / 1000)} s: it is past its point of no return (replacing the other slot's files) or in a step with no cancel point`, {
        hint: "run 'larch cancel' again to wait longer (--wait SECONDS): once it ends, cancel unstages what it staged",
        data: { pid: owner.pid, command: owner.command, waited_s: Math.round(waitMs / 1000) },
      });
    }
    throw err;
  } finally {
    await rm(cancelRequestFile(sysroot), { force: true }).catch(() => {});
  }
}

/** `larch cancel`: sendCancel, then settleCancel. */
export async function cancelRunning(sysroot: Sysroot, opts: { waitMs?: number } = {}): Promise<CancelResult> {
  const sent = await sendCancel(sysroot);
  return sent ? settleCancel(sysroot, sent, opts) : IDLE;
}

/** Holding the lock the holder let go of: what it did with the request. */
async function judge(sysroot: Sysroot, owner: LockOwner, request: CancelRequest, who: string): Promise<CancelResult> {
  const base = { pid: owner.pid, command: owner.command };
  const answer = await readCancelRequestFile(sysroot);
  let result: CancelResult;
  if (answer?.nonce === request.nonce && answer.outcome === 'cancelled') {
    result = { result: 'cancelled', ...base, phase: answer.phase ?? null, slot: null, version: null };
  } else {
    const staged = await stagedSince(sysroot, owner.started);
    if (staged) {
      const r = await rollback(sysroot);
      result = { result: 'unstaged', ...base, phase: null, slot: r.slot, version: r.version };
    } else {
      result = { result: 'completed', ...base, phase: null, slot: null, version: null };
    }
  }
  const message = {
    cancelled: `cancelled ${who} during the ${result.phase}; nothing was changed`,
    unstaged: `${who} was past its point of no return; the version ${result.version} it staged in slot ${result.slot} was unstaged (the booted slot stays first)`,
    completed: `${who} ended before the request reached a cancel point; it had nothing to undo`,
    idle: '',
  }[result.result];
  await appendJournal(sysroot.journalPath, { event: 'cancel', message, data: { result: result.result, pid: owner.pid, command: owner.command, phase: result.phase } });
  return result;
}

/** Did the holder that started at `since` stage the other slot (staged first, not yet booted)? */
async function stagedSince(sysroot: Sysroot, since: string): Promise<boolean> {
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = (await bootedSlot(sysroot)) ?? state.order[0];
  const record = await readDeployment(sysroot, other(booted));
  if (!record || Date.parse(record.deployedAt) < Date.parse(since)) return false;
  return planRollback(state, booted)?.type === 'upgrade-cancelled';
}

/**
 * The process's cancel request (`larch cancel`, docs/reliability.md "Cancel"). The device lock's
 * holder (agent/device-lock.ts) arms it for each time it takes the lock; the SIGUSR2 handler
 * (agent/cancel.ts) cancels it. A cancel ends two kinds of waiting:
 *   - the exchange with the remote: `cancelSignal()` is the signal its transfers take;
 *   - the work between transfers: the cancel points, failpoints (failpoint.ts) where nothing has
 *     been changed that the device cannot do without, throw the cancel error when they are passed.
 * Past the last cancel point of staging (the point of no return: the other slot is being
 * replaced) nothing checks the request: the command ends, and `larch cancel` undoes its stage.
 * Here and not in agent/: failpoint.ts, the bottom of every layer, reads it.
 */
import { LarchError } from './errors.ts';

/** Where the command was when it stopped: the phases a cancel can end, in their order (check: the summary and the checks on it). */
export type CancelPhase = 'check' | 'download' | 'verify' | 'staging';

interface Armed {
  /** The lock session this request belongs to (lock.owner's lock_id). */
  lockId: string;
  controller: AbortController;
  /** S/larch/cancel.json: a pause point waits for it. */
  requestPath: string;
  /** Reads the request file and cancels when it names this session (agent/cancel.ts). */
  readRequest: () => void;
  /** The phase the command is in (enterPhase), which a cancel during an exchange reports. */
  phase: CancelPhase;
  /** The phase of the cancel point that threw, once one has. */
  stoppedAt: CancelPhase | null;
}

let armed: Armed | null = null;

/** The error a cancelled command ends with: IO (exit 9) with data.reason "cancelled", as the daemon's preempted transfers. */
export function cancelError(phase: CancelPhase): LarchError {
  return new LarchError('IO', `cancelled by 'larch cancel' during the ${phase}; the device is as it was before the command`, {
    hint: 'run the command again when you want it; a download resumes where it stopped',
    data: { reason: 'cancelled', phase },
  });
}

/** Is err the error of a cancel (of larch cancel, or of a daemon command preempting a transfer)? */
export function isCancelled(err: unknown): err is LarchError {
  return err instanceof LarchError && err.data.reason === 'cancelled';
}

/** Makes the process cancellable as lock session lockId (the device lock was taken); forgets an earlier request. */
export function armCancel(session: { lockId: string; requestPath: string; readRequest: () => void }): void {
  armed = { ...session, controller: new AbortController(), phase: 'check', stoppedAt: null };
}

/** The command enters `phase` (upgrade: the download starts); a cancel in an exchange from now reports it. */
export function enterPhase(phase: CancelPhase): void {
  if (armed) armed.phase = phase;
}

/** Reads the request file now (a pause point found it): cancels when it names the armed session. */
export function readCancelRequest(): void {
  armed?.readRequest();
}

/** The lock was released: a request that comes now belongs to no command. */
export function disarmCancel(): void {
  armed = null;
}

/** The lock session that may be cancelled now, or null. */
export function armedLockId(): string | null {
  return armed?.lockId ?? null;
}

export function cancelRequestPath(): string | null {
  return armed?.requestPath ?? null;
}

/** Cancels the armed command when lockId is its session; false when it is not (a stale or foreign request). */
export function requestCancel(lockId: string): boolean {
  if (!armed || armed.lockId !== lockId) return false;
  if (!armed.controller.signal.aborted) armed.controller.abort(cancelError(armed.phase));
  return true;
}

/** The signal transfers end on (undefined when no command is armed). */
export function cancelSignal(): AbortSignal | undefined {
  return armed?.controller.signal;
}

/** Whether a cancel has been asked for the armed command. */
export function cancelRequested(): boolean {
  return armed?.controller.signal.aborted === true;
}

/** Where the armed command stopped: the phase of the cancel point it threw at, else null. */
export function stoppedAt(): CancelPhase | null {
  return armed?.stoppedAt ?? null;
}

/** A cancel point: throws the cancel error of `phase` when a cancel was asked for. */
export function checkCancel(phase: CancelPhase): void {
  if (!armed || !armed.controller.signal.aborted) return;
  armed.stoppedAt = phase;
  throw cancelError(phase);
}

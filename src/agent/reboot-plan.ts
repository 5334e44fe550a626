/**
 * When policy apply-and-reboot reboots into a staged update, by `reboot_strategy` (as Zincati):
 *
 * - immediate: at once;
 * - periodic: at the next weekly window (reboot-window.ts), or at once when inside one;
 * - fleet_lock: once a FleetLock server grants a slot (fleetlock.ts), retried with backoff; the
 *   slot is given back (steady-state) when the daemon runs on a confirmed (good) slot.
 *
 * The waiting runs beside the daemon's work queue, never in it: announcements and commands go
 * on while a device waits for its window or lock (a newer update is staged over the older one
 * and the wait goes on). The reboot itself is the daemon's `go`, run in its queue.
 */
import type { DaemonConfig } from './policy.ts';
import { abortableSleep, fleetLockUntilOk } from './fleetlock.ts';
import { MINUTE_MS, describeWindowStart, parseWindowSpec, windowPosition } from './reboot-window.ts';

/** What the device is waiting for before it reboots (shown in the status and the metrics). */
export type RebootWait = { kind: 'window'; at: Date; window: string } | { kind: 'lock'; attempts: number; reason: string | null };

export interface RebootPlanDeps {
  config: Pick<DaemonConfig, 'rebootStrategy' | 'rebootWindows' | 'fleetLockUrl' | 'fleetLockGroup' | 'fleetLockRetryS'>;
  deviceId: string;
  now(): Date;
  log(line: string): void;
  /** The wait changed (null: not waiting any more). */
  onWait(w: RebootWait | null): void;
  /** The moment has come: journal, finalize, reboot. False when it did not reboot (nothing staged any more). */
  go(why: string, data: Record<string, unknown>): Promise<boolean>;
  /** Whether the booted slot is confirmed good (the FleetLock slot is given back only then). */
  bootedGood(): Promise<boolean>;
  /** Whether an update is still staged (an operator's rollback ends the wait). */
  staged(): Promise<boolean>;
  random?: () => number;
}

/**
 * Windows are looked at again at least this often, not only when the next one should open: a
 * device without a real-time clock starts in 1970 and jumps when NTP answers.
 */
const WINDOW_RECHECK_MS = MINUTE_MS;
/** How often a booted, not yet confirmed slot is looked at before the FleetLock release. */
const CONFIRM_POLL_MS = 2000;

export class RebootPlanner {
  private readonly abort = new AbortController();
  private waiting = false;
  private rebooted = false;
  /** The steady-state release (fleet_lock) that must finish before a new pre-reboot. */
  private steady: Promise<void> = Promise.resolve();

  constructor(private readonly d: RebootPlanDeps) {}

  /** At daemon start: with fleet_lock, give back a slot held from before the reboot. */
  start(): void {
    if (this.d.config.rebootStrategy === 'fleet_lock') this.steady = this.release();
  }

  stop(): void {
    this.abort.abort();
  }

  /** Something is staged and the policy wants it booted: reboot now or wait, by strategy. Idempotent while waiting. */
  request(reason: string): void {
    if (this.waiting || this.rebooted || this.abort.signal.aborted) return;
    this.waiting = true;
    const strategy = this.d.config.rebootStrategy;
    const run = strategy === 'periodic' ? this.waitWindow(reason) : strategy === 'fleet_lock' ? this.waitLock(reason) : this.reboot(`${reason}; reboot_strategy immediate`, { strategy });
    void run
      .catch((err) => this.d.log(`reboot: ${(err as Error).message}`))
      .finally(() => {
        this.waiting = false;
      });
  }

  get isWaiting(): boolean {
    return this.waiting;
  }

  private async reboot(why: string, data: Record<string, unknown>): Promise<boolean> {
    this.d.onWait(null);
    const done = await this.d.go(why, data);
    if (done) this.rebooted = true;
    return done;
  }

  private async waitWindow(reason: string): Promise<void> {
    const windows = this.d.config.rebootWindows.flatMap(parseWindowSpec);
    let announced = 0;
    while (!this.abort.signal.aborted) {
      if (!(await this.stillStaged())) return;
      const now = this.d.now();
      const p = windowPosition(windows, now);
      if (p.open) {
        await this.reboot(`${reason}; reboot window '${p.window.spec}' is open until ${p.end.toISOString()}`, { strategy: 'periodic', window: p.window.spec, window_end: p.end.toISOString() });
        return;
      }
      if (p.start.getTime() !== announced) {
        announced = p.start.getTime();
        this.d.log(`reboot: ${reason}; waiting for the reboot window '${p.window.spec}' (${describeWindowStart(p.start)})`);
        this.d.onWait({ kind: 'window', at: p.start, window: p.window.spec });
      }
      await abortableSleep(Math.min(Math.max(1, p.start.getTime() - now.getTime()), WINDOW_RECHECK_MS), this.abort.signal);
    }
  }

  private async waitLock(reason: string): Promise<void> {
    const { fleetLockUrl: url, fleetLockGroup: group } = this.d.config;
    // A slot held from before the last reboot is given back first: otherwise the release still
    // being retried could give back the slot this wait is about to take.
    this.d.onWait({ kind: 'lock', attempts: 0, reason: null });
    await this.steady;
    this.d.log(`reboot: ${reason}; asking ${url} for a reboot slot (group ${group})`);
    const ok = await fleetLockUntilOk(url!, 'pre-reboot', this.d.deviceId, group, {
      maxDelayS: Math.max(1, this.d.config.fleetLockRetryS),
      signal: this.abort.signal,
      random: this.d.random,
      giveUp: async () => !(await this.stillStaged()),
      onRetry: (a, attempt, ms) => {
        this.d.log(`reboot: no FleetLock slot yet (${a.reason}); attempt ${attempt}, again in ${(ms / 1000).toFixed(1)} s`);
        this.d.onWait({ kind: 'lock', attempts: attempt, reason: a.reason });
      },
    });
    if (!ok) return;
    const done = await this.reboot(`${reason}; FleetLock slot granted by ${url} (group ${group})`, { strategy: 'fleet_lock', fleet_lock_url: url, group });
    // Nothing staged any more (rolled back by an operator meanwhile): the slot is not needed.
    if (!done) this.steady = this.release();
  }

  /** False (and the wait shown as over) when nothing is staged any more. */
  private async stillStaged(): Promise<boolean> {
    if (await this.d.staged().catch(() => true)) return true;
    this.d.log('reboot: nothing is staged any more (rolled back?): not waiting to reboot');
    this.d.onWait(null);
    return false;
  }

  /** steady-state once the booted slot is good, retried until the server says 200. */
  private async release(): Promise<void> {
    const { fleetLockUrl: url, fleetLockGroup: group } = this.d.config;
    while (!this.abort.signal.aborted && !(await this.d.bootedGood().catch(() => false))) await abortableSleep(CONFIRM_POLL_MS, this.abort.signal);
    if (this.abort.signal.aborted) return;
    const ok = await fleetLockUntilOk(url!, 'steady-state', this.d.deviceId, group, {
      maxDelayS: Math.max(1, this.d.config.fleetLockRetryS),
      signal: this.abort.signal,
      random: this.d.random,
      onRetry: (a, attempt) => this.d.log(`fleetlock: steady-state refused (${a.reason}); attempt ${attempt}`),
    });
    if (ok) this.d.log(`fleetlock: steady state reported to ${url} (group ${group}): any reboot slot held is released`);
  }
}

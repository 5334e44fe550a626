/**
 * The daemon's retained status message (docs/formats.md §13.4), built from the device's status
 * and what the daemon is doing. Pure: state in, the message object out; the clock is passed in.
 */
import type { UpdateState } from './metrics.ts';
import type { Status } from '../status.ts';

/** What the daemon is doing about updates: the status message's `update` object. */
export interface UpdateView {
  state: UpdateState;
  announced: { ref: string; commit: string; version: string; rollout: number; created: number; selected: boolean; position: number } | null;
  progress: { done: number; total: number | null } | null;
  /** Staged and waiting to reboot: for a reboot window or a FleetLock slot. */
  reboot_wait: 'window' | 'lock' | null;
  /** window: when the next window opens (ISO); lock: null. */
  reboot_at: string | null;
  /** lock: refused attempts so far and the last refusal. */
  lock: { attempts: number; reason: string | null } | null;
  /** The announced update failed: when it is tried again, and how many attempts failed so far. */
  retry: { at: string; failures: number } | null;
}

export const IDLE_UPDATE: UpdateView = { state: 'idle', announced: null, progress: null, reboot_wait: null, reboot_at: null, lock: null, retry: null };

/** An announcement, a periodic check's result or a command the daemon did not act on, and why (a short kebab-case reason). */
export interface Skip {
  reason: string;
  message: string;
  time: string;
}

/** The daemon's side of the message: who, which message of this run, and what it is doing. */
export interface DaemonView {
  device: string;
  /** Counts the messages of this run: a consumer keeps the highest. */
  seq: number;
  /** When this run started (ISO). */
  started: string;
  policy: string;
  update: UpdateView;
  lastError: { code: string; message: string; time: string } | null;
  lastSkip?: Skip | null;
  /** The last successful check of the remote's summary (ISO, null: none this run), and whether that is too long ago (isStale). */
  lastCheck?: { time: string | null; stale: boolean };
}

/** Checks missed before the status says `stale`: a device that cannot reach (or verify) its remote for this many intervals. */
export const STALE_INTERVALS = 3;

/**
 * Whether the device's view of its remote is stale: periodic checks are on and none succeeded for
 * more than STALE_INTERVALS intervals (counted from the daemon's start when none succeeded yet).
 * Seconds since the epoch.
 */
export function isStale(lastCheckS: number | null, startedS: number, intervalS: number, nowS: number): boolean {
  if (intervalS <= 0) return false;
  return nowS - (lastCheckS ?? startedS) > STALE_INTERVALS * intervalS;
}

/** The message for the status topic; `online` false for the last one a clean stop sends. `now` stamps it. */
export function statusMessage(s: Status, d: DaemonView, now: Date, online = true): Record<string, unknown> {
  const dep = (x: Status['booted']) => (x ? { slot: x.slot, version: x.version, commit: x.commit, good: x.good, tries_left: x.tries_left } : null);
  const booted = s.booted;
  return {
    format: 1,
    online,
    device: d.device,
    seq: d.seq,
    time: now.toISOString(),
    started: d.started,
    version: booted?.version ?? null,
    commit: booted?.commit ?? null,
    slot: booted?.slot ?? null,
    ref: s.ref,
    boot: { state: s.boot.rescue ? 'rescue' : booted ? (booted.good ? 'good' : 'unconfirmed') : 'unknown', order: s.boot.order, last_good: s.boot.last_good, rescue: s.boot.rescue },
    pending: dep(s.pending),
    rollback: dep(s.rollback),
    pinned: s.pinned,
    policy: d.policy,
    update: d.update,
    last_boot: s.last_boot ? { time: s.last_boot.time, slot: s.last_boot.slot, healthy: s.last_boot.healthy, fell_back: s.last_boot.fell_back, outcome: s.last_boot.outcome } : null,
    last_update: s.last_update,
    // The daemon's own error is newer than the last update's record when it has one.
    last_error: d.lastError ?? (s.last_update?.error ? { ...s.last_update.error, time: s.last_update.time } : null),
    last_skip: d.lastSkip ?? null,
    last_check: d.lastCheck?.time ?? null,
    stale: d.lastCheck?.stale ?? false,
    failed_releases: s.failed_releases.map((f) => ({ commit: f.commit, version: f.version, time: f.time, reason: f.reason, failed_checks: f.failed_checks })),
  };
}

/** What the broker keeps when the device drops off without a clean stop (the MQTT last will), and a stop's fallback. */
export function offlineMessage(device: string): Record<string, unknown> {
  return { format: 1, online: false, device };
}

/**
 * Pure: the fleet view's device records (docs/design/issue-22-fleet-view.md §3.2, §4.2). A record
 * is folded from what a device puts on the broker: its retained status (formats.md §13.4), its
 * last will, its journal lines (§13.5) and its command results. Only parsed fields are kept,
 * every string capped, so a record costs a bounded few KiB whatever a device sends; and a
 * device's relation to each release it touches (booted, staged, fell back, failed, downloading)
 * is computed from the status alone, for the API and the rollout counts.
 */
import { isValidDeviceId } from '../../mqtt/format.ts';

/** The most bytes of a message the view reads; bigger ones are dropped (and counted). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
const JOURNAL_LINES = 5;
const FAILED_RELEASES = 8;

export type BootState = 'good' | 'unconfirmed' | 'rescue' | 'unknown';
export type Relation = 'booted-good' | 'booted-unconfirmed' | 'rescue' | 'staged' | 'fell-back' | 'failed' | 'downloading';
export type DeviceState = 'rescue' | 'failed' | 'fell-back' | 'staged' | 'booted-unconfirmed' | 'downloading' | 'booted-good' | 'unknown';

export interface Release {
  version: string | null;
  commit: string;
}

export interface DeviceRecord {
  device_id: string;
  online: boolean;
  /** The status message's run and order (a consumer keeps the highest seq of a run). */
  started: string | null;
  seq: number;
  /** When the last status was sent (ISO), null before any. */
  last_status: string | null;
  ref: string | null;
  version: string | null;
  commit: string | null;
  slot: string | null;
  boot_state: BootState;
  pending: Release | null;
  update_state: string | null;
  announced: { version: string | null; commit: string; rollout: number | null; selected: boolean | null } | null;
  position: number | null;
  progress: { done: number; total: number | null } | null;
  retry_failures: number;
  last_error: { code: string; message: string; time: string | null } | null;
  last_skip: { reason: string; message: string; time: string | null } | null;
  last_boot: { time: string | null; healthy: boolean | null; fell_back: boolean; outcome: string | null } | null;
  last_update: { result: string; commit: string | null; version: string | null; code: string | null } | null;
  failed_releases: { commit: string; version: string | null; reason: string; time: string | null; failed_checks: string[] }[];
  stale: boolean;
  journal: { seq: number; time: string | null; event: string; message: string }[];
  last_command: { cmd: string | null; result: string; time: string | null } | null;
  /** live: from the broker; snapshot: loaded from R/fleet/devices.json, not yet confirmed. */
  source: 'live' | 'snapshot';
}

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
/**
 * A device-supplied string, capped (the page shows it with textContent; the cap bounds memory).
 * A cut string is copied: V8's slice of a string keeps the whole original alive (measured: 57 KB
 * per record from a 59 KiB status, against 2 KB with the copy).
 */
const text = (v: unknown, max: number): string | null => (typeof v === 'string' ? (v.length > max ? Buffer.from(`${v.slice(0, max - 1)}…`).toString() : v) : null);
const commitId = (v: unknown): string | null => (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);

export function emptyRecord(device: string): DeviceRecord {
  return {
    device_id: device, online: false, started: null, seq: -1, last_status: null, ref: null, version: null, commit: null, slot: null,
    boot_state: 'unknown', pending: null, update_state: null, announced: null, position: null, progress: null, retry_failures: 0,
    last_error: null, last_skip: null, last_boot: null, last_update: null, failed_releases: [], stale: false, journal: [], last_command: null, source: 'live',
  };
}

/** The device id a topic `larch/v1/device/ID/...` names, when it is a valid one. */
export function topicDevice(topic: string): { device: string; kind: 'status' | 'journal' | 'result' } | null {
  const m = /^larch\/v1\/device\/([^/]+)\/(status|journal|cmd\/result)$/.exec(topic);
  if (!m || !isValidDeviceId(m[1])) return null;
  return { device: m[1], kind: m[2] === 'cmd/result' ? 'result' : (m[2] as 'status' | 'journal') };
}

/** A message body as an object of format 1 for `device`, or null (not JSON, too big, another format, another device). */
export function parseBody(payload: Uint8Array, device: string): Record<string, unknown> | null {
  if (payload.length === 0 || payload.length > MAX_MESSAGE_BYTES) return null;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return null;
  }
  if (!isObj(v) || v.format !== 1 || v.device !== device) return null;
  return v;
}

/**
 * The record after a status message (or a last will: `online: false` and nothing else, which
 * keeps what was known). Returns null when the message is older than the record (same run, lower
 * or equal seq): the broker may deliver a retained status after a live one.
 */
export function applyStatus(prev: DeviceRecord, m: Record<string, unknown>): DeviceRecord | null {
  if (m.online === false && m.seq === undefined) return { ...prev, online: false };
  const started = text(m.started, 40);
  const seq = num(m.seq) ?? 0;
  if (prev.source === 'live' && started !== null && started === prev.started && seq <= prev.seq) return null;
  const boot = isObj(m.boot) ? m.boot : {};
  const update = isObj(m.update) ? m.update : {};
  const announced = isObj(update.announced) ? update.announced : null;
  const pending = isObj(m.pending) && commitId(m.pending.commit) ? { version: text(m.pending.version, 64), commit: commitId(m.pending.commit)! } : null;
  const lastBoot = isObj(m.last_boot) ? m.last_boot : null;
  const lastUpdate = isObj(m.last_update) ? m.last_update : null;
  const err = isObj(m.last_error) ? m.last_error : null;
  const skip = isObj(m.last_skip) ? m.last_skip : null;
  const progress = isObj(update.progress) && num(update.progress.done) !== null ? { done: num(update.progress.done)!, total: num(update.progress.total) } : null;
  const bootState = boot.state === 'good' || boot.state === 'unconfirmed' || boot.state === 'rescue' ? boot.state : 'unknown';
  return {
    ...prev,
    online: m.online !== false,
    started,
    seq,
    last_status: text(m.time, 40),
    ref: text(m.ref, 256),
    version: text(m.version, 64),
    commit: commitId(m.commit),
    slot: text(m.slot, 8),
    boot_state: bootState,
    pending,
    update_state: text(update.state, 32),
    announced: announced && commitId(announced.commit) ? { version: text(announced.version, 64), commit: commitId(announced.commit)!, rollout: num(announced.rollout), selected: bool(announced.selected) } : null,
    position: announced ? num(announced.position) : null,
    progress,
    retry_failures: isObj(update.retry) ? (num(update.retry.failures) ?? 0) : 0,
    last_error: err && typeof err.code === 'string' ? { code: text(err.code, 32)!, message: text(err.message, 200) ?? '', time: text(err.time, 40) } : null,
    last_skip: skip && typeof skip.reason === 'string' ? { reason: text(skip.reason, 32)!, message: text(skip.message, 200) ?? '', time: text(skip.time, 40) } : null,
    last_boot: lastBoot ? { time: text(lastBoot.time, 40), healthy: bool(lastBoot.healthy), fell_back: lastBoot.fell_back === true, outcome: text(lastBoot.outcome, 200) } : null,
    last_update: lastUpdate && typeof lastUpdate.result === 'string' ? { result: text(lastUpdate.result, 32)!, commit: commitId(lastUpdate.commit), version: text(lastUpdate.version, 64), code: isObj(lastUpdate.error) ? text(lastUpdate.error.code, 32) : null } : null,
    failed_releases: (Array.isArray(m.failed_releases) ? m.failed_releases : [])
      .filter((f): f is Record<string, unknown> => isObj(f) && commitId(f.commit) !== null && typeof f.reason === 'string')
      .slice(-FAILED_RELEASES)
      .map((f) => ({ commit: commitId(f.commit)!, version: text(f.version, 64), reason: text(f.reason, 32)!, time: text(f.time, 40), failed_checks: (Array.isArray(f.failed_checks) ? f.failed_checks : []).slice(0, 8).map((c) => text(c, 64)).filter((c): c is string => c !== null) })),
    stale: m.stale === true,
    source: 'live',
  };
}

/** The record after a journal line; lines at or below the highest seq seen are duplicates (§13.5). */
export function applyJournal(prev: DeviceRecord, m: Record<string, unknown>): DeviceRecord | null {
  const seq = num(m.seq);
  if (seq === null || typeof m.event !== 'string') return null;
  const last = prev.journal.at(-1);
  if (last && seq <= last.seq) return null;
  const line = { seq, time: text(m.time, 40), event: text(m.event, 32)!, message: text(m.message, 160) ?? '' };
  return { ...prev, journal: [...prev.journal, line].slice(-JOURNAL_LINES) };
}

export function applyCommandResult(prev: DeviceRecord, m: Record<string, unknown>): DeviceRecord | null {
  if (typeof m.result !== 'string') return null;
  return { ...prev, last_command: { cmd: text(m.cmd, 32), result: text(m.result, 16)!, time: text(m.time, 40) } };
}

/** Errors a daemon retries by itself: not a verdict on the release. */
const TRANSIENT = new Set(['IO', 'LOCKED']);
const FELL_BACK = new Set(['fell-back', 'tries-exhausted']);

/**
 * Each release the device touches and how, one relation per commit, first match winning:
 * booted (good, unconfirmed, rescue), staged, fell back, failed, downloading (§4.2).
 */
export function relations(r: DeviceRecord): (Release & { relation: Relation; failed_checks?: string[] })[] {
  const out: (Release & { relation: Relation; failed_checks?: string[] })[] = [];
  const seen = new Set<string>();
  const add = (commit: string | null, version: string | null, relation: Relation, failedChecks?: string[]) => {
    if (commit === null || seen.has(commit)) return;
    seen.add(commit);
    out.push({ version, commit, relation, ...(failedChecks ? { failed_checks: failedChecks } : {}) });
  };
  if (r.commit !== null) add(r.commit, r.version, r.boot_state === 'rescue' ? 'rescue' : r.boot_state === 'unconfirmed' ? 'booted-unconfirmed' : 'booted-good');
  if (r.pending) add(r.pending.commit, r.pending.version, 'staged');
  for (const f of r.failed_releases) {
    if (FELL_BACK.has(f.reason)) add(f.commit, f.version, 'fell-back', f.failed_checks);
    else if (f.reason === 'marked-bad') add(f.commit, f.version, 'failed');
  }
  if (r.last_update?.result === 'error' && r.last_update.commit !== null && r.last_update.commit !== r.commit && !TRANSIENT.has(r.last_update.code ?? '')) {
    add(r.last_update.commit, r.last_update.version, 'failed');
  }
  if (r.announced && r.retry_failures >= 3) add(r.announced.commit, r.announced.version, 'failed');
  if (r.announced && ['checking', 'downloading', 'downloaded'].includes(r.update_state ?? '')) add(r.announced.commit, r.announced.version, 'downloading');
  return out;
}

/** One word per device for the table and its filters; `inFlight` is the commit its ref is rolling out. */
export function deviceState(r: DeviceRecord, inFlight: string | null = null): DeviceState {
  const rel = relations(r);
  const to = (relation: Relation) => rel.some((x) => x.relation === relation && (inFlight === null || x.commit === inFlight));
  if (r.boot_state === 'rescue') return 'rescue';
  if (r.update_state === 'error' || to('failed')) return 'failed';
  if (to('fell-back') || r.last_boot?.fell_back) return 'fell-back';
  if (r.pending) return 'staged';
  if (r.boot_state === 'unconfirmed') return 'booted-unconfirmed';
  if (rel.some((x) => x.relation === 'downloading')) return 'downloading';
  if (r.boot_state === 'good' && r.commit !== null) return 'booted-good';
  return 'unknown';
}

/** A device as `/api/fleet/devices` gives it. */
export function apiDevice(r: DeviceRecord, inFlight: string | null = null): Record<string, unknown> {
  return {
    device_id: r.device_id,
    online: r.online,
    ref: r.ref,
    version: r.version,
    commit: r.commit,
    state: deviceState(r, inFlight),
    boot_state: r.boot_state,
    update_state: r.update_state,
    pending: r.pending,
    announced: r.announced,
    position: r.position,
    progress: r.progress,
    releases: relations(r),
    last_status: r.last_status,
    last_error: r.last_error,
    last_skip: r.last_skip,
    last_boot: r.last_boot,
    journal: r.journal,
    last_command: r.last_command,
    stale: r.stale,
    source: r.source,
  };
}

/** Counts of the devices following `ref` per relation to `release` (the release in flight). */
export interface RolloutCounts {
  devices: number;
  online: number;
  not_moved: number;
  downloading: number;
  staged: number;
  trying: number;
  good: number;
  fell_back: number;
  failed: number;
  took: number;
  decided: number;
  failure_pct: number;
}

export function rolloutCounts(records: Iterable<DeviceRecord>, ref: string, release: string | null): RolloutCounts {
  const c: RolloutCounts = { devices: 0, online: 0, not_moved: 0, downloading: 0, staged: 0, trying: 0, good: 0, fell_back: 0, failed: 0, took: 0, decided: 0, failure_pct: 0 };
  for (const r of records) {
    if (r.ref !== ref) continue;
    c.devices++;
    if (r.online) c.online++;
    const rel = release === null ? undefined : relations(r).find((x) => x.commit === release)?.relation;
    if (rel === undefined) c.not_moved++;
    else if (rel === 'downloading') c.downloading++;
    else if (rel === 'staged') c.staged++;
    else if (rel === 'booted-unconfirmed') c.trying++;
    else if (rel === 'booted-good') c.good++;
    else if (rel === 'fell-back' || rel === 'rescue') c.fell_back++;
    else if (rel === 'failed') c.failed++;
  }
  c.took = c.staged + c.trying + c.good + c.fell_back + c.failed;
  c.decided = c.good + c.fell_back + c.failed;
  c.failure_pct = c.decided === 0 ? 0 : Math.round(((c.fell_back + c.failed) / c.decided) * 10000) / 100;
  return c;
}

/** Devices per version and relation, for the page's bars. */
export function versionCounts(records: Iterable<DeviceRecord>, ref: string): { version: string | null; commit: string; booted_good: number; booted_unconfirmed: number; rescue: number; staged: number; downloading: number; fell_back: number; failed: number }[] {
  const by = new Map<string, { version: string | null; commit: string; booted_good: number; booted_unconfirmed: number; rescue: number; staged: number; downloading: number; fell_back: number; failed: number }>();
  const key: Record<Relation, 'booted_good' | 'booted_unconfirmed' | 'rescue' | 'staged' | 'downloading' | 'fell_back' | 'failed'> = {
    'booted-good': 'booted_good', 'booted-unconfirmed': 'booted_unconfirmed', rescue: 'rescue', staged: 'staged', downloading: 'downloading', 'fell-back': 'fell_back', failed: 'failed',
  };
  for (const r of records) {
    if (r.ref !== ref) continue;
    for (const x of relations(r)) {
      const row = by.get(x.commit) ?? { version: x.version, commit: x.commit, booted_good: 0, booted_unconfirmed: 0, rescue: 0, staged: 0, downloading: 0, fell_back: 0, failed: 0 };
      if (row.version === null) row.version = x.version;
      row[key[x.relation]]++;
      by.set(x.commit, row);
    }
  }
  return [...by.values()].sort((a, b) => (a.version ?? '').localeCompare(b.version ?? '') || a.commit.localeCompare(b.commit));
}

/** Fallbacks of `ref`'s devices grouped by the health check that failed (a device may count under several). */
export function fallbacksByCheck(records: Iterable<DeviceRecord>, ref: string): { version: string | null; check: string; devices: number }[] {
  const by = new Map<string, { version: string | null; check: string; devices: number }>();
  for (const r of records) {
    if (r.ref !== ref) continue;
    for (const x of relations(r)) {
      if (x.relation !== 'fell-back') continue;
      for (const check of x.failed_checks?.length ? x.failed_checks : ['(none reported)']) {
        const k = `${x.commit}\u0000${check}`;
        const row = by.get(k) ?? { version: x.version, check, devices: 0 };
        row.devices++;
        by.set(k, row);
      }
    }
  }
  return [...by.values()].sort((a, b) => b.devices - a.devices || a.check.localeCompare(b.check));
}

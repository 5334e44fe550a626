/**
 * Releases that failed on this device (docs/formats.md, "S/larch/failed.json"): a commit that
 * fell back (its tries ran out, or boot-check found the bootloader had left it) or that was
 * marked bad by hand is remembered, so that nothing stages it again by itself; only
 * `larch deploy VERSION --retry-failed` does. A newer commit clears the way: the refusal is for
 * that commit id only. Pure: values in and out; the I/O is in failed-store.ts.
 */
import { sameKargs } from './kargs.ts';

/** Why a commit counts as failed here. */
export type FailureReason = 'tries-exhausted' | 'fell-back' | 'marked-bad';

export interface FailedRelease {
  commit: string;
  version: string;
  /** When it failed (ISO 8601). */
  time: string;
  reason: FailureReason;
  /** The required health checks that failed (the last boot-check of that commit); may be empty. */
  failed_checks: string[];
  /** The slot it failed in. */
  slot: string;
  /**
   * The kernel arguments it failed with (a `larch kargs` deployment of a good commit fails by its
   * arguments, not its tree); absent or null: with any arguments (records before kargs, devices
   * whose arguments larch does not manage).
   */
  kargs?: string[] | null;
}

/** The file's content. */
export interface FailedReleases {
  format: 1;
  releases: FailedRelease[];
}

/** The file keeps the newest this many (a device that failed more releases forgets the oldest). */
export const MAX_FAILED_RELEASES = 32;

export const EMPTY_FAILED_RELEASES: FailedReleases = { format: 1, releases: [] };

/**
 * The record of a commit, or null when it never failed here. With `kargs`, only a failure with
 * those arguments (or one that names none) counts: the same commit may boot with other ones.
 */
export function findFailed(f: FailedReleases, commit: string, kargs?: readonly string[]): FailedRelease | null {
  return f.releases.find((r) => r.commit === commit && (kargs === undefined || !r.kargs || sameKargs(r.kargs, kargs))) ?? null;
}

/**
 * Adds a failure. The same commit failing again in the same episode (tries ran out, then the
 * fallback is seen at the next boot) keeps the first time and adds failed checks it lacked; the
 * list keeps the newest MAX_FAILED_RELEASES.
 */
export function recordFailure(f: FailedReleases, entry: FailedRelease): FailedReleases {
  const old = findFailed(f, entry.commit);
  const merged: FailedRelease = old ? { ...old, failed_checks: old.failed_checks.length > 0 ? old.failed_checks : entry.failed_checks } : entry;
  const rest = f.releases.filter((r) => r.commit !== entry.commit);
  return { format: 1, releases: [...rest, merged].slice(-MAX_FAILED_RELEASES) };
}

/** Forgets a commit (deploy --retry-failed stages it again: a new failure is a new record). */
export function forgetFailure(f: FailedReleases, commit: string): FailedReleases {
  return { format: 1, releases: f.releases.filter((r) => r.commit !== commit) };
}

/** The file's parsed JSON, checked. @throws TypeError naming what is wrong (the store turns it into a LarchError naming the file) */
export function toFailedReleases(o: unknown): FailedReleases {
  if (typeof o !== 'object' || o === null || (o as { format?: unknown }).format !== 1 || !Array.isArray((o as { releases?: unknown }).releases)) throw new TypeError('expected {"format": 1, "releases": [...]}');
  const releases = (o as { releases: unknown[] }).releases.map((r, i) => {
    const e = r as Partial<FailedRelease>;
    if (typeof e !== 'object' || e === null || typeof e.commit !== 'string' || typeof e.version !== 'string' || typeof e.time !== 'string' || !Array.isArray(e.failed_checks)) throw new TypeError(`releases[${i}] lacks commit, version, time or failed_checks`);
    return { commit: e.commit, version: e.version, time: e.time, reason: e.reason ?? 'fell-back', failed_checks: e.failed_checks.map(String), slot: String(e.slot ?? ''), ...(Array.isArray(e.kargs) ? { kargs: e.kargs.map(String) } : {}) } as FailedRelease;
  });
  return { format: 1, releases };
}

export function formatFailedReleases(f: FailedReleases): string {
  return JSON.stringify(f, null, 2) + '\n';
}

/** One sentence for status and refusals: "2 failed on this device at T (checks: x); waiting for a newer release". */
export function describeFailure(r: FailedRelease): string {
  const how = r.reason === 'marked-bad' ? 'was marked bad on this device' : 'failed on this device';
  const checks = r.failed_checks.length ? ` (failed checks: ${r.failed_checks.join(', ')})` : '';
  if (r.kargs) return `${r.version} ${how} at ${r.time} with kernel arguments '${r.kargs.join(' ')}'${checks}; waiting for a newer release, or other arguments (larch kargs)`;
  return `${r.version} ${how} at ${r.time}${checks}; waiting for a newer release`;
}

/**
 * The rollout of each ref, as state of the repo: R/rollout.json (docs/formats.md §13.9).
 * `larch announce --rollout PCT` (and `serve --rollout PCT`) writes the percentage before the
 * announcement goes out; every later announcement of the ref (a restart of `larch serve`, a new
 * commit it announces by itself, `announce` without --rollout) uses what it says, so a canary is
 * widened only by an explicit --rollout or a recorded plan, never by a restart.
 *
 * Format 2 adds the operator's choices and what came of them: the release in flight (`commit`,
 * `version`), the last good one, a plan over time, a halt rule, a halt, and a short history. The
 * file is written as format 1 while no ref has any of them, so a repo that never used them stays
 * readable by an older larch; an older larch refuses format 2 rather than drop a halt.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { Repo } from '../store/repo.ts';

export const ROLLOUT_FILE = 'rollout.json';
export const ROLLOUT_FORMAT = 2;
/** A ref never given a rollout reaches the whole fleet. */
export const DEFAULT_ROLLOUT = 100;
/** History entries kept per ref, newest last. */
export const HISTORY_MAX = 16;

export interface ReleaseRef {
  commit: string;
  version: string;
}

/** From `start` percent to 100 over `over_s` seconds, in steps (rollout-rules.ts planSchedule). */
export interface RolloutPlan {
  start: number;
  over_s: number;
  /** When the release in flight began its plan (ISO 8601). */
  started: string;
}

/** Halt when more than `failures_pct` of at least `min_devices` decided devices fell back or failed. */
export interface HaltRule {
  failures_pct: number;
  min_devices: number;
}

/** A halt: the release in flight stopped, and what was announced instead. */
export interface Halt {
  time: string;
  commit: string;
  version: string;
  /** The rollout reached when it halted (a resume starts there). */
  rollout: number;
  /** The last good release the summary lists instead; null when none is known (then the release is announced at 0). */
  to: ReleaseRef | null;
  failures: number;
  decided: number;
  took: number;
  failure_pct: number;
}

export interface HistoryEntry {
  event: 'halt' | 'resume' | 'superseded';
  time: string;
  commit: string;
  version: string;
}

export interface RefRollout {
  /** 0-100, two decimals at most. */
  rollout: number;
  /** When it was set (ISO 8601). */
  set: string;
  /** The release in flight: the commit last announced as the ref's head (not a hold's last good). */
  commit?: string;
  version?: string;
  last_good?: ReleaseRef;
  plan?: RolloutPlan;
  halt_rule?: HaltRule;
  halted?: Halt;
  /**
   * Set by a resume: the outcomes the halt was judged on. The rule then judges only the outcomes
   * since (the operator has seen those), so the same evidence never halts the release again.
   */
  resumed_at?: { failures: number; decided: number };
  history?: HistoryEntry[];
}

export type RolloutState = Record<string, RefRollout>;

const path = (repo: Repo) => join(repo.path, ROLLOUT_FILE);

/** The state, {} when the file does not exist. @throws INVALID_INPUT (not the format), IO */
export async function readRolloutState(repo: Repo): Promise<RolloutState> {
  const file = path(repo);
  const text = await readFile(file, 'utf8').catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', file))));
  if (text === null) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw badFile(file, (err as Error).message);
  }
  const format = (parsed as { format?: unknown })?.format;
  // 0.1 wrote no "format"; format 1 has only rollout and set per ref.
  if (format !== undefined && format !== 1 && format !== ROLLOUT_FORMAT) throw badFile(file, `"format" is ${JSON.stringify(format)}, not 1 or ${ROLLOUT_FORMAT} (written by a newer larch?)`);
  const refs = (parsed as { refs?: unknown })?.refs;
  if (typeof refs !== 'object' || refs === null || Array.isArray(refs)) throw badFile(file, 'no "refs" object');
  for (const [ref, r] of Object.entries(refs)) checkRef(file, ref, r as RefRollout);
  return refs as RolloutState;
}

function checkRef(file: string, ref: string, r: RefRollout): void {
  const bad = (why: string) => badFile(file, `ref '${quash(ref)}': ${why}`);
  const pct = (n: unknown) => typeof n === 'number' && n >= 0 && n <= 100;
  const release = (x: unknown) => typeof x === 'object' && x !== null && /^[0-9a-f]{64}$/.test(String((x as ReleaseRef).commit)) && typeof (x as ReleaseRef).version === 'string';
  if (!pct(r?.rollout)) throw bad('"rollout" is not a percentage 0-100');
  if (r.commit !== undefined && !release(r)) throw bad('"commit" is not a commit id with a "version"');
  if (r.last_good !== undefined && !release(r.last_good)) throw bad('"last_good" is not {"commit", "version"}');
  if (r.plan !== undefined && !(pct(r.plan?.start) && Number.isSafeInteger(r.plan.over_s) && r.plan.over_s > 0 && !Number.isNaN(Date.parse(r.plan.started)))) throw bad('"plan" is not {"start", "over_s", "started"}');
  if (r.halt_rule !== undefined && !(pct(r.halt_rule?.failures_pct) && Number.isSafeInteger(r.halt_rule.min_devices) && r.halt_rule.min_devices >= 1)) throw bad('"halt_rule" is not {"failures_pct", "min_devices"}');
  if (r.halted !== undefined && !(release(r.halted) && pct(r.halted.rollout) && (r.halted.to === null || release(r.halted.to)))) throw bad('"halted" is not a halt record');
  if (r.resumed_at !== undefined && !(Number.isSafeInteger(r.resumed_at?.failures) && Number.isSafeInteger(r.resumed_at?.decided))) throw bad('"resumed_at" is not {"failures", "decided"}');
  if (r.history !== undefined && !Array.isArray(r.history)) throw bad('"history" is not a list');
}

/** The percentage recorded for `ref`, else 100. */
export function rolloutOf(state: RolloutState, ref: string): number {
  return state[ref]?.rollout ?? DEFAULT_ROLLOUT;
}

/**
 * Reads the state, lets `change` edit it in place, and writes it durably (atomic replace,
 * fsync'd), all under the repo's writer lock so two writers never lose each other's refs or
 * undo each other's halt. `change` may return a value, handed back. @throws LOCKED, IO, NO_SPACE
 */
export async function updateRolloutState<T>(repo: Repo, change: (state: RolloutState) => T | Promise<T>): Promise<{ state: RolloutState; result: T }> {
  const lock = await repo.lock();
  try {
    const state = await readRolloutState(repo);
    const result = await change(state);
    for (const r of Object.values(state)) if (r.history && r.history.length > HISTORY_MAX) r.history = r.history.slice(-HISTORY_MAX);
    await writeFileAtomic(path(repo), JSON.stringify({ format: formatFor(state), refs: state }, null, 2) + '\n');
    return { state, result };
  } finally {
    await lock.release();
  }
}

/** 1 while every ref has only a percentage (readable by larch before format 2), else 2. */
function formatFor(state: RolloutState): 1 | 2 {
  return Object.values(state).every((r) => Object.keys(r).every((k) => k === 'rollout' || k === 'set')) ? 1 : 2;
}

/** Records `rollout` for each of `refs`, keeping everything else recorded for them. */
export async function writeRollout(repo: Repo, refs: string[], rollout: number, now = new Date()): Promise<RolloutState> {
  return (
    await updateRolloutState(repo, (state) => {
      for (const ref of refs) state[ref] = { ...state[ref], rollout, set: now.toISOString() };
    })
  ).state;
}

function badFile(file: string, why: string): LarchError {
  return new LarchError('INVALID_INPUT', `${file}: not a larch rollout state file: ${why}`, {
    hint: "set the rollout of each ref again with 'larch announce --rollout PCT' after moving the file away",
    data: { path: file },
  });
}

/**
 * The rollout percentage of each ref, as state of the repo: R/rollout.json (docs/formats.md).
 * `larch announce --rollout PCT` (and `serve --rollout PCT`) writes it before the announcement
 * goes out; every later announcement of the ref (a restart of `larch serve`, a new commit it
 * announces by itself, `announce` without --rollout) uses what it says, so a canary is widened
 * only by an explicit --rollout, never by a restart.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { Repo } from '../store/repo.ts';

export const ROLLOUT_FILE = 'rollout.json';
export const ROLLOUT_FORMAT = 1;
/** A ref never given a rollout reaches the whole fleet. */
export const DEFAULT_ROLLOUT = 100;

export interface RefRollout {
  /** 0-100, two decimals at most. */
  rollout: number;
  /** When it was set (ISO 8601). */
  set: string;
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
  if (format !== undefined && format !== ROLLOUT_FORMAT) throw badFile(file, `"format" is ${JSON.stringify(format)}, not ${ROLLOUT_FORMAT} (written by a newer larch?)`);
  const refs = (parsed as { refs?: unknown })?.refs;
  if (typeof refs !== 'object' || refs === null || Array.isArray(refs)) throw badFile(file, 'no "refs" object');
  for (const [ref, r] of Object.entries(refs)) {
    const pct = (r as RefRollout)?.rollout;
    if (typeof pct !== 'number' || !(pct >= 0 && pct <= 100)) throw badFile(file, `ref '${ref}': "rollout" is not a percentage 0-100`);
  }
  return refs as RolloutState;
}

/** The percentage to announce `ref` with: its recorded one, else 100. */
export function rolloutOf(state: RolloutState, ref: string): number {
  return state[ref]?.rollout ?? DEFAULT_ROLLOUT;
}

/**
 * Records `rollout` for each of `refs`, durably (atomic replace, fsync'd), under the repo's
 * writer lock so two announces never lose each other's refs. @throws LOCKED, IO, NO_SPACE
 */
export async function writeRollout(repo: Repo, refs: string[], rollout: number, now = new Date()): Promise<RolloutState> {
  const lock = await repo.lock();
  try {
    const state = await readRolloutState(repo);
    for (const ref of refs) state[ref] = { rollout, set: now.toISOString() };
    // "format" since 0.2 (0.1 wrote none and read only "refs": both read each other's file).
    await writeFileAtomic(path(repo), JSON.stringify({ format: ROLLOUT_FORMAT, refs: state }, null, 2) + '\n');
    return state;
  } finally {
    await lock.release();
  }
}

function badFile(file: string, why: string): LarchError {
  return new LarchError('INVALID_INPUT', `${file}: not a larch rollout state file: ${why}`, {
    hint: "set the rollout of each ref again with 'larch announce --rollout PCT' after moving the file away",
    data: { path: file },
  });
}

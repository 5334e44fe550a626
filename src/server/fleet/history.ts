/**
 * The server's own record of rollouts, beside the fleet view's snapshot (R/fleet/ or
 * --fleet-state DIR): `events.jsonl` (one line per halt, resume, step and supersede, for
 * people and audits) and `progress.jsonl` (per ref, a sample of the fleet's relation to the
 * release in flight once a minute and at each step and halt: the dashboard's chart). Both are
 * appended, one JSON object per line; progress.jsonl is rotated to progress.jsonl.1 at 5 MiB.
 * docs/formats.md §13.10.
 */
import { appendFile, mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';

export const EVENTS_FILE = 'events.jsonl';
export const PROGRESS_FILE = 'progress.jsonl';
const ROTATE_BYTES = 5 * 1024 * 1024;
/** Samples kept in memory per ref for the API: a day at one a minute. */
export const PROGRESS_KEPT = 1440;

export interface ProgressSample {
  time: string;
  ref: string;
  commit: string;
  version: string;
  rollout: number;
  took: number;
  good: number;
  staged: number;
  trying: number;
  fell_back: number;
  failed: number;
}

export interface RolloutEvent {
  time: string;
  event: 'halt' | 'resume' | 'step' | 'superseded';
  ref: string;
  commit: string;
  version: string;
  [key: string]: unknown;
}

export async function appendEvent(dir: string, e: RolloutEvent): Promise<void> {
  await mkdir(dir, { recursive: true });
  await appendFile(join(dir, EVENTS_FILE), JSON.stringify(e) + '\n');
}

export async function appendProgress(dir: string, s: ProgressSample): Promise<void> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, PROGRESS_FILE);
  const size = await stat(file).then((st) => st.size, () => 0);
  if (size >= ROTATE_BYTES) await rename(file, `${file}.1`);
  await appendFile(file, JSON.stringify(s) + '\n');
}

/** The newest PROGRESS_KEPT samples per ref from progress.jsonl (a missing file or a torn last line is skipped). */
export async function loadProgress(dir: string): Promise<Map<string, ProgressSample[]>> {
  const out = new Map<string, ProgressSample[]>();
  const text = await readFile(join(dir, PROGRESS_FILE), 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    let s: ProgressSample;
    try {
      s = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof s?.ref !== 'string' || typeof s.time !== 'string') continue;
    keep(out, s);
  }
  return out;
}

/** Adds a sample to the in-memory series, dropping the oldest past PROGRESS_KEPT. */
export function keep(series: Map<string, ProgressSample[]>, s: ProgressSample): void {
  const list = series.get(s.ref) ?? [];
  list.push(s);
  if (list.length > PROGRESS_KEPT) list.splice(0, list.length - PROGRESS_KEPT);
  series.set(s.ref, list);
}

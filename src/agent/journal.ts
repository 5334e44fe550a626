/**
 * The device journal: one JSON object per line in S/larch/journal.jsonl, appended and fsync'd
 * before the step it records counts, so "why did it roll back" has an answer after any crash.
 * A torn last line (power cut mid-append) is skipped when reading, never fatal.
 *
 * Bounded: an append that would take the file past JOURNAL_MAX_BYTES first renames it to
 * journal.1.jsonl (replacing the previous one), so the journal never holds more than twice that.
 * Best-effort on a full filesystem: the journal records steps, it must never be the reason one
 * fails (a full /var would otherwise keep boot-check from marking a healthy slot good).
 */
import { mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { snakeKeysDeep } from '../_keys.ts';

/** Size at which journal.jsonl is rotated to journal.1.jsonl. */
export const JOURNAL_MAX_BYTES = 256 * 1024;

/** The rotated journal beside path: journal.jsonl -> journal.1.jsonl. */
export function rotatedJournalPath(path: string): string {
  return path.replace(/(\.jsonl)?$/, '.1.jsonl');
}

export type JournalEvent =
  | 'provision'
  | 'check'
  | 'download'
  | 'verify'
  | 'deploy'
  | 'stage'
  | 'boot'
  | 'health'
  | 'mark-good'
  | 'mark-bad'
  | 'fallback'
  | 'rescue'
  | 'rollback'
  | 'cancel'
  | 'apply-live'
  | 'rebase'
  | 'remote'
  | 'finalize'
  | 'cleanup'
  | 'pin'
  | 'layer'
  | 'trust'
  | 'announce'
  | 'command'
  | 'reboot'
  | 'error';

export interface JournalEntry {
  /** ISO 8601 time of the entry. */
  time: string;
  event: JournalEvent;
  /** One sentence a person can read: what happened and why. */
  message: string;
  slot?: string;
  commit?: string;
  version?: string;
  /** Anything else worth keeping (error code, health check names, bytes). */
  data?: Record<string, unknown>;
  /** A copy carried into a new journal.jsonl at a rotation (the original is in journal.1.jsonl). */
  carried?: true;
}

/**
 * The events a slot's state is proved from when the boot env is damaged (reconstruct() in
 * boot.ts): the last one of each slot is carried into the new file at a rotation, so a rotation
 * never takes away what proves a slot good.
 */
const CARRIED_EVENTS: readonly JournalEvent[] = ['mark-good', 'mark-bad', 'stage', 'provision', 'deploy'];

/** Appends an entry. A full filesystem skips it (with a warning on stderr) instead of failing. */
export async function appendJournal(path: string, entry: Omit<JournalEntry, 'time'> & { time?: string }): Promise<JournalEntry> {
  const full: JournalEntry = { time: entry.time ?? new Date().toISOString(), ...entry } as JournalEntry;
  const line = JSON.stringify(full) + '\n';
  try {
    await mkdir(dirname(path), { recursive: true });
    const size = await stat(path).then((st) => st.size, () => 0);
    if (size > 0 && size + Buffer.byteLength(line) > JOURNAL_MAX_BYTES) await rotate(path);
    const fh = await open(path, 'a', 0o644);
    try {
      await fh.write(line);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    const e = fromSystemError(err, 'append to journal', path);
    if (e instanceof LarchError && e.code === 'NO_SPACE') {
      process.stderr.write(`larch: warning: ${e.message}: not recorded: ${full.message}\n`);
      return full;
    }
    throw e;
  }
  return full;
}

/** journal.jsonl -> journal.1.jsonl, and the last entry per slot of CARRIED_EVENTS into the new file. */
async function rotate(path: string): Promise<void> {
  const entries = await readJournalFile(path);
  const carried = ['A', 'B'].map((slot) => entries.filter((e) => e.slot === slot && CARRIED_EVENTS.includes(e.event)).at(-1)).filter((e) => e !== undefined);
  await rename(path, rotatedJournalPath(path));
  if (carried.length === 0) return;
  carried.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
  const fh = await open(path, 'a', 0o644);
  try {
    await fh.write(carried.map((e) => JSON.stringify({ ...e, carried: true }) + '\n').join(''));
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * All entries (the rotated file's, then the current one's), oldest first; unreadable lines (a torn
 * append) are skipped, and so are the current file's carried copies when the rotated file, which
 * holds their originals, is there.
 */
export async function readJournal(path: string): Promise<JournalEntry[]> {
  const older = await readJournalFile(rotatedJournalPath(path));
  const current = await readJournalFile(path);
  return [...older, ...(older.length > 0 ? current.filter((e) => !e.carried) : current)];
}

async function readJournalFile(path: string): Promise<JournalEntry[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(err, 'read journal', path);
  }
  const entries: JournalEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const e = JSON.parse(line) as JournalEntry;
      // Entries before 0.2 may hold camelCase keys in data: read them as they are written now.
      if (e.data !== undefined) e.data = snakeKeysDeep(e.data) as Record<string, unknown>;
      if (typeof e.time === 'string' && typeof e.event === 'string') entries.push(e);
    } catch {
      // A torn last line after a power cut: the step it described did not complete.
    }
  }
  return entries;
}

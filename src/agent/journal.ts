/**
 * The device journal: one JSON object per line in S/larch/journal.jsonl, appended and fsync'd
 * before the step it records counts, so "why did it roll back" has an answer after any crash.
 * A torn last line (power cut mid-append) is skipped when reading, never fatal.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fromSystemError } from '../errors.ts';

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
  | 'finalize'
  | 'cleanup'
  | 'pin'
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
}

export async function appendJournal(path: string, entry: Omit<JournalEntry, 'time'> & { time?: string }): Promise<JournalEntry> {
  const full: JournalEntry = { time: entry.time ?? new Date().toISOString(), ...entry } as JournalEntry;
  try {
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, 'a', 0o644);
    try {
      await fh.write(JSON.stringify(full) + '\n');
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fromSystemError(err, 'append to journal', path);
  }
  return full;
}

/** All entries, oldest first; unreadable lines (a torn append) are skipped. */
export async function readJournal(path: string): Promise<JournalEntry[]> {
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
      if (typeof e.time === 'string' && typeof e.event === 'string') entries.push(e);
    } catch {
      // A torn last line after a power cut: the step it described did not complete.
    }
  }
  return entries;
}

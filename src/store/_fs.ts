/**
 * File streams that take raw-byte (Buffer) paths on both runtimes: Bun's createReadStream and
 * createWriteStream accept only string paths, so we open a FileHandle and stream from it.
 */
import { open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';

export async function openReadStream(path: string | Buffer, start = 0): Promise<Readable> {
  const fh = await open(path, 'r');
  return fh.createReadStream({ start, highWaterMark: 256 * 1024 }) as unknown as Readable;
}

/** A new file (never an existing one: O_EXCL, so a symlink in the way is never followed). */
export async function createExclusiveWriteStream(path: string | Buffer, mode = 0o600): Promise<Writable> {
  const fh = await open(path, 'wx', mode);
  return fh.createWriteStream() as unknown as Writable;
}

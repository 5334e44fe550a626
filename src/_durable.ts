/**
 * Durable writes: temp file, fsync, rename, fsync the directory; and a whole-filesystem
 * sync for transactions that stage many files (one syncfs instead of one fsync per file,
 * as OSTree does: per-file fsync made a 10k-file commit 20x slower, measured).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fromSystemError } from './errors.ts';

/** fsyncs a regular file or directory; symlinks and FIFOs are skipped (opening a FIFO would block;
 *  their creation is made durable by the fsync of their directory). */
export async function fsyncPath(path: string): Promise<void> {
  const st = await lstat(path);
  if (!st.isFile() && !st.isDirectory()) return;
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes bytes to path atomically and durably: a reader sees the old or the new content, never a mix. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await fsyncPath(dirname(path));
    // vfat (a FAT boot partition holding uboot.env or grubenv) writes a renamed file's directory
    // entry with the file's inode, not the directory's: without this fsync a power cut leaves the
    // entry pointing at the old file's clusters, which the flushed FAT says are free. Found by
    // the HIL power-cut scenario (hil-tests/README.md, Findings).
    await fsyncPath(path);
  } catch (err) {
    // Best effort: the error to report is the write's (on a read-only filesystem the rm fails
    // too, and its EROFS about '.tmp-…' would hide which file could not be written).
    await rm(tmp, { force: true }).catch(() => {});
    throw fromSystemError(err, 'write', path);
  }
}

let syncfsWorks: boolean | undefined;

/**
 * Flushes the filesystem holding path to stable storage. Uses `sync -f` (syncfs(2), coreutils
 * and busybox both have it) because Node has no syncfs; falls back to fsync of each listed path.
 * Asynchronous: a syncfs on slow flash can take seconds, and the daemon must keep answering its
 * broker (keepalive) meanwhile.
 */
export async function syncFilesystem(path: string, fallbackPaths: string[] = []): Promise<void> {
  if (process.env.LARCH_SYNC === 'file') syncfsWorks = false;
  if (syncfsWorks !== false) {
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('sync', ['-f', path], { stdio: 'ignore' });
      child.once('error', () => resolve(null)); // no sync(1) at all
      child.once('close', (status) => resolve(status));
    });
    if (code === 0) {
      syncfsWorks = true;
      return;
    }
    syncfsWorks = false;
  }
  for (const p of fallbackPaths) await fsyncPath(p);
  await fsyncPath(path);
}

/**
 * The repo's writer lock: a file created with link(2), which is atomic and never leaves a
 * lock without its owner's pid. A lock whose owner is dead (kill -9, power cut) is broken.
 * Node has no flock(2); this works the same on Node and Bun.
 */
import { randomBytes } from 'node:crypto';
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../errors.ts';

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface Lock {
  release(): Promise<void>;
}

/** Takes the lock at path, waiting up to timeoutMs for a live holder. @throws LOCKED */
export async function acquireLock(path: string, timeoutMs = 30_000): Promise<Lock> {
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, token).catch((err) => {
    throw fromSystemError(err, 'create lock', tmp);
  });
  const deadline = Date.now() + timeoutMs;
  try {
    for (let delayMs = 10; ; delayMs = Math.min(delayMs * 2, 500)) {
      try {
        await link(tmp, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, 'create lock', path);
      }
      const holder = await readFile(path, 'utf8').catch(() => '');
      const pid = Number.parseInt(holder, 10);
      if (holder !== '' && !isAlive(pid)) {
        // The owner died without releasing: only a lock with exactly this content is removed.
        const again = await readFile(path, 'utf8').catch(() => '');
        if (again === holder) await rm(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new LarchError('LOCKED', `repo is locked by process ${pid || '?'}: '${path}'`, { data: { path, pid } });
      }
      await new Promise((r) => setTimeout(r, delayMs));
    }
  } finally {
    await rm(tmp, { force: true });
  }
  return {
    async release() {
      const now = await readFile(path, 'utf8').catch(() => '');
      if (now === token) await rm(path, { force: true });
    },
  };
}

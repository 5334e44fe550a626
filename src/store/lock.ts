/**
 * The repo's writer lock: a kernel flock(2) on R/lock, held by a `flock` helper process for as
 * long as we keep its stdin open. The kernel drops the lock when the holder dies (kill -9, power
 * cut, crash), so there is never a stale lock to break, and PID reuse after a reboot cannot keep
 * a repo locked. Node and Bun have no flock(2). Only `flock -x -n FILE PROG ARGS` is used, which
 * util-linux and busybox both understand; waiting is a retry loop here.
 */
import { spawn } from 'node:child_process';
import { LarchError } from '../errors.ts';
import { spawnFailure } from '../_run.ts';

export interface Lock {
  release(): Promise<void>;
}

type Attempt = { held: Lock } | { busy: true };

function tryLock(path: string): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    // The helper prints "locked" once it holds the lock, then waits for our stdin to close.
    const child = spawn('flock', ['-x', '-n', path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let held = false;
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', (err: NodeJS.ErrnoException) => reject(spawnFailure('flock', err, { purpose: 'to lock the repo', hint: "busybox's flock applet works too" })));
    child.stdout.on('data', (d: Buffer) => {
      if (held || !d.toString().includes('locked')) return;
      held = true;
      resolve({
        held: {
          async release() {
            child.stdin.end();
            await exited;
          },
        },
      });
    });
    child.once('close', (code) => {
      if (held) return;
      if (code === 1 && stderr.trim() === '') resolve({ busy: true });
      else if (/Read-only file system/.test(stderr)) reject(new LarchError('READ_ONLY', `cannot lock '${path}': the filesystem is read-only`, { data: { path } }));
      else reject(new LarchError('IO', `cannot lock '${path}': ${stderr.trim() || `flock exited ${code}`}`, { data: { path } }));
    });
  });
}

/** Takes the exclusive lock on path, waiting up to timeoutMs for its holder. @throws LOCKED, TOOL_MISSING, READ_ONLY (the lock file cannot be created), IO */
export async function acquireLock(path: string, timeoutMs = 30_000): Promise<Lock> {
  const deadline = Date.now() + timeoutMs;
  for (let delayMs = 20; ; delayMs = Math.min(delayMs * 2, 500)) {
    const attempt = await tryLock(path);
    if ('held' in attempt) return attempt.held;
    if (Date.now() >= deadline) {
      throw new LarchError('LOCKED', `repo lock '${path}' is held by another larch process (waited ${Math.round(timeoutMs / 1000)} s)`, { data: { path } });
    }
    await new Promise((r) => setTimeout(r, delayMs));
  }
}

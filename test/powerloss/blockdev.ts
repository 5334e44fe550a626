/**
 * The block-level side of the power-loss tests: ext4 images, the write-recording shim
 * (blockshim.c, built here with gcc against libfuse3), loop mounts through it, and the log it
 * keeps. The replay of crash states from that log is in replay.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT, sh } from '../helpers.ts';
import type { Test } from '../device-helpers.ts';
import type { LogRecord } from './replay.ts';

const SOURCE = join(ROOT, 'test', 'powerloss', 'blockshim.c');
export const TOOLS = ['gcc', 'pkg-config', 'fusermount3', 'mkfs.ext4', 'losetup', 'mount', 'umount'];

/** Why the power-loss tests cannot run here, or false. */
export function cannotRun(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (loop mounts and FUSE with allow_other)';
  const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (spawnSync('pkg-config', ['--exists', 'fuse3']).status !== 0) missing.push('libfuse3-dev');
  if (!existsSync('/dev/fuse')) missing.push('/dev/fuse');
  if (missing.length > 0) return `missing: ${missing.join(' ')} (apt-get install fuse3 libfuse3-dev gcc pkg-config e2fsprogs; .ci/run installs them)`;
  return false;
}

/** tap options: skip outside CI only; in CI the test runs and fails on the reason. */
export const gate = (timeoutMs: number) => {
  const reason = cannotRun();
  return { skip: process.env.CI ? false : reason, timeout: timeoutMs };
};

/** Builds blockshim once per source version into .cache/blockshim/ and returns its path. */
export function buildShim(): string {
  const source = readFileSync(SOURCE);
  const dir = join(ROOT, '.cache', 'blockshim', createHash('sha256').update(source).digest('hex').slice(0, 16));
  const bin = join(dir, 'blockshim');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}`;
  sh(`gcc -O2 -Wall -Werror -o '${tmp}' '${SOURCE}' $(pkg-config --cflags --libs fuse3)`);
  renameSync(tmp, bin); // two test files building at once: each renames a whole binary
  return bin;
}

/** A fresh ext4 image of sizeMiB. 4 KiB blocks as on a device (mke2fs picks 1 KiB for small
 *  images), and no lazy init: ext4lazyinit would write in the background during a run. */
export function makeExt4(image: string, sizeMiB: number): void {
  sh(`truncate -s ${sizeMiB}M '${image}' && mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 '${image}'`);
}

/** Unmounts dir, waiting while it is busy: a command killed at a failpoint can leave a child
 *  behind for a moment (its `sync -f`, which a power cut would have stopped too). */
async function umount(dir: string): Promise<void> {
  for (let waitedMs = 0; ; waitedMs += 20) {
    const r = spawnSync('umount', [dir], { encoding: 'utf8' });
    if (r.status === 0) return;
    if (!/busy/.test(r.stderr) || waitedMs > 10_000) throw new Error(`umount ${dir}: ${r.stderr.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Loop-mounts image (a file) on dir, as a device's boot mounts its partition; ext4 replays
 *  its journal here. Unmounted at teardown unless done before. */
export function mountImage(t: Test, image: string, dir: string): () => Promise<void> {
  mkdirSync(dir, { recursive: true });
  sh(`mount -o loop '${image}' '${dir}'`);
  let mounted = true;
  const unmount = async () => {
    if (!mounted) return;
    mounted = false;
    await umount(dir);
  };
  t.teardown(() => {
    if (mounted) spawnSync('umount', ['-l', dir]);
    mounted = false;
  });
  return unmount;
}

/** One recorded run: image mounted on dir through the shim. */
export interface Recording {
  /** The records so far, cut at the last whole one: what the device had been sent at this moment. */
  snapshot(): Promise<LogRecord[]>;
  /** Unmounts (the kernel writes back what it still held: more records), stops the shim and
   *  returns the whole log. */
  close(): Promise<LogRecord[]>;
}

/** Starts blockshim on image (its writes go into image itself) and loop-mounts its disk on dir. */
export async function mountRecorded(t: Test, image: string, dir: string, work: string): Promise<Recording> {
  const bin = buildShim();
  const fuseDir = join(work, 'fuse');
  const log = join(work, 'writes.log');
  mkdirSync(fuseDir, { recursive: true });
  mkdirSync(dir, { recursive: true });
  const child: ChildProcess = spawn(bin, [image, log, fuseDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let mounted = false;
  let shimUp = true;
  const stop = async () => {
    if (mounted) spawnSync('umount', ['-l', dir]);
    mounted = false;
    if (shimUp) {
      shimUp = false;
      spawnSync('fusermount3', ['-u', '-z', fuseDir]);
      await exited;
    }
  };
  t.teardown(stop);
  // Ready when the FUSE mount answers with the disk's size (the shim mounts, then serves).
  const size = statSync(image).size;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`blockshim exited ${child.exitCode}: ${stderr}`);
    const st = spawnSync('stat', ['-c', '%s', join(fuseDir, 'disk')], { encoding: 'utf8' });
    if (st.status === 0 && Number(st.stdout) === size) break;
    if (i > 500) throw new Error(`blockshim did not come up in 5 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  sh(`mount -o loop '${join(fuseDir, 'disk')}' '${dir}'`);
  mounted = true;
  return {
    snapshot: async () => parseLog(await readFile(log)),
    close: async () => {
      if (mounted) await umount(dir);
      mounted = false;
      await stop();
      return parseLog(await readFile(log));
    },
  };
}

/** Parses blockshim's log (format in blockshim.c); a torn last record is left out. */
export function parseLog(buf: Buffer): LogRecord[] {
  const out: LogRecord[] = [];
  let at = 0;
  while (at + 16 <= buf.length) {
    const type = String.fromCharCode(buf[at]);
    const length = buf.readUInt32LE(at + 4);
    const offset = Number(buf.readBigUInt64LE(at + 8));
    if (at + 16 + length > buf.length) break;
    if (type === 'F') out.push({ kind: 'flush' });
    else if (type === 'W') out.push({ kind: 'write', offset, data: buf.subarray(at + 16, at + 16 + length) });
    else throw new Error(`blockshim log: unknown record type ${JSON.stringify(type)} at byte ${at}`);
    at += 16 + length;
  }
  return out;
}

/** Writes a crash state: base's bytes with writes applied in the order given. */
export async function writeState(base: string, out: string, writes: { offset: number; data: Uint8Array }[]): Promise<void> {
  sh(`cp --sparse=always '${base}' '${out}'`);
  const fh = await open(out, 'r+');
  try {
    for (const w of writes) await fh.write(w.data, 0, w.data.length, w.offset);
  } finally {
    await fh.close();
  }
}

/** Shared test helpers: run the larch CLI (Bun binary or Node), make temp dirs, snapshot trees. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { lstat, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { type Server, type Socket, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LarchError } from '../src/errors.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = join(ROOT, 'dist', 'larch');
export const NODE_ENTRY = join(ROOT, 'bin', 'larch.js');
export const IS_ROOT = process.getuid?.() === 0;

export type Runtime = 'bun' | 'node';

export interface RunResult {
  code: number;
  /** The signal that ended the process (SIGKILL from a failpoint), or null when it exited. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json: any;
  /** With opts.peakRss: the process's peak resident set in KiB (GNU time's %M). */
  peakRssKiB?: number;
}

/** GNU time (package `time`): the peak RSS of a child, as the kernel counted it at its exit. */
const GNU_TIME = '/usr/bin/time';

/**
 * Runs `larch ARGS` through the Bun binary (default) or Node, and parses --json output. With
 * peakRss, under GNU time (its figure written to a file, so stderr stays the command's own).
 */
export function larch(args: string[], opts: { runtime?: Runtime; cwd?: string; env?: Record<string, string>; input?: string; peakRss?: boolean } = {}): Promise<RunResult> {
  const runtime = opts.runtime ?? 'bun';
  if (runtime === 'bun' && !existsSync(BIN)) throw new Error(`${BIN} is missing: run 'npm run build' first`);
  let [cmd, argv] = runtime === 'bun' ? [BIN, args] : [process.execPath, [NODE_ENTRY, ...args]];
  let rssFile: string | undefined;
  if (opts.peakRss) {
    if (!existsSync(GNU_TIME)) throw new Error(`${GNU_TIME} is missing: install the package 'time'`);
    rssFile = join(mkdtempSync(join(tmpdir(), 'larch-rss-')), 'rss');
    [cmd, argv] = [GNU_TIME, ['-f', '%M', '-o', rssFile, cmd, ...argv]];
  }
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      let json: any;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      const peakRssKiB = rssFile === undefined ? undefined : Number(/(\d+)\s*$/.exec(readFileSync(rssFile, 'utf8'))?.[1]);
      if (rssFile !== undefined) rmSync(join(rssFile, '..'), { recursive: true, force: true });
      // GNU time exits with the command's status (its own errors would say so on stderr).
      resolve({ code: code ?? -1, signal, stdout, stderr, json, ...(peakRssKiB === undefined ? {} : { peakRssKiB }) });
    });
    child.stdin.end(opts.input);
  });
}

/**
 * Builds a larch binary whose `--version` says `larch VERSION` (scripts/build.mjs with
 * LARCH_BUILD_VERSION) at outfile: two agents that differ only in their version.
 */
export function buildAgent(version: string, outfile: string, platform: 'linux-x64' | 'linux-arm64' = 'linux-x64'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), platform, '--outfile', outfile], { cwd: ROOT, env: { ...process.env, LARCH_BUILD_VERSION: version }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(outfile) : reject(new Error(`building the ${version} agent failed (exit ${code}):\n${stderr}`))));
  });
}

/** Runs larch and fails the test with its stderr unless it exits 0. */
export async function larchOk(args: string[], opts: Parameters<typeof larch>[1] = {}): Promise<RunResult> {
  const r = await larch(args, opts);
  if (r.code !== 0) throw new Error(`larch ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r;
}

export function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'larch-test-'): string {
  const dir = mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export function sh(cmd: string, opts: { cwd?: string } = {}): string {
  const r = spawnSync('sh', ['-c', cmd], { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`'${cmd}' exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

export interface EntrySnapshot {
  type: string;
  mode: number;
  size?: number;
  target?: string;
  sha256?: string;
  uid?: number;
  gid?: number;
  xattrs?: string;
}

/**
 * Everything a checkout must reproduce, per path (hex of the raw path bytes, so invalid
 * UTF-8 names compare exactly): type, permission bits, size, symlink target, content hash,
 * and, when asked, owner and xattrs.
 */
export async function snapshotTree(root: string, opts: { owners?: boolean; xattrs?: boolean } = {}): Promise<Map<string, EntrySnapshot>> {
  const out = new Map<string, EntrySnapshot>();
  const xattrDump = opts.xattrs ? spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, maxBuffer: 1 << 28 }).stdout : null;
  const xattrsByPath = new Map<string, string>();
  if (xattrDump) {
    for (const block of xattrDump.toString('latin1').split('\n\n')) {
      const m = /^# file: (.*)\n([\s\S]*)$/.exec(block.trim());
      if (m) xattrsByPath.set(m[1].replace(/^\.\/?/, ''), m[2].split('\n').sort().join('\n'));
    }
  }
  // One read buffer for the whole walk (files are read one at a time): a zeroed 1 MiB buffer per
  // file made snapshots of a few hundred files cost more CPU than the larch runs they check.
  const buf = Buffer.allocUnsafe(1 << 20);
  const walk = async (rel: Buffer) => {
    const abs = rel.length ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root);
    const st = await lstat(abs);
    const type = st.isFile() ? 'reg' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'lnk' : st.isFIFO() ? 'fifo' : 'other';
    const e: EntrySnapshot = { type, mode: st.mode & 0o7777 };
    if (type === 'lnk') e.mode = 0o777;
    if (type === 'reg') {
      e.size = st.size;
      const h = createHash('sha256');
      const fh = await import('node:fs/promises').then((m) => m.open(abs, 'r'));
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        h.update(buf.subarray(0, bytesRead));
      }
      await fh.close();
      e.sha256 = h.digest('hex');
    }
    if (type === 'lnk') e.target = (await readlink(abs, { encoding: 'buffer' })).toString('hex');
    if (opts.owners) {
      e.uid = st.uid;
      e.gid = st.gid;
    }
    if (opts.xattrs) e.xattrs = xattrsByPath.get(rel.toString('latin1')) ?? '';
    out.set(rel.toString('hex'), e);
    if (type === 'dir') {
      for (const name of (await readdir(abs, { encoding: 'buffer' })) as Buffer[]) {
        await walk(rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name);
      }
    }
  };
  await walk(Buffer.alloc(0));
  return out;
}

/** Lists differences between two snapshots, readable in a test failure. */
export function diffSnapshots(a: Map<string, EntrySnapshot>, b: Map<string, EntrySnapshot>, ignoreRoot = false): string[] {
  const problems: string[] = [];
  const name = (k: string) => JSON.stringify(Buffer.from(k, 'hex').toString('latin1'));
  for (const [k, ea] of a) {
    if (ignoreRoot && k === '') continue;
    const eb = b.get(k);
    if (!eb) problems.push(`missing ${name(k)}`);
    else if (JSON.stringify(ea) !== JSON.stringify(eb)) problems.push(`differs ${name(k)}: ${JSON.stringify(ea)} vs ${JSON.stringify(eb)}`);
  }
  for (const k of b.keys()) if (!a.has(k)) problems.push(`extra ${name(k)}`);
  return problems;
}

/** The .deb files test-setup fetched. */
export function debs(): string[] {
  const dir = join(ROOT, '.cache', 'debs');
  if (!existsSync(dir)) throw new Error(`${dir} is missing: run 'node scripts/test-setup.mjs' (npm test does)`);
  return readdirSync(dir).filter((f) => f.endsWith('.deb')).map((f) => join(dir, f));
}

/** mulberry32: a small seeded PRNG, so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A Debian-changelog-like text of `entries` entries, newest first: the next release's text is this
 * one with an entry prepended, as a package update changes its changelog.Debian.gz.
 */
export function changelog(entries: number, seed: number): Buffer {
  const words = ['fix', 'update', 'security', 'build', 'translation', 'upstream', 'release', 'patch', 'memory', 'leak', 'crash', 'parser', 'network', 'kernel', 'driver'];
  const out: string[] = [];
  for (let e = entries; e >= 1; e--) {
    const rnd = prng(seed * 1000 + e);
    out.push(`larch-test (1.${e}-1) bookworm; urgency=medium\n\n`);
    for (let i = 0; i < 6; i++) out.push(`  * ${Array.from({ length: 8 }, () => words[Math.floor(rnd() * words.length)]).join(' ')} (#${Math.floor(rnd() * 99999)})\n`);
    out.push(`\n -- Maintainer <m@example.org>  Mon, ${1 + (e % 28)} Jan 2024 12:00:00 +0000\n\n`);
  }
  return Buffer.from(out.join(''));
}

/** `gzip -9n` of bytes, as Debian compresses its docs (the real tool: no library makes the same bytes). */
export function gzip9n(bytes: Uint8Array): Buffer {
  return compressWith('gzip', ['-9n'], bytes);
}

/** Runs a real compressor over bytes (the device must rebuild what the real tools make). */
export function compressWith(cmd: string, args: string[], input: Uint8Array): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Code-like bytes: repeated structure with small differences (what a kernel image is made of). */
export function codeLike(seed: number, n: number, edits: number): Buffer {
  const rnd = prng(7);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i % 64 < 40 ? (i * 31) & 0xff : Math.floor(rnd() * 256)) ^ (i % 4096 === 0 ? 0x55 : 0);
  const r2 = prng(seed);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r2() * (n - 16));
    for (let j = 0; j < 16; j++) b[at + j] = Math.floor(r2() * 256);
  }
  return b;
}

/** A bzImage-shaped kernel: setup with the boot protocol header, the lz4 payload + size_append, a tail. */
export function bzImage(vmlinux: Buffer, level: number, tail: Buffer): Buffer {
  const frame = compressWith('lz4', ['-l', `-${level}`, '-c'], vmlinux);
  const setupSects = 1;
  const pmStart = (setupSects + 1) * 512;
  const payloadOffset = 100;
  const head = Buffer.alloc(pmStart + payloadOffset);
  head.write('MZ', 0);
  head[0x1f1] = setupSects;
  head.write('HdrS', 0x202, 'latin1');
  head.writeUInt16LE(0x020f, 0x206);
  head.writeUInt32LE(payloadOffset, 0x248);
  head.writeUInt32LE(frame.length + 4, 0x24c);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(vmlinux.length, 0);
  return Buffer.concat([head, frame, size, tail]);
}

export { readFile };

/**
 * Listens on a free port of 127.0.0.1 and, at the test's end, closes the server and every
 * connection still open (a test server that stalls or trickles keeps them). Resolves with the port.
 */
export async function listenLoopback(t: { teardown(fn: () => unknown): void }, server: Server): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

/** A free TCP port on 127.0.0.1 (for a server whose port must be known before it starts). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export type TapTest = import('tap').Test;

/**
 * Asserts that `p` rejects (or, given a function, that calling it throws) with a LarchError of
 * this code and, given, these other fields (matched as t.match does: `{ data: { path } }`,
 * `{ message: /re/ }`). Resolves with the error for further checks; when it resolves or fails
 * with something else, the assertion fails and then this throws (ending the subtest).
 */
export async function rejectsCode(t: TapTest, p: Promise<unknown> | (() => unknown), code: string, what: string, fields: Record<string, unknown> = {}): Promise<LarchError> {
  let err: unknown;
  let settled = false;
  try {
    await (typeof p === 'function' ? p() : p);
    settled = true;
  } catch (e) {
    err = e;
  }
  t.match(settled ? 'no error' : err, { name: 'LarchError', code, ...fields }, `${what}: ${code}`);
  if (err instanceof LarchError) return err;
  throw new Error(`${what}: ${settled ? 'no error' : `not a LarchError: ${err}`}`);
}

/** Polls `cond` until it holds; for things with no event to wait on (a file, a log line, a process). */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'a condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The tools (commands looked up on PATH, or absolute paths) this machine lacks. */
export function missingTools(tools: string[]): string[] {
  return tools.filter((tool) => (tool.startsWith('/') ? !existsSync(tool) : spawnSync('sh', ['-c', `command -v '${tool}'`]).status !== 0));
}

/**
 * A subtest that needs what this machine may lack (`cannot`: what is missing, or false). Outside
 * CI it is skipped saying so; under CI (env CI set) it fails naming it, so a CI machine without a
 * tool never passes by skipping (scripts/test-setup.mjs and .ci/run install them all).
 */
export function testNeeding(parent: TapTest, name: string, cannot: string | false, opts: { timeout?: number }, fn: (t: TapTest) => Promise<unknown>): Promise<unknown> {
  return parent.test(name, { ...opts, skip: process.env.CI ? false : cannot }, async (t) => {
    if (cannot) return void t.fail(`cannot run in CI: ${cannot}`);
    await fn(t);
  });
}

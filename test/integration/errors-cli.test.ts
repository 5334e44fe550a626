/**
 * How the CLI fails when the world does, through the Bun binary: a reader that closes the pipe
 * early (`larch ls | head -1`) and a read-only filesystem.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createServer } from 'node:net';
import { BIN, IS_ROOT, larch, larchOk, listenLoopback, sh, tempDir } from '../helpers.ts';

/** Runs larch with stdout to a pipe that is closed after the first line, as `| head -1` does. */
function firstLineThenClose(args: string[]): Promise<{ first: string; code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let first: string | null = null;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      out += d;
      if (first === null && out.includes('\n')) {
        first = out.slice(0, out.indexOf('\n'));
        child.stdout.destroy(); // closes the read end: larch's next write fails with EPIPE
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ first: first ?? '', code, signal, stderr }));
  });
}

t.test('ls and diff piped to a reader that stops after one line exit 141 without a stack trace', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  // About 800 KiB of output, far more than a pipe (64 KiB) and the reader's first chunk hold, so
  // larch is still writing when the pipe closes.
  const long = 'x'.repeat(180);
  for (const version of [1, 2]) {
    const tree = join(dir, `v${version}`);
    mkdirSync(tree);
    for (let i = 0; i < 4000; i++) writeFileSync(join(tree, `file-with-a-long-name-${i}-${long}`), `v${version} ${i}\n`);
    await larchOk(['commit', '--repo', repo, '-b', 'os/stable', '--tree', tree, '--version', String(version), '--subject', `v${version}`]);
  }
  for (const args of [
    ['ls', '--repo', repo, 'os/stable', '-R'],
    ['diff', '--repo', repo, 'os/stable^', 'os/stable'],
  ]) {
    const r = await firstLineThenClose(args);
    t.match(r.first, /file-with-a-long-name-/, `${args[0]}: the first line arrived`);
    t.equal(r.stderr, '', `${args[0]}: nothing on stderr (no EPIPE, no stack trace)`);
    t.equal(r.code, 141, `${args[0]}: exit 141 (128 + SIGPIPE)`);
  }
});

t.test('a read-only filesystem is reported as read-only (READ_ONLY, exit 9), naming the file', async (t) => {
  if (!IS_ROOT) {
    t.fail('this test mounts a read-only tmpfs and needs root (CI runs as root); run it as root');
    return;
  }
  const mnt = tempDir(t, 'larch-erofs-');
  sh(`mount -t tmpfs -o size=4m larch-test '${mnt}'`);
  t.teardown(() => sh(`umount -l '${mnt}'`));
  // A sysroot's config, written while the filesystem is writable; then the filesystem goes read-only.
  mkdirSync(join(mnt, 'larch'));
  writeFileSync(join(mnt, 'larch', 'config.json'), JSON.stringify({ larch: 1, remote: { url: 'http://127.0.0.1:9/', kind: 'http' }, ref: 'os/stable', bootloader: 'uboot', tries: 3, pinned: false }));
  // The device lock's file exists (any earlier command made it): flock opens it read-only, and the first write is config.json.
  writeFileSync(join(mnt, 'larch', 'lock'), '');
  sh(`mount -o remount,ro '${mnt}'`);

  const r = await larch(['pin', '--sysroot', mnt, '--json']);
  t.equal(r.code, 9, `exit 9: ${r.stderr}`);
  t.equal(r.json?.error?.code, 'READ_ONLY', 'code READ_ONLY, not INTERNAL');
  t.equal(r.json?.error?.data?.path, join(mnt, 'larch', 'config.json'), 'data.path names the file that could not be written');
  t.match(r.json?.error?.message, /read-only/, 'the message says read-only');
  t.notMatch(r.stderr, /\.tmp-|INTERNAL/, 'not the clean-up of the temp file, not an internal error');
  t.match(r.stderr, /hint: remount .*read-write/, 'the hint says how to fix it');

  // Without the lock file, the lock is the first write: READ_ONLY naming it, not IO.
  sh(`mount -o remount,rw '${mnt}' && rm '${join(mnt, 'larch', 'lock')}' && mount -o remount,ro '${mnt}'`);
  const nolock = await larch(['pin', '--sysroot', mnt, '--json']);
  t.equal(nolock.json?.error?.code, 'READ_ONLY', `no lock file yet: READ_ONLY (${nolock.stderr.trim()})`);
  t.equal(nolock.json?.error?.data?.path, join(mnt, 'larch', 'lock'), 'naming the lock file');
  t.match(nolock.stderr, /hint: remount .*read-write/, 'with the same hint');
});

t.test('a port in use is said so, with a hint about the port (not about a path)', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const server = createServer();
  const port = await listenLoopback(t, server);
  const r = await larch(['serve', '--repo', repo, '--port', String(port), '--json']);
  t.equal(r.code, 9, 'exit 9 (IO)');
  t.match(r.json?.error, { code: 'IO', message: /address is already in use/, hint: /another process listens there.*--port/, data: { errno: 'EADDRINUSE' } });
  t.notMatch(r.json?.error?.hint ?? '', /check the path/);
});

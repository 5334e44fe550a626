/**
 * Shared set-up of the device tests: a vendor (archive repo, key, `larch serve`) that releases
 * small OS trees made from real Debian packages, and shortcuts for status and refusals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, type RunResult, debs, diffSnapshots, larchOk, sh, snapshotTree, tempDir } from './helpers.ts';

/** A tap test (the argument of t.test's callback). */
export type Test = import('tap').Test;

export const REF = 'os/stable';
export const lines = (n: number, change: Record<number, string> = {}) => Array.from({ length: n }, (_, i) => change[i + 1] ?? `setting${i + 1}=default`).join('\n') + '\n';

/** A small OS tree from real Debian packages, with /etc, /boot and /var content per version. */
export interface TreeOptions {
  failingHealthCheck?: boolean;
  /** Extra files: relative path -> content. */
  files?: Record<string, Uint8Array | string>;
  /** Symlinks: relative path -> target, replacing whatever the tree has there (a hostile tree). */
  symlinks?: Record<string, string>;
}

export function makeTree(dir: string, version: number, opts: TreeOptions = {}): void {
  mkdirSync(dir, { recursive: true });
  for (const deb of debs().filter((d) => /\/(busybox|hostname)_/.test(d))) sh(`dpkg-deb -x '${deb}' '${dir}'`);
  mkdirSync(join(dir, 'etc/larch/health.d/required.d'), { recursive: true });
  mkdirSync(join(dir, 'boot'), { recursive: true });
  mkdirSync(join(dir, 'var/lib/seed'), { recursive: true });
  writeFileSync(join(dir, 'etc/os-release'), `NAME=larch-test\nVERSION=${version}\n`);
  // app.conf: the vendor changes line 9 in v2; the admin changes line 2 (both must land).
  writeFileSync(join(dir, 'etc/app.conf'), lines(10, version >= 2 ? { 9: 'setting9=vendor-v2' } : {}));
  // overlap.conf: vendor and admin both change line 3 (conflict: local kept + .larchnew).
  writeFileSync(join(dir, 'etc/overlap.conf'), lines(5, version >= 2 ? { 3: 'setting3=vendor' } : {}));
  // motd: the admin deletes it, the vendor changes it in v2: it stays deleted.
  writeFileSync(join(dir, 'etc/motd'), `welcome to v${version}\n`);
  const check = join(dir, 'etc/larch/health.d/required.d/10-services');
  writeFileSync(check, opts.failingHealthCheck ? '#!/bin/sh\necho "service foo did not start" >&2\nexit 1\n' : '#!/bin/sh\nexit 0\n');
  chmodSync(check, 0o755);
  writeFileSync(join(dir, `boot/vmlinuz-6.1.0-${version}`), `kernel ${version}\n`);
  writeFileSync(join(dir, `boot/initrd.img-6.1.0-${version}`), `initrd ${version}\n`);
  writeFileSync(join(dir, 'var/lib/seed/first-boot'), 'seeded by the first deployment\n');
  for (const [path, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  for (const [path, target] of Object.entries(opts.symlinks ?? {})) {
    rmSync(join(dir, path), { recursive: true, force: true });
    symlinkSync(target, join(dir, path));
  }
}

/**
 * Copies a sysroot as `cp -a` does (hardlinks, owners, times kept) and rewrites the one file that
 * names it by absolute path, S/boot/fw_env.config (the U-Boot env files): the copy is then a device
 * of its own, sharing nothing with `from` (failpoints.test.ts checks that).
 */
export function copySysroot(from: string, to: string): string {
  sh(`cp -a '${from}' '${to}'`);
  const cfg = join(to, 'boot/fw_env.config');
  if (existsSync(cfg)) writeFileSync(cfg, readFileSync(cfg, 'utf8').replaceAll(`${from}/`, `${to}/`));
  return to;
}

export async function startServe(t: Test, repo: string, log: string, extra: string[] = []): Promise<string> {
  const child: ChildProcess = spawn(BIN, ['serve', '--repo', repo, '--port', '0', '--log', log, '--json', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGTERM'));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":"([^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`larch serve exited ${code}`)));
  });
}

export async function status(sysroot: string): Promise<any> {
  return (await larchOk(['status', '--sysroot', sysroot, '--json'])).json;
}

export interface Vendor {
  dir: string;
  repo: string;
  key: string;
  url: string;
  commits: string[];
  /** timestamp: the commit's (seconds; default 1_700_000_000 + version * 1000). */
  release(version: number, opts?: TreeOptions & { delta?: boolean; timestamp?: number }): Promise<string>;
}

/**
 * A vendor repo and key, served by `larch serve` (with serveArgs added to its command line);
 * initArgs are added to `larch init` (e.g. ['--dirtree-format', '1']).
 */
export async function vendor(t: Test, opts: { serveArgs?: string[]; initArgs?: string[] } = {}): Promise<Vendor> {
  const dir = tempDir(t);
  const repo = join(dir, 'srv');
  const key = join(dir, 'vendor');
  await larchOk(['keygen', '--out', key]);
  await larchOk(['init', '--repo', repo, '--mode', 'archive', ...(opts.initArgs ?? [])]);
  const v: Vendor = {
    dir,
    repo,
    key,
    url: '',
    commits: [],
    async release(version, opts = {}) {
      const tree = join(dir, `v${version}`);
      makeTree(tree, version, opts);
      const c = await larchOk(['commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(version), '--subject', `v${version}`, '--sign-key', `${key}.key`, '--owner', '0:0', '--timestamp', String(opts.timestamp ?? 1_700_000_000 + version * 1000), '--json']);
      const id = c.json.commit as string;
      if (v.commits.length > 0 && opts.delta !== false) await larchOk(['delta', 'generate', '--repo', repo, '--from', v.commits.at(-1)!, '--to', id, '--sign-key', `${key}.key`]);
      v.commits.push(id);
      await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
      return id;
    },
  };
  v.url = await startServe(t, repo, join(dir, 'access.log'), opts.serveArgs);
  return v;
}

export function expectFail(t: Test, r: RunResult, code: string, what: string): void {
  t.not(r.code, 0, `${what}: refused`);
  t.equal(r.json?.error?.code, code, `${what}: error ${code} (${r.json?.error?.message})`);
}


/** How slot's deployment differs from a fresh checkout of commit into scratch (empty: it is
 *  exactly the commit; the merged /etc and /var are the device's own and not compared). */
export async function deploymentDiff(dev: string, slot: string, commit: string, scratch: string): Promise<string[]> {
  await larchOk(['checkout', '--repo', join(dev, 'larch/repo'), commit, scratch]);
  const deployed = join(dev, 'larch/deploy', slot);
  const usr = await snapshotTree(join(deployed, 'usr'));
  // Snapshot keys are hex-encoded paths; the deployment keeps the vendor /etc as usr/etc.
  for (const k of [...usr.keys()]) {
    const path = Buffer.from(k, 'hex').toString('latin1');
    if (path === 'etc' || path.startsWith('etc/')) usr.delete(k);
  }
  return [
    ...diffSnapshots(await snapshotTree(join(scratch, 'usr')), usr).map((d) => `/usr: ${d}`),
    ...diffSnapshots(await snapshotTree(join(scratch, 'etc')), await snapshotTree(join(deployed, 'usr/etc'))).map((d) => `vendor /etc: ${d}`),
  ];
}

/**
 * Shared set-up of the device tests: a vendor (archive repo, key, `larch serve`) that releases
 * small OS trees made from real Debian packages, and shortcuts for status and refusals.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, type RunResult, changelog, debs, diffSnapshots, gzip9n, larchOk, sh, snapshotTree, tempDir } from './helpers.ts';
import { bootedSlot, changeBootState, readBootState } from '../src/agent/boot.ts';
import { readDeployment, writeDeployment } from '../src/agent/deploy.ts';
import { mergerFor } from '../src/agent/etc/merger.ts';
import { releaseEnvVars } from '../src/agent/release-floor.ts';
import { Sysroot } from '../src/agent/sysroot.ts';
import { next, other } from '../src/bootcount/state.ts';
import { type LayerInfo, encodeLayerInfo } from '../src/packages/layer-info.ts';
import { type InstalledPackage, encodePackageList } from '../src/packages/package-diff.ts';
import type { CborValue } from '../src/store/cbor.ts';
import { encodeCommit } from '../src/store/object.ts';
import { Transaction } from '../src/store/transaction.ts';

/** A tap test (the argument of t.test's callback). */
export type Test = import('tap').Test;

export const REF = 'os/stable';
export const lines = (n: number, change: Record<number, string> = {}) => Array.from({ length: n }, (_, i) => change[i + 1] ?? `setting${i + 1}=default`).join('\n') + '\n';

/** A small OS tree from real Debian packages, with /etc, /boot and /var content per version. */
export interface TreeOptions {
  failingHealthCheck?: boolean;
  /** The body of the required health check 10-services (a shell script; default: passes, or fails with failingHealthCheck). */
  healthCheck?: string;
  /** Extra files: relative path -> content. */
  files?: Record<string, Uint8Array | string>;
  /** Symlinks: relative path -> target, replacing whatever the tree has there (a hostile tree). */
  symlinks?: Record<string, string>;
  /** A larch binary to carry as the tree's agent, /usr/bin/larch (mode 0755). */
  agent?: string;
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
  writeFileSync(check, opts.healthCheck ?? (opts.failingHealthCheck ? '#!/bin/sh\necho "service foo did not start" >&2\nexit 1\n' : '#!/bin/sh\nexit 0\n'));
  chmodSync(check, 0o755);
  writeFileSync(join(dir, `boot/vmlinuz-6.1.0-${version}`), `kernel ${version}\n`);
  writeFileSync(join(dir, `boot/initrd.img-6.1.0-${version}`), `initrd ${version}\n`);
  writeFileSync(join(dir, 'var/lib/seed/first-boot'), 'seeded by the first deployment\n');
  // A gzip -9n changelog that grows with each release: every delta carries a view record (§8.6).
  mkdirSync(join(dir, 'usr/share/doc/larch-test'), { recursive: true });
  writeFileSync(join(dir, 'usr/share/doc/larch-test/changelog.Debian.gz'), gzip9n(changelog(100 + version, 1)));
  for (const [path, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    writeFileSync(join(dir, path), content);
  }
  if (opts.agent) {
    mkdirSync(join(dir, 'usr/bin'), { recursive: true });
    copyFileSync(opts.agent, join(dir, 'usr/bin/larch'));
    chmodSync(join(dir, 'usr/bin/larch'), 0o755);
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
  /** signKey: the commit's and delta's key, publishKey: the summary's (both default `key`; paths without .key). commitArgs: added to `larch commit` (e.g. ['--metadata', 'larch.min_agent_version=9']). */
  /** tree: commit this prepared directory as it is (its real owners) instead of makeTree's. */
  release(version: number, opts?: TreeOptions & { delta?: boolean; timestamp?: number; signKey?: string; publishKey?: string; commitArgs?: string[]; tree?: string }): Promise<string>;
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
      const tree = opts.tree ?? join(dir, `v${version}`);
      if (!opts.tree) makeTree(tree, version, opts);
      const signKey = opts.signKey ?? key;
      const c = await larchOk(['commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(version), '--subject', `v${version}`, '--sign-key', `${signKey}.key`, ...(opts.tree ? [] : ['--owner', '0:0']), '--timestamp', String(opts.timestamp ?? 1_700_000_000 + version * 1000), ...(opts.commitArgs ?? []), '--json']);
      const id = c.json.commit as string;
      if (v.commits.length > 0 && opts.delta !== false) await larchOk(['delta', 'generate', '--repo', repo, '--from', v.commits.at(-1)!, '--to', id, '--sign-key', `${signKey}.key`]);
      v.commits.push(id);
      await larchOk(['publish', '--repo', repo, '--sign-key', `${opts.publishKey ?? key}.key`]);
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

/** A package list as `larch commit --metadata-json` takes it (larch.packages, formats.md §12). */
export function packagesJson(dir: string, name: string, packages: [string, string, string][]): string {
  const file = join(dir, `${name}.packages.json`);
  writeFileSync(file, JSON.stringify({ 'larch.packages': packages }));
  return file;
}

/**
 * Stages a derived (layered) commit in the slot beside the booted one, as the layering engine
 * does, without the engine: base's tree and metadata with the layer's keys (formats.md §12.2)
 * and the whole tree's package list; `metadata` overrides entries (malformed ones for tests).
 * Returns the derived commit's id.
 */
export async function stageDerived(dev: string, base: string, layer: Omit<LayerInfo, 'base' | 'local'>, packages: InstalledPackage[], metadata: Record<string, CborValue> = {}): Promise<string> {
  const sysroot = new Sysroot(dev);
  const repo = await sysroot.openRepo();
  const b = await repo.readCommit(base);
  const entries = { ...Object.fromEntries(b.metadata), ...encodeLayerInfo({ ...layer, base: { commit: base, version: b.version }, local: true }), 'larch.packages': encodePackageList(packages), ...metadata };
  const txn = await Transaction.begin(repo);
  const id = await txn.writeMetadata('commit', encodeCommit({ ...b, parent: base, subject: `layered on ${b.version}`, metadata: new Map(Object.entries(entries)) }));
  await txn.commit();
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = (await bootedSlot(sysroot)) ?? state.order[0];
  const slot = other(booted);
  await changeBootState(sysroot, config, (s) => next(s, { type: 'slot-prepared', slot }));
  await writeDeployment(sysroot, repo, slot, id, { origin: { remote: config.remote.url, ref: config.ref }, signedBy: (await readDeployment(sysroot, booted))!.signedBy, merge: { bootedSlot: booted, merger: mergerFor() } });
  await repo.writeRef(`larch/slot-${slot}`, id);
  await changeBootState(sysroot, config, (s) => next(s, { type: 'upgrade-staged', slot, tries: config.tries }), await releaseEnvVars(sysroot));
  return id;
}

/** Mounts a size-limited tmpfs at dir (root only) until the test ends: a disk that fills up. */
export function tmpfs(t: Test, dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  sh(`mount -t tmpfs -o size=${size} larch-test '${dir}'`);
  t.teardown(() => sh(`umount -l '${dir}'`));
}

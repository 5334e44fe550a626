/**
 * Fixtures of the package layering tests (docs/layering.md): a layering-capable base tree in the
 * tree-layout contract of issue 17 (dpkg database under /usr/lib/sysimage/dpkg, the dpkg and apt
 * config that point there, an empty /var), a few tiny packages made with dpkg-deb, real Debian
 * packages (jq, libjq1, libonig5: a dependency chain the base lacks), and a local apt repository
 * served over HTTP on 127.0.0.1.
 *
 * Until `larch compose` resolves dependencies, the base is made with mmdebstrap --variant=apt
 * (root) and moved into the layout here; it is cached under .cache/layering, so a machine (and
 * CI) builds it once. Needs root (mmdebstrap, chroot, namespaces), network for the first build.
 */
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:http';
import { join, normalize } from 'node:path';
import { REF, copySysroot, startServe } from './device-helpers.ts';
import { BIN, ROOT, larchOk, listenLoopback, missingTools, sh, tempDir } from './helpers.ts';
import { acquireLock } from '../src/store/lock.ts';
import { ADMINDIR_CONFIG } from '../src/compose/layout.ts';
import { DPKG_ADMINDIR } from '../src/packages/dpkg-status.ts';

type Test = import('tap').Test;

/** Bump when the base's recipe changes: the cache key. */
const BASE_RECIPE = 'bookworm-apt-passwd-v1';
const CACHE = join(ROOT, '.cache', 'layering');
export const LAYERING_TOOLS = ['mmdebstrap', 'dpkg-deb', 'dpkg-scanpackages', 'unshare', 'chroot', 'apt-get'];
/** The real Debian packages layered from the HTTP repo: jq needs libjq1, which needs libonig5. */
export const REAL_PACKAGES = ['jq', 'libjq1', 'libonig5'];

/** What the machine lacks to run the layering tests (false: nothing). */
export function layeringCannot(): string | false {
  if (process.getuid?.() !== 0) return 'not root (mmdebstrap, chroot and namespaces need it; CI runs as root)';
  const missing = missingTools(LAYERING_TOOLS);
  return missing.length > 0 ? `missing tools: ${missing.join(', ')}` : false;
}

/**
 * The cached base tree (read only: copy it with baseTree). mmdebstrap --variant=apt plus passwd
 * (useradd, for maintainer scripts that add users), docs and locales left out, then the layout
 * moves of the contract.
 */
export function cachedBase(): string {
  const dir = join(CACHE, `base-${BASE_RECIPE}`);
  if (existsSync(dir)) return dir;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  const excludes = ['/usr/share/man/*', '/usr/share/doc/*', '/usr/share/locale/*', '/usr/share/info/*'].map((p) => `--dpkgopt='path-exclude=${p}'`).join(' ');
  sh(`mmdebstrap --quiet --variant=apt --mode=root --include=passwd ${excludes} bookworm '${tmp}' http://deb.debian.org/debian`);
  toLarchLayout(tmp);
  renameSync(tmp, dir);
  return dir;
}

/** The tree-layout contract: the dpkg database under /usr, the config that finds it, /var empty, no vendor apt sources. */
export function toLarchLayout(dir: string): void {
  mkdirSync(join(dir, 'usr/lib/sysimage'), { recursive: true });
  renameSync(join(dir, 'var/lib/dpkg'), join(dir, DPKG_ADMINDIR));
  for (const [path, text] of Object.entries(ADMINDIR_CONFIG)) writeFileSync(join(dir, path), text);
  // /var empty in commits; /dev is devtmpfs on a device (a tree holds no device nodes).
  for (const d of ['var', 'dev']) for (const e of readdirSync(join(dir, d))) rmSync(join(dir, d, e), { recursive: true, force: true });
  // The device's apt sources are the device's own /etc (the tests add theirs); the vendor ships none.
  rmSync(join(dir, 'etc/apt/sources.list'), { force: true });
  for (const e of readdirSync(join(dir, 'etc/apt/sources.list.d'))) rmSync(join(dir, 'etc/apt/sources.list.d', e), { force: true });
}

/**
 * A base tree of version `version` at dir: the cached base, the given .deb files installed by
 * the tree's own dpkg (chrooted), the boot files and health check a deployment needs.
 */
export function baseTree(dir: string, version: number, debs: string[] = []): string {
  sh(`cp -a '${cachedBase()}' '${dir}'`);
  if (debs.length > 0) {
    mkdirSync(join(dir, 'tmp/debs'), { recursive: true });
    for (const d of debs) sh(`cp '${d}' '${dir}/tmp/debs/'`);
    sh(`chroot '${dir}' sh -c 'dpkg -i /tmp/debs/*.deb' >/dev/null`);
    rmSync(join(dir, 'tmp/debs'), { recursive: true, force: true });
  }
  writeFileSync(join(dir, 'etc/larch-base-version'), `${version}\n`);
  mkdirSync(join(dir, 'boot'), { recursive: true });
  writeFileSync(join(dir, `boot/vmlinuz-6.1.0-${version}`), `kernel ${version}\n`);
  writeFileSync(join(dir, `boot/initrd.img-6.1.0-${version}`), `initrd ${version}\n`);
  mkdirSync(join(dir, 'etc/larch/health.d/required.d'), { recursive: true });
  writeFileSync(join(dir, 'etc/larch/health.d/required.d/10-ok'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(dir, 'etc/larch/health.d/required.d/10-ok'), 0o755);
  return dir;
}

export interface TinyPackage {
  name: string;
  version: string;
  depends?: string;
  conflicts?: string;
  /** postinst script body (after #!/bin/sh). */
  postinst?: string;
  /** Files: path -> content. Default /usr/share/NAME/version. */
  files?: Record<string, string>;
}

/** Builds a tiny .deb with dpkg-deb into outDir; returns its path. */
export function tinyDeb(outDir: string, p: TinyPackage): string {
  const root = join(outDir, `.build-${p.name}-${p.version}`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  const control = [`Package: ${p.name}`, `Version: ${p.version}`, 'Architecture: all', 'Maintainer: larch tests <tests@larch.invalid>', ...(p.depends ? [`Depends: ${p.depends}`] : []), ...(p.conflicts ? [`Conflicts: ${p.conflicts}`] : []), `Description: larch layering test package ${p.name}`, ''].join('\n');
  writeFileSync(join(root, 'DEBIAN/control'), control);
  if (p.postinst) {
    writeFileSync(join(root, 'DEBIAN/postinst'), `#!/bin/sh\nset -e\n${p.postinst}\n`);
    chmodSync(join(root, 'DEBIAN/postinst'), 0o755);
  }
  for (const [path, content] of Object.entries(p.files ?? { [`usr/share/${p.name}/version`]: `${p.version}\n` })) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const out = join(outDir, `${p.name}_${p.version}_all.deb`);
  sh(`dpkg-deb --root-owner-group -Zgzip --build '${root}' '${out}' >/dev/null`);
  rmSync(root, { recursive: true, force: true });
  return out;
}

/** jq, libjq1 and libonig5 from Debian (apt-get download, cached in .cache/layering/debs). */
export function realDebs(): string[] {
  const dir = join(CACHE, 'debs');
  mkdirSync(dir, { recursive: true });
  const have = () => readdirSync(dir).filter((f) => f.endsWith('.deb'));
  const missing = REAL_PACKAGES.filter((p) => !have().some((f) => f.startsWith(`${p}_`)));
  if (missing.length > 0) {
    // Into a directory of this process's first, renamed in whole: the other layering file may be reading dir.
    const tmp = join(dir, `.tmp-${process.pid}`);
    mkdirSync(tmp, { recursive: true });
    sh(`apt-get download ${missing.join(' ')}`, { cwd: tmp });
    for (const f of readdirSync(tmp)) renameSync(join(tmp, f), join(dir, f));
    rmSync(tmp, { recursive: true, force: true });
  }
  return have().filter((f) => REAL_PACKAGES.some((p) => f.startsWith(`${p}_`))).map((f) => join(dir, f));
}

/**
 * A flat apt repository of the given .deb files (dpkg-scanpackages), served over HTTP on
 * 127.0.0.1 until the test ends. The device's sources name it with [trusted=yes]: it is unsigned.
 * Returns the sources line.
 */
export async function aptRepo(t: Test, dir: string, debs: string[]): Promise<{ line: string; dir: string; stop: () => void }> {
  mkdirSync(dir, { recursive: true });
  for (const d of debs) sh(`cp '${d}' '${dir}/'`);
  sh(`dpkg-scanpackages --multiversion . > Packages 2>/dev/null && gzip -kf Packages`, { cwd: dir });
  const server = createServer((req, res) => {
    const path = normalize(join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(dir) || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': statSync(path).size });
    createReadStream(path).pipe(res);
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => sockets.add(s).size && s.on('close', () => sockets.delete(s)));
  const port = await listenLoopback(t, server);
  // stop(): the network is gone (connections refused), as on an offline device.
  const stop = () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  return { line: `deb [trusted=yes] http://127.0.0.1:${port}/ ./\n`, dir, stop };
}

/** Writes the device's apt sources (a local /etc edit of the booted deployment, as an admin would). */
export function setDeviceSources(deployment: string, line: string): void {
  mkdirSync(join(deployment, 'etc/apt/sources.list.d'), { recursive: true });
  writeFileSync(join(deployment, 'etc/apt/sources.list.d/test.list'), line);
}

/** The tiny packages the vendor bases carry (v1: hello 1.0; v2: + newbase; v3: + rival, which conflicts with larch-test-local). */
export const BASE_PACKAGES: Record<string, TinyPackage> = {
  hello: { name: 'larch-test-hello', version: '1.0' },
  newbase: { name: 'larch-test-newbase', version: '1.0' },
  rival: { name: 'larch-test-rival', version: '1.0', conflicts: 'larch-test-local' },
};

/** Bump when the world's recipe (bases, vendor, device) changes. */
const WORLD_RECIPE = `${BASE_RECIPE}-world-v1`;

export interface LayeringWorld {
  /** The vendor's archive repo (a copy of this test's own), served at url. */
  repo: string;
  key: string;
  url: string;
  /** The device's sysroot: provisioned from v1, booted and confirmed, following url. */
  dev: string;
  /** Vendor commits: 1 (hello 1.0), 2 (+ larch-test-newbase), 3 (+ larch-test-rival, which conflicts with larch-test-local). */
  commits: Record<1 | 2 | 3, string>;
  /** The vendor publishes release n (moves os/stable to it). */
  release(n: 1 | 2 | 3): Promise<void>;
}

/**
 * A vendor repo with three bases and a device provisioned from the first, built once and cached
 * in .cache/layering (provisioning 120 MB object by object over HTTP takes 30 s, a copy 4 s),
  * copied for each test (the device into opts.deviceParent, given). The vendor key is the cache's: a test fixture, nothing else trusts it.
 */
export async function layeringWorld(t: Test, opts: { deviceParent?: string } = {}): Promise<LayeringWorld> {
  const cached = join(CACHE, `world-${WORLD_RECIPE}`);
  if (!existsSync(cached)) {
    // Both layering test files start at once on a fresh machine: one builds, the other waits for it.
    mkdirSync(CACHE, { recursive: true });
    const lock = await acquireLock(join(CACHE, 'world.lock'), 15 * 60_000);
    try {
      if (!existsSync(cached)) await buildWorld(t, cached);
    } finally {
      await lock.release();
    }
  }
  const dir = tempDir(t, 'larch-world-');
  sh(`cp -a '${cached}/vendor' '${dir}/vendor'`);
  const dev = copySysroot(join(cached, 'device'), join(opts.deviceParent ?? dir, 'device'));
  const commits = JSON.parse(readFileSync(join(cached, 'commits.json'), 'utf8'));
  const repo = join(dir, 'vendor/srv');
  const key = join(dir, 'vendor/vendor');
  const url = await startServe(t, repo, join(dir, 'access.log'));
  const config = JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8'));
  writeFileSync(join(dev, 'larch/config.json'), JSON.stringify({ ...config, remote: { ...config.remote, url } }, null, 2) + '\n');
  const release = async (n: 1 | 2 | 3) => {
    writeFileSync(join(repo, 'refs/heads', REF), `${commits[n]}\n`);
    await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
  };
  return { repo, key, url, dev, commits, release };
}

async function buildWorld(t: Test, cached: string): Promise<void> {
  const tmp = `${cached}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(join(tmp, 'vendor'), { recursive: true });
  const debs = join(tmp, 'debs');
  const d = Object.fromEntries(Object.entries(BASE_PACKAGES).map(([k, p]) => [k, tinyDeb(debs, p)]));
  const repo = join(tmp, 'vendor/srv');
  const key = join(tmp, 'vendor/vendor');
  await larchOk(['keygen', '--out', key]);
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const commits: Record<number, string> = {};
  const sets: Record<number, string[]> = { 1: [d.hello], 2: [d.hello, d.newbase], 3: [d.hello, d.newbase, d.rival] };
  for (const n of [1, 2, 3]) {
    const tree = baseTree(join(tmp, `v${n}`), n, sets[n]);
    const c = await larchOk(['commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(n), '--subject', `base v${n}`, '--sign-key', `${key}.key`, '--timestamp', String(1_700_000_000 + n * 1000), '--json']);
    commits[n] = c.json.commit;
    rmSync(tree, { recursive: true, force: true });
  }
  writeFileSync(join(repo, 'refs/heads', REF), `${commits[1]}\n`);
  await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
  const url = await startServe(t, repo, join(tmp, 'access.log'));
  const dev = join(tmp, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', url, '--ref', REF, '--keys', `${key}.pub`, '--bootloader', 'uboot', '--version', '1']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  writeFileSync(join(tmp, 'commits.json'), JSON.stringify(commits) + '\n');
  // The env files are named by absolute path: as they will be once renamed into the cache.
  const cfg = join(dev, 'boot/fw_env.config');
  writeFileSync(cfg, readFileSync(cfg, 'utf8').replaceAll(`${tmp}/`, `${cached}/`));
  rmSync(debs, { recursive: true, force: true });
  rmSync(join(tmp, 'access.log'), { force: true });
  renameSync(tmp, cached);
}

/** The demo image definition a vendor composes (images/, docs/images.md): the base of layering-image.test.ts. */
export const DEMO_DEFINITION = join(ROOT, 'images', 'qemu-x86_64-grub.toml');
/** The compose cache the image tests share (.deb files of resolved composes in resolved/ARCH). */
export const COMPOSE_CACHE = join(ROOT, '.cache', 'compose');

/** What the machine lacks to compose the demo image and layer on it (false: nothing). */
export function demoLayeringCannot(): string | false {
  const layering = layeringCannot();
  if (layering) return layering;
  // The definition's commands build the initramfs with cpio and gzip; its agent is dist/larch.
  const missing = missingTools(['cpio', 'gzip', 'apt-cache', 'dpkg-query']);
  if (missing.length > 0) return `missing tools: ${missing.join(', ')}`;
  return existsSync(BIN) ? false : `no ${BIN}: run node scripts/build.mjs linux-x64 first (the demo image carries it as its agent)`;
}

export interface DemoDevice {
  /** The vendor's archive repo, served at url. */
  repo: string;
  key: string;
  url: string;
  /** `larch compose --json` of the definition: commit, ref, packages. */
  composed: { commit: string; ref: string; packages: { name: string; version: string; architecture: string }[] };
  /** The device's sysroot: provisioned from the composed commit (grub), booted and confirmed. */
  dev: string;
}

/**
 * A device provisioned from a demo image definition exactly as a vendor ships it: `larch compose
 * DEFINITION --repo R --sign-key K --cache .cache/compose`, `publish`, served over HTTP on
 * 127.0.0.1, `provision --sysroot` from it and `sim-boot`.
 */
export async function demoDevice(t: Test, dir: string, definition = DEMO_DEFINITION): Promise<DemoDevice> {
  const repo = join(dir, 'vendor/repo');
  const key = join(dir, 'vendor/vendor');
  mkdirSync(join(dir, 'vendor'), { recursive: true });
  await larchOk(['keygen', '--out', key]);
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const composed = (await larchOk(['compose', definition, '--repo', repo, '--sign-key', `${key}.key`, '--cache', COMPOSE_CACHE, '--work-dir', dir, '--json'])).json;
  await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
  const url = await startServe(t, repo, join(dir, 'access.log'));
  const dev = join(dir, 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', url, '--ref', composed.ref, '--keys', `${key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return { repo, key, url, composed, dev };
}

/**
 * The .deb file of package `name` at `version` that a resolved compose for `architecture` used:
 * from the compose cache (apt's archive name: the epoch's ':' is '%3a'), or, when that cache has
 * been emptied since, downloaded again with apt-get into outDir.
 */
export function composedDeb(p: { name: string; version: string; architecture: string }, definitionArchitecture: string, outDir: string): string {
  const file = `${p.name}_${p.version.replace(':', '%3a')}_${p.architecture}.deb`;
  const cached = join(COMPOSE_CACHE, 'resolved', definitionArchitecture, file);
  if (existsSync(cached)) return cached;
  mkdirSync(outDir, { recursive: true });
  sh(`apt-get download '${p.name}=${p.version}'`, { cwd: outDir });
  return join(outDir, file);
}

/**
 * Another version of a real package: the .deb unpacked with dpkg-deb -R, its control's Version
 * set, the given files added (path -> content), built again. Returns the new file's path.
 */
export function repackDeb(deb: string, outDir: string, version: string, files: Record<string, string> = {}): string {
  mkdirSync(outDir, { recursive: true });
  const root = join(outDir, `.repack-${process.pid}`);
  rmSync(root, { recursive: true, force: true });
  sh(`dpkg-deb -R '${deb}' '${root}'`);
  const controlPath = join(root, 'DEBIAN/control');
  const control = readFileSync(controlPath, 'utf8');
  writeFileSync(controlPath, control.replace(/^Version: .*$/m, `Version: ${version}`));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  const field = (f: string) => new RegExp(`^${f}: (.+)$`, 'm').exec(control)![1];
  const out = join(outDir, `${field('Package')}_${version.replace(':', '%3a')}_${field('Architecture')}.deb`);
  sh(`dpkg-deb --root-owner-group -Zgzip --build '${root}' '${out}' >/dev/null`);
  rmSync(root, { recursive: true, force: true });
  return out;
}

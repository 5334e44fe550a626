/**
 * The static-delta benchmark corpus: an "OS update" pair of trees made of real Debian bookworm
 * (amd64) packages. OLD holds the oldest version the apt sources offer of each package, NEW the
 * newest (bookworm point release vs bookworm-security / bookworm-updates); a package with a
 * single version goes into both unchanged, as in a real OS. The kernel is updated across ABI
 * versions, so /lib/modules/<version>/ and /boot/*-<version> are renamed as in a real update.
 *
 *   node --import tsx bench/delta-corpus.ts [--smoke | --double] [--json]
 *
 * The .debs are fetched with `apt-get download PKG=VERSION` into .cache/delta-debs/, the trees
 * unpacked with `dpkg-deb -x` into .cache/delta-tree/<kind>-<key>/{old,new} next to a
 * manifest.json naming every package and version used and the tree statistics (all kept between
 * runs; the key is a hash of the exact .deb files, so new package versions build a new pair).
 * A failed download stops the run.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { ROOT, treeStats, type TreeStats } from './corpus.ts';

export const DELTA_DEB_CACHE = join(ROOT, '.cache', 'delta-debs');
export const DELTA_TREE_CACHE = join(ROOT, '.cache', 'delta-tree');

/**
 * A package whose name carries an ABI number that moves with the version (the kernel): the
 * oldest and the newest version of the meta-package `meta` each depend on one exact package
 * matching `match`, e.g. linux-image-cloud-amd64 6.1.176-1 -> linux-image-6.1.0-50-cloud-amd64.
 */
export interface ViaMeta {
  meta: string;
  match: RegExp;
}
export type UpdateSpec = string | ViaMeta;

/**
 * The kernel: Debian's cloud flavour (105 MB unpacked, of which ~95 MB modules), a device-sized
 * kernel; the generic linux-image-*-amd64 is 400 MB, most of it drivers a device never loads.
 */
export const KERNEL: ViaMeta = { meta: 'linux-image-cloud-amd64', match: /^linux-image-[0-9][^ ]*-cloud-amd64$/ };

/**
 * Full corpus: a gateway-like OS (about 230 MB in NEW). Most of these have an update in the
 * sources (glibc, openssl, systemd, openssh, curl, python, perl, tzdata, ca-certificates, grub,
 * ...); the rest (coreutils, bash, icu, ...) have one version and stay unchanged.
 */
export const FULL_PACKAGES: readonly UpdateSpec[] = [
  KERNEL,
  // glibc
  'libc6', 'libc-bin', 'libc-l10n', 'locales',
  // openssl
  'libssl3', 'openssl',
  // systemd
  'systemd', 'libsystemd0', 'libsystemd-shared', 'libudev1', 'udev', 'systemd-timesyncd', 'systemd-resolved',
  'libnss-systemd', 'libpam-systemd', 'systemd-sysv',
  // openssh, curl
  'openssh-server', 'openssh-client', 'openssh-sftp-server', 'curl', 'libcurl4',
  // python 3.11 and perl 5.36
  'python3.11', 'python3.11-minimal', 'libpython3.11-minimal', 'libpython3.11-stdlib',
  'perl', 'perl-base', 'perl-modules-5.36', 'libperl5.36',
  // data
  'tzdata', 'ca-certificates',
  // libraries and tools with security updates
  'libglib2.0-0', 'libxml2', 'libexpat1', 'libnss3', 'libsasl2-2', 'libssh2-1', 'libpng16-16', 'libarchive13',
  'libevent-2.1-7', 'libbrotli1', 'libpcre2-8-0', 'liblzma5', 'xz-utils', 'apt', 'libapt-pkg6.0', 'sudo',
  'util-linux', 'libblkid1', 'libmount1', 'libuuid1', 'mount', 'fdisk', 'wpasupplicant', 'bluez', 'libbluetooth3',
  'rsyslog', 'mosquitto', 'libmosquitto1', 'grub-common', 'grub2-common', 'grub-efi-amd64-bin',
  // the rest of the base system (one version each in bookworm: unchanged)
  'coreutils', 'bash', 'dash', 'libstdc++6', 'libgcc-s1', 'zlib1g', 'libzstd1', 'libsqlite3-0', 'libicu72', 'dbus',
  'libdbus-1-3', 'iproute2', 'kmod', 'libkmod2', 'busybox', 'e2fsprogs', 'libext2fs2', 'libgnutls30', 'libgcrypt20',
  'libncursesw6', 'libtinfo6', 'libreadline8', 'libffi8', 'libcap2', 'libselinux1', 'findutils', 'grep', 'sed',
  'gzip', 'tar', 'dpkg', 'libcrypt1', 'libgmp10', 'libp11-kit0', 'libidn2-0', 'libunistring2', 'libtasn1-6',
  'libnettle8', 'libhogweed6', 'libkrb5-3', 'libgssapi-krb5-2', 'libk5crypto3', 'libkrb5support0', 'libnghttp2-14',
  'libpsl5', 'libldap-2.5-0', 'iptables', 'nftables', 'libnftables1', 'libmnl0', 'less', 'procps', 'libproc2-0',
  'vim-tiny', 'nano',
];

/**
 * Added on top of FULL_PACKAGES by --double, so that the tree and the update are both about
 * twice as large: an application layer (a kiosk browser engine, node, databases, containers,
 * git), almost all with an update in the sources.
 */
export const DOUBLE_EXTRA_PACKAGES: readonly UpdateSpec[] = [
  'libwebkit2gtk-4.1-0', 'libjavascriptcoregtk-4.1-0', 'nodejs', 'libnode108', 'postgresql-15', 'libpq5',
  'mariadb-server-core', 'mariadb-client-core', 'libmariadb3', 'containerd', 'git', 'git-man', 'php8.2-cli',
  'php8.2-common', 'apache2-bin', 'samba-libs', 'libgs10', 'libgs10-common', 'qemu-utils', 'redis-tools',
  'libmagickcore-6.q16-6', 'gstreamer1.0-plugins-base', 'libgstreamer-plugins-base1.0-0', 'unbound', 'bind9-libs',
];

/** Smoke corpus for CI: three small packages with two versions each, a few MB. */
export const SMOKE_PACKAGES: readonly UpdateSpec[] = ['tzdata', 'ca-certificates', 'libexpat1'];

export type CorpusKind = 'smoke' | 'full' | 'double';

export function packagesFor(kind: CorpusKind): readonly UpdateSpec[] {
  return kind === 'smoke' ? SMOKE_PACKAGES : kind === 'full' ? FULL_PACKAGES : [...FULL_PACKAGES, ...DOUBLE_EXTRA_PACKAGES];
}

/** One exact package version and its .deb in the cache. */
export interface PackageVersion {
  package: string;
  version: string;
  deb: string;
}
export interface ManifestEntry {
  /** The name in the list (the meta-package for the kernel). */
  spec: string;
  old: PackageVersion;
  new: PackageVersion;
  changed: boolean;
}
export interface PairStats {
  old: TreeStats;
  new: TreeStats;
  /** Regular files at the same path in both trees with different content. */
  changedFiles: number;
  /** Regular files only in NEW / only in OLD (renames count as both). */
  addedFiles: number;
  removedFiles: number;
  /** Regular files at the same path with the same content in both. */
  sameFiles: number;
  /** Bytes of distinct NEW file contents found nowhere in OLD: what a delta must encode. */
  newContentBytes: number;
  newContentFiles: number;
}
export interface Manifest {
  kind: CorpusKind;
  created: string;
  kernel: { old: string; new: string } | null;
  packages: ManifestEntry[];
  stats: PairStats;
}
export interface DeltaCorpus {
  dir: string;
  old: string;
  new: string;
  manifest: Manifest;
}

function fail(message: string): never {
  throw new Error(`bench delta-corpus: ${message}`);
}

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...(cwd ? { cwd } : {}) });
  if (r.error) fail(`'${cmd}' is not available (${r.error.message}); this benchmark needs a Debian host with apt and dpkg`);
  if (r.status !== 0) fail(`'${cmd} ${args.join(' ')}' failed (exit ${r.status}):\n${r.stderr.trim()}`);
  return r.stdout;
}

const versionLess = (a: string, b: string) => spawnSync('dpkg', ['--compare-versions', a, 'lt', b]).status === 0;

/** Every version apt's sources offer of a package, oldest first. */
export function availableVersions(pkg: string): string[] {
  const out = run('apt-cache', ['madison', pkg]);
  const versions = new Set<string>();
  for (const line of out.split('\n')) {
    const cols = line.split('|').map((c) => c.trim());
    if (cols.length >= 3 && cols[0] === pkg && / Packages$/.test(cols[2])) versions.add(cols[1]);
  }
  if (versions.size === 0) fail(`apt knows no version of '${pkg}'; run 'apt-get update'?`);
  return [...versions].sort((a, b) => (a === b ? 0 : versionLess(a, b) ? -1 : 1));
}

/** The exact package (name, version) that version `metaVersion` of the meta-package depends on. */
function resolveMeta(spec: ViaMeta, metaVersion: string): { package: string; version: string } {
  const out = run('apt-cache', ['show', `${spec.meta}=${metaVersion}`]);
  const depends = /^Depends: (.*)$/m.exec(out)?.[1] ?? fail(`'${spec.meta}=${metaVersion}' has no Depends field`);
  for (const dep of depends.split(',')) {
    const m = /^\s*(\S+)\s*\(=\s*([^)\s]+)\)/.exec(dep);
    if (m && spec.match.test(m[1])) return { package: m[1], version: m[2] };
  }
  fail(`no dependency of '${spec.meta}=${metaVersion}' matches ${spec.match} as 'NAME (= VERSION)': ${depends}`);
}

interface Wanted {
  spec: string;
  old: { package: string; version: string };
  new: { package: string; version: string };
}

/** Decides OLD and NEW for each spec: the oldest and the newest version in the sources. */
export function resolveVersions(specs: readonly UpdateSpec[]): Wanted[] {
  return specs.map((spec): Wanted => {
    if (typeof spec === 'string') {
      const versions = availableVersions(spec);
      return { spec, old: { package: spec, version: versions[0] }, new: { package: spec, version: versions[versions.length - 1] } };
    }
    const versions = availableVersions(spec.meta);
    return { spec: spec.meta, old: resolveMeta(spec, versions[0]), new: resolveMeta(spec, versions[versions.length - 1]) };
  });
}

/** The cached .deb of exactly this package version, if any. */
function cachedDeb(pkg: string, version: string): string | undefined {
  return readdirSync(DELTA_DEB_CACHE).find((f) => {
    if (!f.endsWith('.deb')) return false;
    const [name, ver] = f.split('_');
    return name === pkg && ver !== undefined && decodeURIComponent(ver) === version;
  });
}

/** Fetches every package=version (once) into the cache; fails loudly naming what could not be had. */
export function downloadDebs(wanted: readonly { package: string; version: string }[]): Map<string, string> {
  mkdirSync(DELTA_DEB_CACHE, { recursive: true });
  const key = (p: { package: string; version: string }) => `${p.package}=${p.version}`;
  const need = [...new Set(wanted.filter((p) => cachedDeb(p.package, p.version) === undefined).map(key))];
  if (need.length > 0) {
    const download = () => spawnSync('apt-get', ['download', ...need], { cwd: DELTA_DEB_CACHE, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    let r = download();
    if (r.error) fail(`'apt-get' is not available (${r.error.message}); this benchmark needs a Debian host`);
    if (r.status !== 0 && process.getuid?.() === 0) {
      // A stale package list names versions the mirror no longer has.
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
      r = download();
    }
    if (r.status !== 0) fail(`'apt-get download ${need.join(' ')}' failed (exit ${r.status}):\n${r.stderr.trim()}`);
  }
  const debs = new Map<string, string>();
  for (const p of wanted) {
    const f = cachedDeb(p.package, p.version) ?? fail(`'${key(p)}' was downloaded but no matching .deb is in ${DELTA_DEB_CACHE}`);
    debs.set(key(p), f);
  }
  return debs;
}

interface Entry {
  kind: 'file' | 'symlink' | 'dir';
  size: number;
  /** sha256 of the content for files, the target for symlinks. */
  digest: string;
}

async function index(root: string): Promise<Map<string, Entry>> {
  const entries = new Map<string, Entry>();
  const visit = async (rel: string): Promise<void> => {
    const path = join(root, rel);
    const st = await lstat(path);
    if (st.isDirectory()) {
      entries.set(rel, { kind: 'dir', size: 0, digest: '' });
      for (const name of (await readdir(path)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
    } else if (st.isSymbolicLink()) {
      entries.set(rel, { kind: 'symlink', size: st.size, digest: await readlink(path) });
    } else if (st.isFile()) {
      entries.set(rel, { kind: 'file', size: st.size, digest: createHash('sha256').update(await readFile(path)).digest('hex') });
    }
  };
  await visit('');
  return entries;
}

/** Compares the two trees: what changed, what moved, how many bytes of content are new. */
export async function comparePair(oldDir: string, newDir: string): Promise<PairStats> {
  const [oldIndex, newIndex] = [await index(oldDir), await index(newDir)];
  const oldDigests = new Set<string>();
  for (const e of oldIndex.values()) if (e.kind === 'file') oldDigests.add(e.digest);
  const stats: PairStats = { old: await treeStats(oldDir), new: await treeStats(newDir), changedFiles: 0, addedFiles: 0, removedFiles: 0, sameFiles: 0, newContentBytes: 0, newContentFiles: 0 };
  const counted = new Set<string>();
  for (const [path, e] of newIndex) {
    if (e.kind !== 'file') continue;
    const o = oldIndex.get(path);
    if (o?.kind !== 'file') stats.addedFiles++;
    else if (o.digest === e.digest) stats.sameFiles++;
    else stats.changedFiles++;
    if (!oldDigests.has(e.digest) && !counted.has(e.digest)) {
      counted.add(e.digest);
      stats.newContentBytes += e.size;
      stats.newContentFiles++;
    }
  }
  for (const [path, e] of oldIndex) if (e.kind === 'file' && newIndex.get(path)?.kind !== 'file') stats.removedFiles++;
  return stats;
}

function unpack(debs: readonly string[], dest: string): void {
  mkdirSync(dest, { recursive: true });
  for (const deb of debs) run('dpkg-deb', ['-x', join(DELTA_DEB_CACHE, deb), dest]);
}

/**
 * Returns the OLD/NEW pair of the given kind, building it on first use. The pair is built in a
 * temp dir and renamed into place, so an interrupted build is never used.
 */
export async function buildDeltaCorpus(kind: CorpusKind, log: (s: string) => void = () => {}): Promise<DeltaCorpus> {
  const wanted = resolveVersions(packagesFor(kind));
  const debs = downloadDebs(wanted.flatMap((w) => [w.old, w.new]));
  const debOf = (p: { package: string; version: string }) => debs.get(`${p.package}=${p.version}`)!;
  const oldDebs = wanted.map((w) => debOf(w.old));
  const newDebs = wanted.map((w) => debOf(w.new));
  const key = createHash('sha256').update(`old\n${[...oldDebs].sort().join('\n')}\nnew\n${[...newDebs].sort().join('\n')}`).digest('hex').slice(0, 12);
  const dir = join(DELTA_TREE_CACHE, `${kind}-${key}`);
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) {
    log(`bench/delta-corpus: unpacking ${wanted.length} packages into ${dir}/{old,new}`);
    mkdirSync(DELTA_TREE_CACHE, { recursive: true });
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    // The list order is the unpack order for both trees, so a file shipped by two packages
    // comes from the same package on both sides.
    unpack(oldDebs, join(tmp, 'old'));
    unpack(newDebs, join(tmp, 'new'));
    const packages: ManifestEntry[] = wanted.map((w) => ({
      spec: w.spec,
      old: { ...w.old, deb: debOf(w.old) },
      new: { ...w.new, deb: debOf(w.new) },
      changed: debOf(w.old) !== debOf(w.new),
    }));
    const k = wanted.find((w) => w.spec === KERNEL.meta);
    const manifest: Manifest = {
      kind,
      created: new Date().toISOString(),
      kernel: k ? { old: `${k.old.package} ${k.old.version}`, new: `${k.new.package} ${k.new.version}` } : null,
      packages,
      stats: await comparePair(join(tmp, 'old'), join(tmp, 'new')),
    };
    writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  return { dir, old: join(dir, 'old'), new: join(dir, 'new'), manifest };
}

const MiB = (n: number) => (n / 2 ** 20).toFixed(1);

/** A few lines describing the pair, for logs and reports. */
export function describe(m: Manifest): string {
  const s = m.stats;
  const changed = m.packages.filter((p) => p.changed);
  return [
    `${m.kind} pair: ${m.packages.length} packages, ${changed.length} updated; kernel: ${m.kernel ? `${m.kernel.old} -> ${m.kernel.new}` : 'no'}`,
    `OLD ${MiB(s.old.bytes)} MiB, ${s.old.files} files, ${s.old.symlinks} symlinks, ${s.old.dirs} dirs`,
    `NEW ${MiB(s.new.bytes)} MiB, ${s.new.files} files, ${s.new.symlinks} symlinks, ${s.new.dirs} dirs`,
    `files: ${s.sameFiles} same, ${s.changedFiles} changed in place, ${s.addedFiles} added, ${s.removedFiles} removed; ` +
      `${s.newContentFiles} new contents, ${MiB(s.newContentBytes)} MiB not found in OLD`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { smoke: { type: 'boolean', default: false }, double: { type: 'boolean', default: false }, json: { type: 'boolean', default: false } } });
  if (values.smoke && values.double) fail('--smoke and --double exclude each other');
  const kind: CorpusKind = values.smoke ? 'smoke' : values.double ? 'double' : 'full';
  const corpus = await buildDeltaCorpus(kind, (s) => console.error(s));
  if (values.json) console.log(JSON.stringify({ dir: corpus.dir, ...corpus.manifest }, null, 2));
  else {
    console.log(`${corpus.dir}\n${describe(corpus.manifest)}`);
    for (const p of corpus.manifest.packages.filter((e) => e.changed)) console.log(`  ${p.old.package} ${p.old.version} -> ${p.new.package} ${p.new.version}`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  });
}

/**
 * The static-delta benchmark corpus: an "OS update" pair of trees made of real Debian bookworm
 * (amd64) packages. OLD holds the oldest version the apt sources offer of each package, NEW the
 * newest (bookworm point release vs bookworm-security / bookworm-updates); a package with a
 * single version goes into both unchanged, as in a real OS. The kernel is updated across ABI
 * versions, so /lib/modules/<version>/ and /boot/*-<version> are renamed as in a real update.
 * Each tree of a pair with a kernel also gets the initramfs a larch image carries
 * (/boot/initrd.img-<version>), made by the demo's own mkinitramfs from that tree's busybox, C
 * library and modules, unless --no-initramfs.
 *
 *   node --import tsx bench/delta-corpus.ts [--smoke | --double | --pair corpus|server] [--no-initramfs] [--json]
 *
 * Pairs: corpus (default; --smoke and --double are its small and large variants) and server, a
 * desktop-less server around the generic kernel (linux-image-amd64, whose payload is xz).
 * The .debs are fetched with `apt-get download PKG=VERSION` into .cache/delta-debs/, the trees
 * unpacked with `dpkg-deb -x` into .cache/delta-tree/<kind>[-initramfs]-<key>/{old,new} next to
 * a manifest.json naming every package and version used and the tree statistics (all kept
 * between runs; the key is a hash of the exact .deb files and, with the initramfs, of the
 * scripts that make it, so new package versions or a changed mkinitramfs build a new pair).
 * A failed download stops the run.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
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

/**
 * Smoke corpus for CI: three small packages with two versions each, a few MB. Each update
 * changes the package's changelog.Debian.gz (GNU gzip -9n), so the smoke run sends at least one
 * file through its view.
 */
export const SMOKE_PACKAGES: readonly UpdateSpec[] = ['tzdata', 'ca-certificates', 'libexpat1'];

/**
 * Debian's generic kernel: 400 MB unpacked, mostly modules, and a bzImage whose payload is xz
 * (x86 BCJ + LZMA2), which no device can recompress byte for byte: larch must report it as a
 * `no-encoder` fallback and send the kernel as a plain patch.
 */
export const GENERIC_KERNEL: ViaMeta = { meta: 'linux-image-amd64', match: /^linux-image-[0-9][0-9.]*-[0-9]+-amd64$/ };

/**
 * The second pair (--pair server), of another shape than the corpus pair: a desktop-less server
 * image around the generic kernel, ssh, systemd, apt with unattended upgrades, nftables, python;
 * its C library, busybox and tools so that it is a bootable-looking tree (and mkinitramfs finds
 * what it needs). Fewer packages than FULL_PACKAGES, a kernel four times as large.
 */
export const SERVER_PACKAGES: readonly UpdateSpec[] = [
  GENERIC_KERNEL,
  // what the issue names
  'openssh-server', 'openssh-client', 'openssh-sftp-server', 'systemd', 'systemd-sysv', 'libsystemd0', 'libsystemd-shared',
  'libudev1', 'udev', 'libnss-systemd', 'libpam-systemd', 'apt', 'libapt-pkg6.0', 'curl', 'libcurl4', 'ca-certificates',
  'nftables', 'libnftables1', 'libnftnl11', 'sudo', 'rsyslog', 'python3-minimal', 'python3.11-minimal',
  'libpython3.11-minimal', 'python3.11', 'libpython3.11-stdlib', 'python3', 'python3-apt', 'python3-distro-info',
  'distro-info-data', 'unattended-upgrades',
  // the base under them
  'libc6', 'libc-bin', 'libssl3', 'openssl', 'tzdata', 'busybox', 'coreutils', 'bash', 'dash', 'util-linux', 'mount',
  'libblkid1', 'libmount1', 'libuuid1', 'libsmartcols1', 'e2fsprogs', 'libext2fs2', 'kmod', 'libkmod2', 'iproute2',
  'dbus', 'libdbus-1-3', 'libpam0g', 'libpam-modules', 'libpam-modules-bin', 'libpam-runtime', 'libselinux1',
  'libstdc++6', 'libgcc-s1', 'zlib1g', 'libzstd1', 'liblzma5', 'libbz2-1.0', 'libgnutls30', 'libgcrypt20',
  'libgpg-error0', 'libexpat1', 'libsqlite3-0', 'libffi8', 'libcap2', 'libcrypt1', 'libmnl0', 'libxtables12',
  'libnghttp2-14', 'libpsl5', 'libidn2-0', 'libunistring2', 'libkrb5-3', 'libgssapi-krb5-2', 'libk5crypto3',
  'libkrb5support0', 'libldap-2.5-0', 'libsasl2-2', 'libssh2-1', 'librtmp1', 'libbrotli1', 'libwrap0', 'libaudit1',
  'libestr0', 'libfastjson4', 'liblognorm5', 'procps', 'libproc2-0', 'less', 'vim-tiny', 'findutils', 'grep', 'sed',
  'gzip', 'tar', 'dpkg', 'debconf', 'perl-base', 'gpgv', 'debian-archive-keyring', 'login', 'passwd', 'adduser',
  'base-files', 'netbase', 'ifupdown', 'isc-dhcp-client', 'logrotate', 'cron', 'grub-common', 'grub2-common',
  'grub-efi-amd64-bin',
];

export type CorpusKind = 'smoke' | 'full' | 'double' | 'server';
export const CORPUS_KINDS: readonly CorpusKind[] = ['smoke', 'full', 'double', 'server'];

export function packagesFor(kind: CorpusKind): readonly UpdateSpec[] {
  return kind === 'smoke' ? SMOKE_PACKAGES : kind === 'full' ? FULL_PACKAGES : kind === 'server' ? SERVER_PACKAGES : [...FULL_PACKAGES, ...DOUBLE_EXTRA_PACKAGES];
}

/** The CLI's pair options (bench/delta.ts and this file): --smoke, --double, --pair corpus|server. */
export function corpusKindOf(opts: { smoke?: boolean; double?: boolean; pair?: string }, fail: (message: string) => never): CorpusKind {
  const pair = opts.pair ?? 'corpus';
  if (pair !== 'corpus' && pair !== 'server') fail(`--pair takes corpus or server; got '${pair}'`);
  if (opts.smoke && opts.double) fail('--smoke and --double exclude each other');
  if (pair === 'server' && (opts.smoke || opts.double)) fail('--smoke and --double are variants of the corpus pair; leave them out with --pair server');
  return pair === 'server' ? 'server' : opts.smoke ? 'smoke' : opts.double ? 'double' : 'full';
}

/** The demo image's initramfs builder and the init it packs (images/qemu-x86_64-grub.toml). */
export const MKINITRAMFS = join(ROOT, 'images', 'overlay', 'initramfs', 'usr', 'lib', 'larch', 'mkinitramfs');
export const INITRAMFS_INIT = join(ROOT, 'images', 'overlay', 'initramfs', 'usr', 'lib', 'larch', 'init');

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
export interface InitramfsFile {
  path: string;
  bytes: number;
}
export interface Manifest {
  kind: CorpusKind;
  created: string;
  kernel: { old: string; new: string } | null;
  /** The initramfs added to each tree (by mkinitramfs), or null: --no-initramfs, or no kernel in the pair. */
  initramfs?: { old: InitramfsFile[]; new: InitramfsFile[] } | null;
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

/** Every version apt's sources offer of each package, oldest first (one `apt-cache madison` for all). */
export function availableVersionsOf(pkgs: readonly string[]): Map<string, string[]> {
  const found = new Map<string, Set<string>>(pkgs.map((p) => [p, new Set<string>()]));
  for (const line of run('apt-cache', ['madison', ...new Set(pkgs)]).split('\n')) {
    const cols = line.split('|').map((c) => c.trim());
    if (cols.length >= 3 && / Packages$/.test(cols[2])) found.get(cols[0])?.add(cols[1]);
  }
  const out = new Map<string, string[]>();
  for (const [pkg, versions] of found) {
    if (versions.size === 0) fail(`apt knows no version of '${pkg}'; run 'apt-get update'?`);
    out.set(pkg, [...versions].sort((a, b) => (a === b ? 0 : versionLess(a, b) ? -1 : 1)));
  }
  return out;
}

/** Every version apt's sources offer of a package, oldest first. */
export function availableVersions(pkg: string): string[] {
  return availableVersionsOf([pkg]).get(pkg)!;
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
  const all = availableVersionsOf(specs.map((spec) => (typeof spec === 'string' ? spec : spec.meta)));
  return specs.map((spec): Wanted => {
    if (typeof spec === 'string') {
      const versions = all.get(spec)!;
      return { spec, old: { package: spec, version: versions[0] }, new: { package: spec, version: versions[versions.length - 1] } };
    }
    const versions = all.get(spec.meta)!;
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
 * Resolves `rel` inside the unpacked tree `root` as the tree's own symlinks say (an absolute
 * target such as libc6's /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/... is taken
 * inside the tree, never on the host). Undefined when it does not exist.
 */
function resolveInTree(root: string, rel: string): string | undefined {
  let rest = rel.split('/').filter((c) => c !== '' && c !== '.');
  let done: string[] = [];
  for (let hops = 0; rest.length > 0; ) {
    const name = rest.shift()!;
    if (name === '..') {
      done.pop();
      continue;
    }
    const path = join(root, ...done, name);
    if (!existsSync(path) && !isSymlink(path)) return undefined;
    if (isSymlink(path)) {
      if (++hops > 40) return undefined;
      const target = readlinkSync(path);
      if (target.startsWith('/')) done = [];
      rest = [...target.split('/').filter((c) => c !== '' && c !== '.'), ...rest];
      continue;
    }
    done.push(name);
  }
  return join(root, ...done);
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Adds boot/initrd.img-<release> for each kernel of an unpacked tree, made by the demo image's
 * own mkinitramfs. That script runs in a composed image, whose /usr is merged; a tree unpacked
 * with dpkg-deb -x is not (bookworm's packages ship /bin/busybox, /lib/x86_64-linux-gnu/libc.so.6,
 * /lib/modules/...). So it runs in a staging directory holding, at their merged-/usr paths,
 * copies of what it reads from the tree (busybox, libc, libresolv, the dynamic loader, the
 * modules as hardlinks, larch's init): the bytes it packs are the tree's own. Returns the files
 * added; none when the tree has no kernel modules.
 */
export function addInitramfs(tree: string, staging: string): InitramfsFile[] {
  const modules = ['usr/lib/modules', 'lib/modules'].flatMap((d) => (existsSync(join(tree, d)) ? readdirSync(join(tree, d)).map((release) => ({ dir: join(tree, d, release), release })) : []));
  if (modules.length === 0) return [];
  rmSync(staging, { recursive: true, force: true });
  const put = (from: string, to: string) => {
    mkdirSync(dirname(join(staging, to)), { recursive: true });
    copyFileSync(from, join(staging, to));
  };
  const busybox = ['usr/bin/busybox', 'bin/busybox'].map((p) => resolveInTree(tree, p)).find((p) => p !== undefined);
  if (busybox === undefined) fail(`'${tree}' has no usr/bin/busybox or bin/busybox for mkinitramfs: add 'busybox' to the pair's package list, or pass --no-initramfs`);
  put(busybox, 'usr/bin/busybox');
  // What mkinitramfs packs beside a dynamic busybox (libc, libresolv, the loader), where a merged-/usr tree has them.
  const libs: [from: string[], to: string][] = [
    ...['libc.so.6', 'libresolv.so.2', 'ld-linux-x86-64.so.2'].map((n): [string[], string] => [[`usr/lib/x86_64-linux-gnu/${n}`, `lib/x86_64-linux-gnu/${n}`], `usr/lib/x86_64-linux-gnu/${n}`]),
    [['usr/lib64/ld-linux-x86-64.so.2', 'lib64/ld-linux-x86-64.so.2'], 'usr/lib64/ld-linux-x86-64.so.2'],
  ];
  for (const [from, to] of libs) {
    const found = from.map((p) => resolveInTree(tree, p)).find((p) => p !== undefined && statSync(p).isFile());
    if (found === undefined) fail(`'${tree}' has none of ${from.join(', ')} for mkinitramfs: add 'libc6' to the pair's package list, or pass --no-initramfs`);
    put(found, to);
  }
  for (const m of modules) {
    mkdirSync(join(staging, 'usr/lib/modules'), { recursive: true });
    run('cp', ['-al', m.dir, join(staging, 'usr/lib/modules', m.release)]);
  }
  put(INITRAMFS_INIT, 'usr/lib/larch/init');
  mkdirSync(join(staging, 'boot'), { recursive: true });
  run('sh', [MKINITRAMFS], staging);
  const added: InitramfsFile[] = [];
  mkdirSync(join(tree, 'boot'), { recursive: true });
  for (const name of readdirSync(join(staging, 'boot')).sort()) {
    copyFileSync(join(staging, 'boot', name), join(tree, 'boot', name));
    added.push({ path: posix.join('/boot', name), bytes: statSync(join(tree, 'boot', name)).size });
  }
  rmSync(staging, { recursive: true, force: true });
  return added;
}

export interface CorpusOptions {
  /** Add the initramfs to each tree of a pair with a kernel (default true). */
  initramfs?: boolean;
}

const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Returns the OLD/NEW pair of the given kind, building it on first use. The pair is built in a
 * temp dir and renamed into place, so an interrupted build is never used.
 */
export async function buildDeltaCorpus(kind: CorpusKind, log: (s: string) => void = () => {}, opts: CorpusOptions = {}): Promise<DeltaCorpus> {
  const specs = packagesFor(kind);
  const kernelMetas = specs.filter((s): s is ViaMeta => typeof s !== 'string').map((s) => s.meta);
  const wanted = resolveVersions(specs);
  const debs = downloadDebs(wanted.flatMap((w) => [w.old, w.new]));
  const debOf = (p: { package: string; version: string }) => debs.get(`${p.package}=${p.version}`)!;
  const oldDebs = wanted.map((w) => debOf(w.old));
  const newDebs = wanted.map((w) => debOf(w.new));
  // Only a pair with a kernel gets an initramfs (mkinitramfs makes one per kernel).
  const initramfs = opts.initramfs !== false && kernelMetas.length > 0;
  // Without the initramfs the key is what it always was, so an existing pair stays in use.
  const key = sha256(
    `old\n${[...oldDebs].sort().join('\n')}\nnew\n${[...newDebs].sort().join('\n')}` +
      (initramfs ? `\ninitramfs\n${sha256(readFileSync(MKINITRAMFS))}\n${sha256(readFileSync(INITRAMFS_INIT))}` : ''),
  ).slice(0, 12);
  const dir = join(DELTA_TREE_CACHE, `${kind}${initramfs ? '-initramfs' : ''}-${key}`);
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
    let added: Manifest['initramfs'] = null;
    if (initramfs) {
      log('bench/delta-corpus: making the initramfs of each tree with mkinitramfs');
      added = { old: addInitramfs(join(tmp, 'old'), join(tmp, 'initramfs')), new: addInitramfs(join(tmp, 'new'), join(tmp, 'initramfs')) };
      for (const [side, files] of Object.entries(added)) if (files.length === 0) fail(`mkinitramfs made no initramfs in the ${side} tree of ${tmp}`);
    }
    const packages: ManifestEntry[] = wanted.map((w) => ({
      spec: w.spec,
      old: { ...w.old, deb: debOf(w.old) },
      new: { ...w.new, deb: debOf(w.new) },
      changed: debOf(w.old) !== debOf(w.new),
    }));
    const k = wanted.find((w) => kernelMetas.includes(w.spec));
    const manifest: Manifest = {
      kind,
      created: new Date().toISOString(),
      kernel: k ? { old: `${k.old.package} ${k.old.version}`, new: `${k.new.package} ${k.new.version}` } : null,
      initramfs: added,
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
    `initramfs (mkinitramfs): ${m.initramfs ? `OLD ${m.initramfs.old.map((f) => `${f.path} ${f.bytes} B`).join(', ')}; NEW ${m.initramfs.new.map((f) => `${f.path} ${f.bytes} B`).join(', ')}` : 'none'}`,
    `OLD ${MiB(s.old.bytes)} MiB, ${s.old.files} files, ${s.old.symlinks} symlinks, ${s.old.dirs} dirs`,
    `NEW ${MiB(s.new.bytes)} MiB, ${s.new.files} files, ${s.new.symlinks} symlinks, ${s.new.dirs} dirs`,
    `files: ${s.sameFiles} same, ${s.changedFiles} changed in place, ${s.addedFiles} added, ${s.removedFiles} removed; ` +
      `${s.newContentFiles} new contents, ${MiB(s.newContentBytes)} MiB not found in OLD`,
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      double: { type: 'boolean', default: false },
      pair: { type: 'string', default: 'corpus' },
      'no-initramfs': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    },
  });
  const kind = corpusKindOf(values, fail);
  const corpus = await buildDeltaCorpus(kind, (s) => console.error(s), { initramfs: !values['no-initramfs'] });
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

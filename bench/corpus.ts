/**
 * The benchmark corpus: a real OS-like tree made of real Debian bookworm (amd64) packages,
 * fetched with `apt-get download` into .cache/bench-debs/ and unpacked with `dpkg-deb -x` into
 * one directory under .cache/bench-tree/ (both kept between runs; .cache/ is gitignored).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DEB_CACHE = join(ROOT, '.cache', 'bench-debs');
export const TREE_CACHE = join(ROOT, '.cache', 'bench-tree');

/** A fresh work directory of one benchmark run under .cache/bench-work/, removed by cleanUp() and on SIGINT/SIGTERM. */
export function workDir(prefix: string): { work: string; cleanUp: () => void } {
  const base = join(ROOT, '.cache', 'bench-work');
  mkdirSync(base, { recursive: true });
  const work = mkdtempSync(join(base, `${prefix}-`));
  const cleanUp = () => rmSync(work, { recursive: true, force: true });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanUp();
      process.exit(130);
    });
  }
  return { work, cleanUp };
}

/**
 * A package named through a meta-package, because its name carries an ABI number that moves
 * (linux-headers-6.1.0-56-common): the first package matching `match` among the dependencies
 * of `via`, followed two levels deep with `apt-cache depends`.
 */
export interface ViaDependency {
  via: string;
  match: RegExp;
}
export type PackageSpec = string | ViaDependency;

/**
 * Full corpus, about 470 MB unpacked and 25k entries: big shared libraries and compilers
 * (few large files) next to perl, python, C and kernel headers and tzdata (many small files).
 */
export const FULL_PACKAGES: readonly PackageSpec[] = [
  'libllvm15', // ~115 MB, one huge .so
  'gcc-12', // lto1 and friends
  'cpp-12', // cc1
  'libstdc++-12-dev', // thousands of headers
  'libgcc-12-dev',
  'libicu72', // ~36 MB data library
  'libperl5.36',
  'perl-modules-5.36', // many small .pm files
  'libpython3.11-minimal',
  'libpython3.11-stdlib', // the python stdlib
  'python3.11-minimal',
  'libc6',
  'libc6-dev',
  'coreutils',
  'bash',
  'tzdata', // ~1,800 tiny files and symlinks
  { via: 'linux-headers-amd64', match: /^linux-headers-[0-9][^ ]*-common$/ }, // ~18k small files
];

/** Smoke corpus for CI: two small packages, a few MB. */
export const SMOKE_PACKAGES: readonly PackageSpec[] = ['bash', 'tzdata'];

export interface TreeStats {
  bytes: number;
  files: number;
  symlinks: number;
  dirs: number;
}

export interface Corpus {
  dir: string;
  packages: string[];
  debs: string[];
  stats: TreeStats;
}

function fail(message: string): never {
  throw new Error(`bench corpus: ${message}`);
}

const isRoot = () => process.getuid?.() === 0;

function debFor(pkg: string): string | undefined {
  return readdirSync(DEB_CACHE).find((f) => f.endsWith('.deb') && f.split('_')[0] === pkg);
}

/** Resolves a spec to a package name. @throws when apt-cache knows no matching dependency */
export function resolvePackage(spec: PackageSpec): string {
  if (typeof spec === 'string') return spec;
  let level = [spec.via];
  for (let depth = 0; depth < 2; depth++) {
    const next: string[] = [];
    for (const pkg of level) {
      const r = spawnSync('apt-cache', ['depends', pkg], { encoding: 'utf8' });
      if (r.error) fail(`'apt-cache' is not available (${r.error.message}); this benchmark needs a Debian/Ubuntu host`);
      if (r.status !== 0) fail(`'apt-cache depends ${pkg}' failed (exit ${r.status}):\n${r.stderr.trim()}`);
      for (const m of r.stdout.matchAll(/^\s+Depends: (\S+)$/gm)) {
        if (spec.match.test(m[1])) return m[1];
        next.push(m[1]);
      }
    }
    level = next;
  }
  fail(`no dependency of '${spec.via}' matches ${spec.match}; run 'apt-get update'?`);
}

/** Fetches every package's .deb into the cache (once); fails loudly naming what could not be had. */
export function downloadDebs(packages: readonly string[]): string[] {
  mkdirSync(DEB_CACHE, { recursive: true });
  const need = packages.filter((p) => debFor(p) === undefined);
  if (need.length > 0) {
    const download = () => spawnSync('apt-get', ['download', ...need], { cwd: DEB_CACHE, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    let r = download();
    if (r.error) fail(`'apt-get' is not available (${r.error.message}); this benchmark needs a Debian/Ubuntu host`);
    if (r.status !== 0 && isRoot()) {
      // A stale package list names versions the mirror no longer has.
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
      r = download();
    }
    if (r.status !== 0) fail(`'apt-get download ${need.join(' ')}' failed (exit ${r.status}):\n${r.stderr.trim()}`);
  }
  return packages.map((p) => debFor(p) ?? fail(`package '${p}' was downloaded but no ${p}_*.deb is in ${DEB_CACHE}`)).map((f) => join(DEB_CACHE, f));
}

/** Counts bytes (apparent size, as `du -sb`), regular files, symlinks and directories below dir. */
export async function treeStats(dir: string): Promise<TreeStats> {
  const stats: TreeStats = { bytes: 0, files: 0, symlinks: 0, dirs: 0 };
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    stats.bytes += st.size;
    if (st.isDirectory()) {
      stats.dirs++;
      for (const name of await readdir(path)) await visit(join(path, name));
    } else if (st.isSymbolicLink()) stats.symlinks++;
    else stats.files++;
  };
  await visit(dir);
  return stats;
}

/**
 * Returns a directory holding every package unpacked into one tree. The tree is named after the
 * exact .deb files, so a new package version makes a new tree; it is built in a temp dir and
 * renamed into place, so an interrupted build is never used.
 */
export async function buildCorpus(specs: readonly PackageSpec[]): Promise<Corpus> {
  const packages = specs.map(resolvePackage);
  const debs = downloadDebs(packages);
  const names = debs.map((d) => d.slice(DEB_CACHE.length + 1)).sort();
  const key = createHash('sha256').update(names.join('\n')).digest('hex').slice(0, 12);
  const dir = join(TREE_CACHE, `tree-${key}`);
  if (!existsSync(dir)) {
    mkdirSync(TREE_CACHE, { recursive: true });
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    for (const deb of debs) {
      const r = spawnSync('dpkg-deb', ['-x', deb, tmp], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
      if (r.error) fail(`'dpkg-deb' is not available (${r.error.message}); install the 'dpkg' package`);
      if (r.status !== 0) fail(`'dpkg-deb -x ${deb}' failed (exit ${r.status}):\n${r.stderr.trim()}`);
    }
    writeFileSync(join(TREE_CACHE, `tree-${key}.packages`), names.join('\n') + '\n');
    renameSync(tmp, dir);
  }
  return { dir, packages, debs, stats: await treeStats(dir) };
}

/**
 * A resolved tree: mmdebstrap installs the essential set, the definition's packages and their
 * dependencies, with apt resolving and dpkg running the maintainer scripts, in a user and mount
 * namespace of its own (`--mode=unshare`; never the host's root). It reads the host's apt
 * sources and index files (no `apt-get update`: the same versions `apt-cache policy` offers the
 * exact compose), reuses and refills a .deb cache, and honours SOURCE_DATE_EPOCH, so the same
 * definition and package versions give the same tree. The choice of mmdebstrap over apt + dpkg
 * run in a namespace by larch, with its numbers: docs/images.md, "Compose backend". A build with
 * the same inputs as an earlier one takes that one's tar from the tree cache (tree-key.ts,
 * tree-cache.ts) instead of running mmdebstrap.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { runTool, stderrTail, toolMissing } from '../_run.ts';
import type { PackageSpec } from './definition.ts';
import { type TreeCacheUse, cachedTree, hashDirectory, hashFile } from './tree-cache.ts';
import { type HashedFile, type TreeKeyInputs, sortedPackageSpecs, treeCacheKey } from './tree-key.ts';

export interface TreeBuildOptions {
  /** The packages asked for (the kernel included); a version pins it. */
  packages: PackageSpec[];
  /** Absolute paths of local .deb files to install too. */
  localPackages: string[];
  architecture: string;
  /** Install Recommends too (definition `recommends`; default off, as mmdebstrap's). */
  recommends: boolean;
  /** .deb files kept between builds (a subdirectory per architecture). */
  cacheDir: string;
  /** Seconds since the epoch: file times and the dates maintainer scripts write (/etc/shadow). */
  sourceDateEpoch: number;
  /** The tree as a tar (mmdebstrap's output, uncompressed); only read by the caller, then removed. */
  out: string;
}

/** Debian architecture → the binfmt_misc entry qemu-user-static registers for it. */
const QEMU_BINFMT: Readonly<Record<string, string>> = { arm64: 'qemu-aarch64', armhf: 'qemu-arm', armel: 'qemu-arm', riscv64: 'qemu-riscv64', ppc64el: 'qemu-ppc64le', s390x: 'qemu-s390x', mips64el: 'qemu-mips64el' };

/** The host's apt sources, each file given to mmdebstrap as a mirror argument (it takes both formats). */
export async function readHostSources(): Promise<string[]> {
  const files: string[] = [];
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  const dir = '/etc/apt/sources.list.d';
  const names = existsSync(dir) ? (await readdir(dir)).filter((n) => n.endsWith('.list') || n.endsWith('.sources')).sort() : [];
  files.push(...names.map((n) => join(dir, n)));
  if (files.length === 0) throw new LarchError('NOT_FOUND', 'this host has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/)', { hint: 'configure the Debian archive in /etc/apt/sources.list.d/ and run apt-get update', data: { path: dir } });
  return files;
}

/**
 * Maintainer scripts of a foreign architecture run through qemu-user-static, which the kernel
 * starts by binfmt_misc (mmdebstrap checks that the target's code runs).
 * @throws TOOL_MISSING naming qemu-user-static and binfmt_misc
 */
function checkForeign(architecture: string, native: boolean): void {
  const entry = QEMU_BINFMT[architecture];
  if (native || entry === undefined) return;
  if (existsSync(`/proc/sys/fs/binfmt_misc/${entry}`)) return;
  throw toolMissing(entry, {
    context: `composing for ${architecture}`,
    purpose: `to run the packages' maintainer scripts (binfmt_misc has no '${entry}' entry)`,
    hint: 'as root, mount binfmt_misc first if /proc/sys/fs/binfmt_misc is empty (mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc) and install binfmt-support; or set exact = true in the definition (no scripts run)',
  });
}

/** The clearest error for a failed mmdebstrap run, from what apt and dpkg said. */
export function treeBuildError(stderr: string, architecture: string): LarchError {
  const lines = stderr.split('\n');
  const unresolved = lines.map((l) => /^E: (?:Unable to locate package|Package '?)([a-z0-9][a-z0-9+.:-]*)/.exec(l) ?? /^E: Version '([^']+)' for '([^']+)' was not found/.exec(l)).find(Boolean);
  if (unresolved) {
    const [what, a, b] = unresolved;
    const pkg = b ?? a;
    return new LarchError('NOT_FOUND', `package '${pkg}' cannot be installed for ${architecture}: ${quash(what.slice(3), 200)}`, {
      hint: "check the name and version (apt-cache policy NAME); run 'apt-get update' if the sources are stale",
      data: { package: pkg, architecture },
    });
  }
  const unmet = lines.findIndex((l) => /unmet dependencies|held broken packages/.test(l));
  if (unmet >= 0) {
    const detail = lines.filter((l) => /Depends:|Conflicts:|Breaks:|but it is not (going to be )?installable|but .* is to be installed/.test(l)).map((l) => l.trim());
    return new LarchError('NOT_FOUND', `the packages' dependencies cannot be resolved for ${architecture}: ${quash(detail.join('; ') || lines[unmet].trim(), 400)}`, {
      hint: 'a package depends on something no apt source offers, or two packages conflict: change or pin the packages the message names',
      data: { architecture, unmet: detail },
    });
  }
  const script = lines.map((l) => /dpkg: error processing (?:package|archive) (\S+) \(--(configure|install|unpack)\):/.exec(l)).find(Boolean);
  const scriptDetail = lines.find((l) => /(pre|post)-(installation|removal) script subprocess returned error exit status/.test(l));
  if (script) {
    const pkg = script[1].replace(/:[a-z0-9-]+$/, '');
    return new LarchError('INVALID_INPUT', `a maintainer script of package '${pkg}' failed while composing (${script[2]}): ${quash(scriptDetail?.trim() ?? stderrTail(stderr), 300)}`, {
      hint: 'the message gives what the script said; pin another version of the package, fix it, or leave it out',
      data: { package: pkg, step: script[2] },
    });
  }
  return new LarchError('IO', `mmdebstrap failed: ${stderrTail(stderr)}`, { hint: 'run the compose again with --verbose to see the build log', data: { tool: 'mmdebstrap' } });
}

/** The merged-usr hooks mmdebstrap runs: the tree is merged-/usr from the start (no usrmerge, no perl). */
const MERGED_USR_HOOKS = '/usr/share/mmdebstrap/hooks/merged-usr';
/** The host's apt index files, which mmdebstrap's apt reads (copied in: no `apt-get update`). */
const APT_LISTS = '/var/lib/apt/lists';
/** The keyrings mmdebstrap's apt checks the indexes with (its defaults: `--keyring` in mmdebstrap(1)). */
const APT_KEYRINGS = ['/etc/apt/trusted.gpg', '/etc/apt/trusted.gpg.d'];

/** Paths that differ from one build to the next; the key sees placeholders instead (tree-key.ts). */
interface BuildPaths {
  out: string;
  /** The .deb cache directory, synced in and out. */
  debs: string;
  /** The staging directory of the local .deb files (undefined: there are none). */
  stage?: string;
}

/** The staged path of each local .deb file: numbered, so two files of one name do not clash. */
function stagedLocal(localPackages: string[], stage: string | undefined): string[] {
  return localPackages.map((file, i) => join(stage!, `${i}-${basename(file)}`));
}

/** mmdebstrap's arguments for the build (without the host's sources files, which come last). */
export function mmdebstrapArgs(opts: Pick<TreeBuildOptions, 'packages' | 'localPackages' | 'architecture' | 'recommends'>, paths: BuildPaths): string[] {
  const local = stagedLocal(opts.localPackages, paths.stage);
  // Sorted: the definition's order of packages decides nothing (and the cache key ignores it).
  const include = [...sortedPackageSpecs(opts.packages), ...local].join(',');
  return [
    '--mode=unshare',
    '--variant=essential',
    `--architectures=${opts.architecture}`,
    `--include=${include}`,
    `--hook-dir=${MERGED_USR_HOOKS}`,
    // No fsync per file: a failed build is thrown away whole, and the tree is committed afterwards.
    '--dpkgopt=force-unsafe-io',
    // The host's index files, so apt offers what apt-cache policy shows (no download, no network for them).
    '--skip=update,essential/unlink',
    `--aptopt=Apt::Install-Recommends "${opts.recommends ? 'true' : 'false'}"`,
    '--setup-hook=mkdir -p "$1/var/lib/apt/lists" "$1/var/cache/apt/archives"',
    `--setup-hook=sync-in ${APT_LISTS} /var/lib/apt/lists`,
    `--setup-hook=sync-in ${paths.debs} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${paths.debs}`,
    ...(paths.stage ? [`--setup-hook=mkdir -p "$1${paths.stage}"`, `--setup-hook=copy-in ${local.join(' ')} ${paths.stage}`] : []),
    '--format=tar',
    '',
    paths.out,
  ];
}

/** The first line a tool prints for --version. @throws TOOL_MISSING, IO */
async function toolVersion(tool: string): Promise<string> {
  const run = await runTool(tool, ['--version']);
  if (run.code !== 0) throw new LarchError('IO', `'${tool} --version' failed: ${stderrTail(run.stderr)}`, { data: { tool } });
  return run.stdout.split('\n')[0].trim();
}

/**
 * Everything that decides mmdebstrap's output, read from the host (tree-key.ts lists it).
 * Hashes the apt index files (~40 MB here: well under a second).
 */
export async function readTreeKeyInputs(opts: Omit<TreeBuildOptions, 'cacheDir' | 'out'>, sources: string[], host: { aptLists?: string } = {}): Promise<TreeKeyInputs> {
  const placeholders: BuildPaths = { out: '@OUT@', debs: '@DEBS@', stage: opts.localPackages.length > 0 ? '@STAGE@' : undefined };
  const keyrings: HashedFile[] = [];
  for (const k of APT_KEYRINGS) {
    const st = await stat(k).catch(() => undefined);
    if (st?.isFile()) keyrings.push({ path: k, sha256: await hashFile(k) });
    else if (st?.isDirectory()) keyrings.push(...(await hashDirectory(k)).map((f) => ({ path: join(k, f.path), sha256: f.sha256 })));
  }
  return {
    packages: opts.packages,
    architecture: opts.architecture,
    recommends: opts.recommends,
    sourceDateEpoch: opts.sourceDateEpoch,
    localPackages: await Promise.all(opts.localPackages.map(async (p) => ({ path: basename(p), sha256: await hashFile(p) }))),
    mmdebstrapArgs: [...mmdebstrapArgs(opts, placeholders), ...sources],
    aptConfigFiles: [...(await Promise.all(sources.map(async (p) => ({ path: p, sha256: await hashFile(p) })))), ...keyrings],
    // The lock file and partial downloads are not indexes apt reads.
    aptLists: await hashDirectory(host.aptLists ?? APT_LISTS, new Set(['lock', 'partial'])),
    mmdebstrapVersion: await toolVersion('mmdebstrap'),
    aptVersion: await toolVersion('apt-get'),
    hookFiles: await hashDirectory(MERGED_USR_HOOKS),
  };
}

/** Runs mmdebstrap: the tree as a tar at `out`. */
async function runMmdebstrap(opts: TreeBuildOptions, sources: string[], out: string, progress?: (line: string) => void): Promise<void> {
  const debs = join(opts.cacheDir, 'resolved', opts.architecture);
  await mkdir(debs, { recursive: true }).catch((err) => {
    throw fromSystemError(err, 'create cache directory', debs);
  });
  // apt reads a local .deb outside the chroot and dpkg inside it, at the same path: a copy under
  // /tmp on both sides (the chroot's /tmp is emptied before the tree is packed).
  const stage = opts.localPackages.length > 0 ? await mkdtemp('/tmp/larch-local-debs-') : undefined;
  try {
    for (const [i, to] of stagedLocal(opts.localPackages, stage).entries()) await copyFile(opts.localPackages[i], to);
    const args = [...mmdebstrapArgs(opts, { out, debs, stage }), ...sources];
    const run = await runTool('mmdebstrap', args, { env: { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), LC_ALL: 'C.UTF-8' } });
    if (progress) for (const line of run.stderr.split('\n')) if (line.startsWith('I: ')) progress(line.slice(3));
    // apt's and dpkg's messages come on either stream.
    if (run.code !== 0) throw treeBuildError(`${run.stdout}\n${run.stderr}`, opts.architecture);
  } finally {
    if (stage) await rm(stage, { recursive: true, force: true });
  }
}

export interface TreeBuildResult {
  /** Whether the tree came from the tree cache (tree-cache.ts). */
  treeCache: TreeCacheUse;
  /** The cache key (treeCacheKey). */
  key: string;
}

/**
 * The tree at `opts.out` (read it, then remove it; it may be a hard link to the cache's entry):
 * from the tree cache when a build with the same inputs is there, else built with mmdebstrap
 * and stored. `treeCache: false` (--no-tree-cache) builds anyway and replaces the entry.
 * @throws NOT_FOUND (a package or dependency apt cannot find), INVALID_INPUT (a maintainer script
 *   failed), TOOL_MISSING (mmdebstrap; qemu for a foreign architecture), LOCKED, IO
 */
export async function buildResolvedTree(opts: TreeBuildOptions & { native: boolean; treeCache?: boolean; progress?: (line: string) => void }): Promise<TreeBuildResult> {
  checkForeign(opts.architecture, opts.native);
  const sources = await readHostSources();
  const key = treeCacheKey(await readTreeKeyInputs(opts, sources));
  const prefix = key.slice(0, 12);
  const refresh = opts.treeCache === false;
  let built = false;
  const treeCache = await cachedTree({
    cacheDir: opts.cacheDir,
    key,
    out: opts.out,
    refresh,
    onWait: () => opts.progress?.(`waiting for another compose building the same tree (${prefix})`),
    build: (to) => {
      built = true;
      opts.progress?.(`building the tree with mmdebstrap (${refresh ? '--no-tree-cache' : 'not in the tree cache'}, ${prefix}): ${opts.packages.length} packages, their dependencies and the essential set`);
      return runMmdebstrap(opts, sources, to, opts.progress);
    },
  });
  if (!built) opts.progress?.(`tree from cache (${prefix})`);
  return { treeCache, key };
}

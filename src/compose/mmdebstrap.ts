/**
 * A resolved tree: mmdebstrap installs the essential set, the definition's packages and their
 * dependencies, with apt resolving and dpkg running the maintainer scripts, in a user and mount
 * namespace of its own (`--mode=unshare`; never the host's root). It reads the host's apt
 * sources and index files (no `apt-get update`: the same versions `apt-cache policy` offers the
 * exact compose), reuses and refills a .deb cache, and honours SOURCE_DATE_EPOCH, so the same
 * definition and package versions give the same tree. The choice of mmdebstrap over apt + dpkg
 * run in a namespace by larch, with its numbers: docs/images.md, "Compose backend".
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { runTool, stderrTail, toolMissing } from '../_run.ts';
import type { PackageSpec } from './definition.ts';

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
  /** The tree as a tar (mmdebstrap's output, uncompressed). */
  out: string;
}

/** Debian architecture → the binfmt_misc entry qemu-user-static registers for it. */
const QEMU_BINFMT: Readonly<Record<string, string>> = { arm64: 'qemu-aarch64', armhf: 'qemu-arm', armel: 'qemu-arm', riscv64: 'qemu-riscv64', ppc64el: 'qemu-ppc64le', s390x: 'qemu-s390x', mips64el: 'qemu-mips64el' };

/** The host's apt sources, each file given to mmdebstrap as a mirror argument (it takes both formats). */
async function hostSources(): Promise<string[]> {
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

/**
 * Builds the tree with mmdebstrap into `opts.out`.
 * @throws NOT_FOUND (a package or dependency apt cannot find), INVALID_INPUT (a maintainer script
 *   failed), TOOL_MISSING (mmdebstrap; qemu for a foreign architecture), IO
 */
export async function buildResolvedTree(opts: TreeBuildOptions & { native: boolean; progress?: (line: string) => void }): Promise<void> {
  checkForeign(opts.architecture, opts.native);
  const debs = join(opts.cacheDir, 'resolved', opts.architecture);
  await mkdir(debs, { recursive: true }).catch((err) => {
    throw fromSystemError(err, 'create cache directory', debs);
  });
  // apt reads a local .deb outside the chroot and dpkg inside it, at the same path: a copy under
  // /tmp on both sides (the chroot's /tmp is emptied before the tree is packed).
  const stage = opts.localPackages.length > 0 ? await mkdtemp('/tmp/larch-local-debs-') : undefined;
  const local: string[] = [];
  for (const [i, file] of opts.localPackages.entries()) {
    const to = join(stage!, `${i}-${basename(file)}`);
    await copyFile(file, to);
    local.push(to);
  }
  const include = [...opts.packages.map((p) => (p.version === undefined ? p.name : `${p.name}=${p.version}`)), ...local].join(',');
  const args = [
    '--mode=unshare',
    '--variant=essential',
    `--architectures=${opts.architecture}`,
    `--include=${include}`,
    '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr',
    // No fsync per file: a failed build is thrown away whole, and the tree is committed afterwards.
    '--dpkgopt=force-unsafe-io',
    // The host's index files, so apt offers what apt-cache policy shows (no download, no network for them).
    '--skip=update,essential/unlink',
    `--aptopt=Apt::Install-Recommends "${opts.recommends ? 'true' : 'false'}"`,
    '--setup-hook=mkdir -p "$1/var/lib/apt/lists" "$1/var/cache/apt/archives"',
    '--setup-hook=sync-in /var/lib/apt/lists /var/lib/apt/lists',
    `--setup-hook=sync-in ${debs} /var/cache/apt/archives/`,
    `--customize-hook=sync-out /var/cache/apt/archives ${debs}`,
    ...(stage ? [`--setup-hook=mkdir -p "$1${stage}"`, `--setup-hook=copy-in ${local.join(' ')} ${stage}`] : []),
    '--format=tar',
    '',
    opts.out,
    ...(await hostSources()),
  ];
  const run = await runTool('mmdebstrap', args, { env: { SOURCE_DATE_EPOCH: String(opts.sourceDateEpoch), LC_ALL: 'C.UTF-8' } }).finally(() => (stage ? rm(stage, { recursive: true, force: true }) : undefined));
  if (opts.progress) for (const line of run.stderr.split('\n')) if (line.startsWith('I: ')) opts.progress(line.slice(3));
  // apt's and dpkg's messages come on either stream.
  if (run.code !== 0) throw treeBuildError(`${run.stdout}\n${run.stderr}`, opts.architecture);
}

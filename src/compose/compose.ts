/**
 * `larch compose`: an image definition becomes a signed commit. Every check that can fail
 * (definition, overlays, packages and versions, downloads, the layout) runs before the
 * commit's transaction starts, and the transaction itself aborts on error, so a failed
 * compose leaves the repo's refs as they were.
 */
import { mkdtemp, readFile, readdir, realpath, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { LarchError, fromSystemError, quash, withContext } from '../errors.ts';
import { ARCHITECTURE_KEY, COMPATIBLE_KEY } from '../store/binding.ts';
import type { CborValue } from '../store/cbor.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { type CommitResult, createCommit } from '../store/write-commit.ts';
import { checkArchitecture, fetchPackages, resolvePackages } from './apt.ts';
import { runCommandsOnTree } from './commands.ts';
import { checkAgent } from './agent.ts';
import { type ImageDefinition, parseDefinition } from './definition.ts';
import { TREE_SOURCE, writeImageTar } from './image-tar.ts';
import { buildResolvedTree } from './mmdebstrap.ts';
import type { TreeCacheUse } from './tree-cache.ts';
import { type InstalledPackage, PACKAGES_KEY, encodePackageList } from '../packages/package-diff.ts';
import { parseDpkgStatus } from '../packages/dpkg-status.ts';

/** Commit metadata keys written by compose (formats.md §12). */
export const METADATA_KEYS = {
  packages: PACKAGES_KEY,
  architecture: ARCHITECTURE_KEY,
  compatible: COMPATIBLE_KEY,
  kernel: 'larch.kernel',
  bootFiles: 'larch.boot-files',
  image: 'larch.image',
  minAgentVersion: 'larch.min_agent_version',
} as const;

export interface ComposeOptions {
  definitionPath: string;
  /** Where .deb files are kept between composes. */
  cacheDir: string;
  /** Overrides the definition's timestamp. */
  timestamp?: number;
  /**
   * Used when neither the option nor the definition gives a timestamp: the CLI passes
   * SOURCE_DATE_EPOCH. Absent or 0: the newest package's date (newestPackageTime), never 0.
   */
  defaultTimestamp?: number;
  /** Commit even when the tree and metadata equal the ref's head (default: no new commit then). */
  force?: boolean;
  /** The parent; defaults to the ref's current commit. null starts a new history. */
  parent?: ObjectId | null;
  signKeys?: SecretKey[];
  /** The agent to carry at /usr/bin/larch instead of the definition's `agent`. */
  agent?: string;
  /** List the packages exactly, as the definition's `exact = true` (no dependency, no script). */
  exact?: boolean;
  /**
   * false: build the resolved tree with mmdebstrap even when the tree cache has it, and replace
   * the entry (--no-tree-cache). Default true.
   */
  treeCache?: boolean;
  /** Parent directory for the temporary image tar (default: the OS temp dir). */
  workDir?: string;
  progress?: (message: string) => void;
}

export interface KernelInfo {
  package: string;
  version: string;
  /** The kernel release, from /boot/vmlinuz-RELEASE (what `uname -r` prints). */
  release: string;
}

export interface ComposeResult extends CommitResult {
  ref: string;
  architecture: string;
  packages: InstalledPackage[];
  kernel: KernelInfo | null;
  boot_files: string[];
  /** The .deb files used, in the cache, in the order of packages. */
  deb_files: string[];
  downloaded: number;
  cached: number;
  /** The binary carried at /usr/bin/larch (null: none). */
  agent: string | null;
  /** true: the listed packages only, unpacked; false: their closure, installed by dpkg (mmdebstrap). */
  exact: boolean;
  /** The resolved tree: from the tree cache (hit), built and stored (miss), built with the cache not read (off); null for an exact compose (no tree). */
  tree_cache: TreeCacheUse | null;
}

async function readDefinition(path: string): Promise<ImageDefinition> {
  const text = await readFile(path, 'utf8').catch((err) => {
    throw fromSystemError(err, 'read image definition', path);
  });
  return parseDefinition(text, path);
}

/** Resolves each overlay source and refuses one that is missing or leads out of the definition's directory. */
async function checkOverlays(def: ImageDefinition, definitionPath: string): Promise<{ source: string; target: string; field: string }[]> {
  const base = await realpath(dirname(resolve(definitionPath)));
  return Promise.all(
    def.overlays.map(async (o, i) => {
      const field = `overlay[${i}].source`;
      const given = join(base, o.source);
      const real = await realpath(given).catch((err) => {
        throw new LarchError('NOT_FOUND', `image definition '${definitionPath}': field '${field}' names '${quash(o.source)}', which does not exist (${given})`, { data: { file: definitionPath, field, path: given }, cause: err });
      });
      const rel = relative(base, real);
      if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || resolve(base, rel) !== real) {
        throw new LarchError('INVALID_INPUT', `image definition '${definitionPath}': field '${field}' '${quash(o.source)}' resolves to '${quash(real, 200)}', outside the definition's directory (through a symlink)`, {
          hint: 'keep overlay files inside the directory of the definition; copy them there instead of linking',
          data: { file: definitionPath, field, path: real },
        });
      }
      return { source: real, target: o.target, field: `overlay[${i}]` };
    }),
  );
}

/** The definition's local .deb files, as absolute paths; each must be a file. */
async function checkLocalPackages(def: ImageDefinition, definitionPath: string): Promise<string[]> {
  const base = dirname(resolve(definitionPath));
  return Promise.all(
    def.localPackages.map(async (p, i) => {
      const path = join(base, p);
      const st = await stat(path).catch(() => undefined);
      if (!st?.isFile()) throw new LarchError('NOT_FOUND', `image definition '${definitionPath}': field 'local_packages[${i}]' names '${quash(p)}', which is not a file (${path})`, { hint: 'give the .deb file relative to the definition\'s directory', data: { file: definitionPath, field: `local_packages[${i}]`, path } });
      return path;
    }),
  );
}

function kernelInfo(def: ImageDefinition, packages: InstalledPackage[], releases: Map<string, string[]>): KernelInfo | null {
  if (!def.kernel) return null;
  const name = def.kernel.name;
  const found = releases.get(name) ?? releases.get(TREE_SOURCE) ?? [];
  if (found.length !== 1) {
    throw new LarchError('INVALID_INPUT', `kernel package '${name}' ships ${found.length === 0 ? 'no /boot/vmlinuz-*' : `${found.length} kernels (${found.join(', ')})`}; name the package that holds exactly one kernel image`, {
      hint: 'a meta-package such as linux-image-arm64 only depends on the real one: name the versioned package, e.g. linux-image-6.1.0-18-arm64',
      data: { field: 'kernel', package: name },
    });
  }
  const pkg = packages.find((p) => p.name === name)!;
  return { package: name, version: pkg.version, release: found[0] };
}

/**
 * The commit time when neither --timestamp nor the definition gives one: SOURCE_DATE_EPOCH
 * (given), else the newest package's date, so the same packages give the same commit on any
 * machine and a commit is never dated 1970 (which would disable the devices' downgrade check).
 * @throws INVALID_INPUT when neither is known
 */
function defaultTimestamp(definitionPath: string, sourceDateEpoch: number | undefined, newestPackageTime: number): number {
  const t = sourceDateEpoch || newestPackageTime;
  if (t > 0) return t;
  throw new LarchError('INVALID_INPUT', `image definition '${definitionPath}': no commit time: no 'timestamp', no SOURCE_DATE_EPOCH, and the packages carry no dates`, {
    hint: "set 'timestamp' in the definition, pass --timestamp, or set SOURCE_DATE_EPOCH",
    data: { file: definitionPath, field: 'timestamp' },
  });
}

/** The .deb files in a cache directory (none when it does not exist yet). */
async function listDebs(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.deb'));
}

/**
 * Composes the definition into a commit on its ref.
 * @throws INVALID_INPUT (definition, overlay, layout, a failing command), NOT_FOUND (package,
 *   version, overlay source), IO (apt), TOOL_MISSING, OBJECT_CORRUPT (a download), LOCKED, NO_SPACE
 */
export async function compose(repo: Repo, opts: ComposeOptions): Promise<ComposeResult> {
  const progress = opts.progress ?? (() => {});
  const def = await readDefinition(opts.definitionPath);
  const overlays = await checkOverlays(def, opts.definitionPath);
  // The agent last: it replaces whatever a package or overlay put at /usr/bin/larch.
  const agent = await checkAgent({ definitionPath: opts.definitionPath, definitionAgent: def.agent, agent: opts.agent, architecture: def.architecture });
  if (agent) overlays.push(agent);
  const exact = opts.exact === true || def.exact;
  const target = await checkArchitecture(def.architecture);
  progress(`resolving ${def.packages.length} packages for ${def.architecture}`);
  // Both ways check the listed names and pins here first, for apt-cache's clear errors.
  const resolved = await withContext(`image definition '${opts.definitionPath}'`, () => resolvePackages(def.packages, def.architecture, target.native));
  // A resolved tree's maintainer scripts write dates (/etc/shadow), so its time is known before it is built.
  const resolvedTime = exact ? undefined : (opts.timestamp ?? def.timestamp ?? opts.defaultTimestamp);
  if (!exact && !resolvedTime) {
    throw new LarchError('INVALID_INPUT', `image definition '${opts.definitionPath}': no commit time, which the maintainer scripts of a resolved compose need (SOURCE_DATE_EPOCH)`, {
      hint: "set 'timestamp' in the definition, pass --timestamp, or set SOURCE_DATE_EPOCH",
      data: { file: opts.definitionPath, field: 'timestamp' },
    });
  }
  const fetched = exact ? await fetchPackages(resolved, opts.cacheDir, { architecture: def.architecture, native: target.native }) : [];
  let downloaded = fetched.filter((p) => !p.cached).length;
  if (exact) progress(`${fetched.length} packages ready (${downloaded} downloaded) in ${opts.cacheDir}`);

  const work = await mkdtemp(join(opts.workDir ?? tmpdir(), 'larch-compose-'));
  try {
    // Only read, then removed: it may be a hard link to the tree cache's entry (tree-cache.ts).
    let tree: string | undefined;
    let treeCache: TreeCacheUse | null = null;
    if (!exact) {
      tree = join(work, 'resolved.tar');
      const debs = await listDebs(join(opts.cacheDir, 'resolved', def.architecture));
      const localPackages = await checkLocalPackages(def, opts.definitionPath);
      ({ treeCache } = await buildResolvedTree({ packages: def.packages, localPackages, architecture: def.architecture, native: target.native, recommends: def.recommends, cacheDir: opts.cacheDir, sourceDateEpoch: resolvedTime!, out: tree, treeCache: opts.treeCache !== false, progress }));
      downloaded = (await listDebs(join(opts.cacheDir, 'resolved', def.architecture))).filter((f) => !debs.includes(f)).length;
    }
    let tarPath = join(work, 'image.tar');
    const image = await writeImageTar({ packages: fetched, tree, overlays, bootFiles: def.bootFiles, out: tarPath });
    if (tree !== undefined) await rm(tree, { force: true });
    const packages = image.dpkgStatus === undefined ? fetched.map(({ name, version, architecture }) => ({ name, version, architecture })) : parseDpkgStatus(image.dpkgStatus);
    const kernel = kernelInfo(def, packages, image.kernelReleases);
    if (def.commands.length > 0) {
      progress(`running ${def.commands.length} command(s) on the tree`);
      const after = join(work, 'image-after-commands.tar');
      await runCommandsOnTree(tarPath, def.commands, work, after);
      tarPath = after;
    }
    const metadata: Record<string, CborValue> = {
      [METADATA_KEYS.packages]: encodePackageList(packages),
      [METADATA_KEYS.architecture]: def.architecture,
      [METADATA_KEYS.bootFiles]: image.bootFiles.map((p) => `/${p}`),
      [METADATA_KEYS.image]: basename(opts.definitionPath).replace(/\.toml$/, ''),
    };
    if (def.compatible !== undefined) metadata[METADATA_KEYS.compatible] = def.compatible;
    if (kernel) metadata[METADATA_KEYS.kernel] = { package: kernel.package, version: kernel.version, release: kernel.release };
    if (def.minAgentVersion !== undefined) metadata[METADATA_KEYS.minAgentVersion] = def.minAgentVersion;
    progress(`committing ${image.entries} entries to ${def.ref}`);
    const result = await createCommit(repo, {
      source: { tar: tarPath },
      branch: def.ref,
      version: def.version,
      subject: def.subject,
      metadata,
      timestamp: opts.timestamp ?? def.timestamp ?? defaultTimestamp(opts.definitionPath, opts.defaultTimestamp, image.newestPackageTime),
      parent: opts.parent,
      signKeys: opts.signKeys,
      xattrs: true,
      unlessUnchanged: !opts.force,
    });
    const debFiles = exact ? fetched.map((p) => p.path) : [];
    return { ...result, ref: def.ref, architecture: def.architecture, packages, kernel, boot_files: image.bootFiles.map((p) => `/${p}`), deb_files: debFiles, downloaded, cached: exact ? fetched.length - downloaded : packages.length - downloaded, agent: agent?.source ?? null, exact, tree_cache: treeCache };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

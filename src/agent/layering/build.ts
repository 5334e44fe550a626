/**
 * Builds a layered tree: base commit + layering request -> a derived local commit (docs/layering.md).
 * The base is checked out into an isolated root (isolated-root.ts); the tree's own apt-get
 * resolves the request (one transaction: installs, local .deb files, replacements, removals,
 * `apt-get -s` first, so a request that would remove a base package is refused before anything
 * runs) and dpkg runs the maintainer scripts; the tree, /var emptied, is committed with the
 * derived-commit metadata (docs/formats.md §12). larch resolves nothing and runs no script itself.
 *
 * The .deb files and apt lists a build used are kept in S/larch/layering/cache, so the request
 * can be built again on a new base with no network (upgrade on an offline device).
 */
import { copyFile, link, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import type { CborValue } from '../../store/cbor.ts';
import { importDirectory } from '../../store/import-dir.ts';
import { writeMTree } from '../../store/mtree.ts';
import { type ObjectId, encodeCommit } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { Transaction } from '../../store/transaction.ts';
import { type InstalledPackage, PACKAGES_KEY, encodePackageList } from '../../packages/package-diff.ts';
import { encodeLayerInfo } from '../../packages/layer-info.ts';
import type { Sysroot } from '../sysroot.ts';
import { type PlannedChange, classifyFailure, parseSimulation } from './apt-result.ts';
import { IsolatedRoot, SCRATCH } from './isolated-root.ts';
import { DPKG_STATUS_PATH, parseDpkgStatus } from '../../packages/dpkg-status.ts';
import { EMPTY_REQUEST, type LayerRequest, type LocalDeb, dropPackages, isEmptyRequest } from './request.ts';

export interface LayerPaths {
  build: string;
  cacheLists: string;
  cacheDebs: string;
  cacheLocal: string;
}

/** Where layering keeps its work and its cache, under S/larch/layering (same filesystem as the repo). */
export function layerPaths(sysroot: Sysroot): LayerPaths {
  const dir = join(sysroot.larchDir, 'layering');
  return { build: join(dir, 'build'), cacheLists: join(dir, 'cache', 'lists'), cacheDebs: join(dir, 'cache', 'debs'), cacheLocal: join(dir, 'cache', 'local') };
}

/** A cached local .deb file (request.ts LocalDeb), by its content hash. */
export function localDebPath(sysroot: Sysroot, deb: LocalDeb): string {
  return join(layerPaths(sysroot).cacheLocal, `${deb.sha256}.deb`);
}

export interface BuildInput {
  sysroot: Sysroot;
  repo: Repo;
  base: ObjectId;
  request: LayerRequest;
  /** The /etc whose apt sources and keys apt uses: the booted deployment's (merged) /etc. */
  etcDir: string;
  dryRun?: boolean;
  /** upgrade --drop-failing-layers: leave out the parts of the request that do not apply (result.dropped). */
  dropFailing?: boolean;
}

export interface LayerSummary {
  layered: { name: string; version: string }[];
  replaced: { name: string; version: string; base_version: string }[];
  removed: { name: string; version: string }[];
}

export interface BuildResult extends LayerSummary {
  /** The derived commit (null on a dry run). */
  commit: ObjectId | null;
  /** What apt does to the base: every package added, removed or replaced, dependencies included. */
  changes: PlannedChange[];
  /** False when `apt-get update` could not reach the sources and the cached lists were used. */
  online: boolean;
  /** The request built (without what dropFailing dropped). */
  request: LayerRequest;
  /** Names dropped by dropFailing. With everything dropped, commit is the base itself. */
  dropped: string[];
}

const APT_OPTIONS = [
  `-o`, `Dir::Etc::SourceList=${SCRATCH}/sources.list`,
  `-o`, `Dir::Etc::SourceParts=${SCRATCH}/sources.list.d`,
  `-o`, `Dir::Etc::TrustedParts=${SCRATCH}/trusted.gpg.d`,
  `-o`, `Dir::Etc::Trusted=${SCRATCH}/trusted.gpg`,
  // The sandbox user (_apt) may not exist in a minimal tree; the namespace is the sandbox.
  `-o`, `APT::Sandbox::User=root`,
  `-o`, `APT::Install-Recommends=false`,
  `-o`, `Dpkg::Use-Pty=0`,
  `-o`, `Acquire::Retries=0`,
  `-o`, `Acquire::http::Timeout=20`,
];

/**
 * @throws LAYER_FAILED (data.reason: not-found, unresolvable, removes-base, script-failed,
 *   network, apt-failed), NO_SPACE, INVALID_INPUT (a base that is not layering-capable), TOOL_MISSING
 */
export async function buildLayered(input: BuildInput): Promise<BuildResult> {
  if (isEmptyRequest(input.request)) throw new TypeError('buildLayered: an empty request has no derived tree (stage the base)');
  const { sysroot, repo, base, request } = input;
  const paths = layerPaths(sysroot);
  const baseCommit = await repo.readCommit(base);
  await rm(paths.build, { recursive: true, force: true });
  await rm(`${paths.build}.var`, { recursive: true, force: true });
  await mkdir(join(paths.build, '..'), { recursive: true });
  let root: IsolatedRoot | null = null;
  try {
    root = await IsolatedRoot.prepare(repo, base, paths.build);
    const basePackages = parseDpkgStatus(await readFile(root.path(DPKG_STATUS_PATH), 'utf8'));
    await seedApt(root, input.etcDir, paths, request);
    const online = await aptUpdate(root, request);
    let req = request;
    let dropped: string[] = [];
    let sim = await simulate(root, req, online);
    if (sim instanceof LarchError && sim.code === 'LAYER_FAILED' && input.dropFailing) {
      dropped = await failingItems(root, req, online);
      req = dropPackages(req, dropped);
      if (isEmptyRequest(req)) return { commit: base, changes: [], online, request: req, dropped, layered: [], replaced: [], removed: [] };
      sim = await simulate(root, req, online);
    }
    if (sim instanceof LarchError) throw sim;
    const changes = sim;
    if (input.dryRun) return { commit: null, changes, online, request: req, dropped, ...summarize(req, basePackages, basePackages, changes) };

    const run = await root.run(['apt-get', ...APT_OPTIONS, '-y', 'install', '--allow-downgrades', ...installArgs(req)]);
    if (run.code !== 0) throw aptFailure(run.stdout + '\n' + run.stderr, req, online);
    await keepCache(root, paths);
    const installed = parseDpkgStatus(await readFile(root.path(DPKG_STATUS_PATH), 'utf8'));
    const summary = summarize(req, basePackages, installed, []);
    await root.finish();
    const commit = await commitDerived(repo, root.dir, base, baseCommit, summary, installed);
    return { commit, changes, online, request: req, dropped, ...summary };
  } finally {
    if (root) await root.remove();
    else await rm(paths.build, { recursive: true, force: true });
  }
}

/** apt's simulated transaction for the request (`apt-get -s`), or why it cannot be done. */
async function simulate(root: IsolatedRoot, req: LayerRequest, online: boolean): Promise<PlannedChange[] | LarchError> {
  const sim = await root.run(['apt-get', ...APT_OPTIONS, '-s', 'install', '--allow-downgrades', ...installArgs(req)]);
  if (sim.code !== 0) return aptFailure(sim.stdout + '\n' + sim.stderr, req, online);
  const changes = parseSimulation(sim.stdout);
  try {
    checkRemovals(changes, req);
  } catch (err) {
    return err as LarchError;
  }
  return changes;
}

/** The names of the request's parts that cannot be applied on this base, each simulated on its own. */
async function failingItems(root: IsolatedRoot, req: LayerRequest, online: boolean): Promise<string[]> {
  const items: [string, LayerRequest][] = [
    ...req.packages.map((n): [string, LayerRequest] => [n, { ...EMPTY_REQUEST, packages: [n] }]),
    ...req.local.map((d): [string, LayerRequest] => [d.name, { ...EMPTY_REQUEST, local: [d] }]),
    ...req.replace.map((d): [string, LayerRequest] => [d.name, { ...EMPTY_REQUEST, replace: [d] }]),
    ...req.remove.map((n): [string, LayerRequest] => [n, { ...EMPTY_REQUEST, remove: [n] }]),
  ];
  const failing: string[] = [];
  for (const [name, one] of items) if ((await simulate(root, one, online)) instanceof LarchError) failing.push(name);
  return failing;
}

/** apt-get install's arguments: names, local .deb paths (inside the root), removals as `name-`. */
function installArgs(r: LayerRequest): string[] {
  return [...r.packages, ...[...r.local, ...r.replace].map((d) => `${SCRATCH}/debs/${d.sha256}.deb`), ...r.remove.map((n) => `${n}-`)];
}

/** The booted deployment's apt sources and keys, the cached lists and .deb files, the request's local files. */
async function seedApt(root: IsolatedRoot, etcDir: string, paths: LayerPaths, request: LayerRequest): Promise<void> {
  const scratch = root.path(SCRATCH);
  await copyIfThere(join(etcDir, 'apt/sources.list'), join(scratch, 'sources.list'));
  for (const sub of ['sources.list.d', 'trusted.gpg.d']) {
    await mkdir(join(scratch, sub), { recursive: true });
    for (const f of await readdir(join(etcDir, 'apt', sub)).catch(() => [])) await copyIfThere(join(etcDir, 'apt', sub, f), join(scratch, sub, f));
  }
  await linkAll(paths.cacheLists, root.path('var/lib/apt/lists'));
  await linkAll(paths.cacheDebs, root.path('var/cache/apt/archives'));
  for (const d of [...request.local, ...request.replace]) {
    const from = join(paths.cacheLocal, `${d.sha256}.deb`);
    await link(from, join(scratch, 'debs', `${d.sha256}.deb`)).catch(async (err) => {
      if (err.code === 'ENOENT') throw new LarchError('NOT_FOUND', `the cached .deb of ${d.name} ${d.version} (${from}) is missing`, { hint: `give the file again: larch install FILE.deb (or override replace FILE.deb)`, data: { package: d.name, path: from } });
      await copyFile(from, join(scratch, 'debs', `${d.sha256}.deb`));
    });
  }
}

/** apt-get update when names are to be resolved; offline (it fails), the cached lists stand. */
async function aptUpdate(root: IsolatedRoot, request: LayerRequest): Promise<boolean> {
  if (request.packages.length === 0) return true;
  const r = await root.run(['apt-get', ...APT_OPTIONS, 'update']);
  if (/No space left on device/.test(r.stderr)) throw new LarchError('NO_SPACE', `layering: apt-get update: no space left on the sysroot's filesystem`, { hint: "free space ('larch cleanup'), then try again; nothing was staged", data: { path: root.dir } });
  // apt-get update exits 0 with only warnings when a source cannot be reached: the old lists stand.
  return r.code === 0 && !/Failed to fetch|Some index files failed|Could not connect|Temporary failure/.test(r.stderr);
}

function aptFailure(output: string, request: LayerRequest, online: boolean): LarchError {
  const { reason, detail } = classifyFailure(output);
  if (reason === 'no-space') return new LarchError('NO_SPACE', `layering: not enough space to build the layered tree: ${detail}`, { hint: "free space ('larch cleanup --rollback' drops the rollback deployment), then try again; nothing was staged", data: { reason } });
  const hints: Record<string, string> = {
    'not-found': online ? "the package is in none of the device's apt sources (/etc/apt/sources.list.d): check its name, or give a .deb file" : 'the apt sources could not be reached and the package is not in the cache: connect the device, or give a .deb file',
    unresolvable: "apt cannot satisfy the dependencies on this base: layer the missing dependencies too (or give their .deb files), or drop the package ('larch uninstall')",
    'script-failed': "a maintainer script failed in the isolated root (docs/layering.md says what scripts can do there); the package's postinst needs a running system or a fix from its maintainer",
    network: "the apt sources could not be reached: connect the device, or install from .deb files ('larch install FILE.deb')",
    'apt-failed': 'apt-get failed in the isolated root: the message says why',
  };
  return new LarchError('LAYER_FAILED', `layering: ${reason}: ${detail}`, { hint: `${hints[reason]}; nothing was staged`, data: { reason, packages: [...request.packages, ...request.local.map((d) => d.name), ...request.replace.map((d) => d.name)] } });
}

/** apt may remove only what `override remove` asked for (and replaced packages' old versions). */
function checkRemovals(changes: PlannedChange[], request: LayerRequest): void {
  const unasked = changes.filter((c) => c.to === null && !request.remove.includes(c.name)).map((c) => c.name);
  if (unasked.length === 0) return;
  throw new LarchError('LAYER_FAILED', `layering: the request would remove base package(s) ${unasked.join(', ')} (a conflict with the base, or packages depending on an override remove)`, {
    hint: `layering never removes a base package unasked: drop the conflicting request ('larch uninstall', 'larch override reset'), or remove them too with 'larch override remove ${unasked.join(' ')}'`,
    data: { reason: 'removes-base', removes: unasked },
  });
}

/** The derived commit's record of the layer: asked-for packages with the versions now installed. */
function summarize(request: LayerRequest, basePackages: InstalledPackage[], installed: InstalledPackage[], planned: PlannedChange[]): LayerSummary {
  const version = (list: InstalledPackage[], name: string) => list.find((p) => p.name === name)?.version;
  const now = (name: string) => version(installed, name) ?? planned.find((c) => c.name === name)?.to ?? '';
  const layered = [...request.packages, ...request.local.map((d) => d.name)].sort().map((name) => ({ name, version: now(name) }));
  const replaced = request.replace.map((d) => ({ name: d.name, version: now(d.name) || d.version, base_version: version(basePackages, d.name) ?? '' }));
  const removed = request.remove.map((name) => ({ name, version: version(basePackages, name) ?? '' }));
  return { layered, replaced, removed };
}

/**
 * Commits the tree as a local commit derived from base: unsigned, parent the base, the base's
 * version, timestamp (what upgrade's downgrade and barrier checks compare the booted deployment
 * with) and every vendor key of the base, plus the layer keys and the tree's own package list.
 */
async function commitDerived(repo: Repo, dir: string, base: ObjectId, baseCommit: Awaited<ReturnType<Repo['readCommit']>>, s: LayerSummary, installed: InstalledPackage[]): Promise<ObjectId> {
  const metadata = new Map<string, CborValue>(baseCommit.metadata);
  // The layer keys through their one writer (packages/layer-info.ts, formats.md §12.2).
  const layer = encodeLayerInfo({ base: { commit: base, version: baseCommit.version }, layered: s.layered, overrides: { replaced: s.replaced, removed: s.removed }, local: true });
  for (const [k, v] of Object.entries(layer)) metadata.set(k, v);
  metadata.set(PACKAGES_KEY, encodePackageList(installed));
  const sorted = new Map([...metadata.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  const txn = await Transaction.begin(repo);
  try {
    const tree = await importDirectory(txn, dir, { xattrs: true });
    const root = await writeMTree(txn, tree);
    const names = s.layered.map((p) => p.name).join(', ');
    const subject = `${baseCommit.version} + layered${names ? `: ${names}` : ''}${s.replaced.length + s.removed.length ? ` (${s.replaced.length + s.removed.length} overrides)` : ''}`;
    const bytes = encodeCommit({ root, parent: base, timestamp: baseCommit.timestamp, version: baseCommit.version, subject, body: '', metadata: sorted });
    const id = await txn.writeMetadata('commit', bytes);
    // No ref: the slot ref (larch/slot-X) names it once it is staged; a build that is not staged
    // leaves no ref behind (an unreferenced commit goes with the next cleanup).
    await txn.commit({});
    return id;
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

/** After a build: the .deb files it used and the lists it read become the cache (the old cache replaced). */
async function keepCache(root: IsolatedRoot, paths: LayerPaths): Promise<void> {
  for (const [from, to] of [[root.path('var/lib/apt/lists'), paths.cacheLists], [root.path('var/cache/apt/archives'), paths.cacheDebs]] as const) {
    const fresh = `${to}.new`;
    await rm(fresh, { recursive: true, force: true });
    await mkdir(fresh, { recursive: true });
    await linkAll(from, fresh);
    await rm(to, { recursive: true, force: true });
    await rename(fresh, to);
  }
}

/** Hardlinks (same filesystem) or copies every regular file of `from` into `to`. */
async function linkAll(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true }).catch(() => [])) {
    if (!e.isFile() || e.name === 'lock') continue;
    await link(join(from, e.name), join(to, e.name)).catch((err) => (err.code === 'EEXIST' ? undefined : copyFile(join(from, e.name), join(to, e.name))));
  }
}

async function copyIfThere(from: string, to: string): Promise<void> {
  await copyFile(from, to).catch((err) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
}

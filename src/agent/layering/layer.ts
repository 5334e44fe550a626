/**
 * The layering verbs (`larch install`, `uninstall`, `override replace|remove|reset`): edit the
 * device's layering request, build base + request into a derived commit (build.ts) and stage it in
 * the other slot through the upgrade's own staging (update.ts stageLocal). The booted slot is
 * never touched; a failure stages nothing.
 *
 * The base is the booted deployment's vendor commit. When a deployment is already staged (not
 * yet booted), its request is the one edited, and the result is rebuilt from the booted base:
 * requests merge, as rpm-ostree's do (docs/layering.md).
 */
import { copyFile, mkdir, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import { sha256 } from '../../_hash.ts';
import { runTool } from '../../_run.ts';
import { other, type Slot } from '../../bootcount/state.ts';
import type { ObjectId } from '../../store/object.ts';
import { readBootState, bootedSlot } from '../boot.ts';
import { readDeployment } from '../deploy.ts';
import { appendJournal } from '../journal.ts';
import { type UpdateContext, stageLocal } from '../update.ts';
import type { PlannedChange } from './apt-result.ts';
import { type LayerSummary, buildLayered, layerPaths } from './build.ts';
import { type Origin, readOrigin } from './origin.ts';
import { type LayerRequest, type LocalDeb, EMPTY_REQUEST, addInstall, addRemove, addReplace, isEmptyRequest, removeInstall, resetOverrides } from './request.ts';
import { isLocalCommit, verifyBase } from './trust.ts';

export type LayerVerb = 'install' | 'uninstall' | 'override replace' | 'override remove' | 'override reset';

export interface LayerChange {
  verb: LayerVerb;
  /** Package names (install from the sources, uninstall, override remove, override reset). */
  names: string[];
  /** .deb files (install, override replace). */
  files: string[];
}

export interface LayerOutcome {
  result: 'staged' | 'dry-run' | 'no-change';
  from: { slot: Slot; commit: ObjectId; version: string };
  /** The staged deployment (null on a dry run or no change). */
  to: { slot: Slot; commit: ObjectId; version: string } | null;
  base: { commit: ObjectId; version: string };
  /** The request after the change (what the origin file records). */
  request: { packages: string[]; local_packages: string[]; override_replace: string[]; override_remove: string[] };
  /** What the new tree has that the base does not, dependencies included (apt's plan). */
  changes: { added: { name: string; version: string }[]; removed: { name: string; version: string }[]; replaced: { name: string; from: string; to: string }[] };
  layered: LayerSummary['layered'];
  overrides: { replaced: LayerSummary['replaced']; removed: LayerSummary['removed'] };
}

/** @throws USAGE-free: LAYER_FAILED, NOT_FOUND, INVALID_INPUT, REFUSED, NO_SPACE, SIGNATURE_* (see build.ts, trust.ts) */
export async function changeLayering(ctx: UpdateContext, change: LayerChange, opts: { dryRun?: boolean } = {}): Promise<LayerOutcome> {
  const { sysroot } = ctx;
  const config = await sysroot.readConfig();
  const { state } = await readBootState(sysroot, config);
  const booted = (await bootedSlot(sysroot)) ?? state.order[0];
  const record = await readDeployment(sysroot, booted);
  if (!record) throw new LarchError('NOT_FOUND', `the booted slot ${booted} holds no deployment`, { hint: 'provision the device first', data: { slot: booted } });
  const repo = await sysroot.openRepo();
  const bootedOrigin = await readOrigin(sysroot, booted);
  if (!bootedOrigin && isLocalCommit((await repo.readCommit(record.commit)).metadata)) {
    throw new LarchError('INVALID_INPUT', `slot ${booted} holds a derived commit but has no origin file (${booted}.origin.json)`, { hint: "'larch upgrade' (or 'larch deploy VERSION') stages the vendor tree again", data: { slot: booted } });
  }
  const base = bootedOrigin?.base ?? { commit: record.commit, version: record.version };
  // A staged, not yet booted deployment's request is the newest the device was asked for.
  const pending = other(booted);
  const staged = state.order[0] === pending && !state.slots[pending].good && (await readDeployment(sysroot, pending)) !== null;
  const current = staged ? ((await readOrigin(sysroot, pending))?.request ?? EMPTY_REQUEST) : (bootedOrigin?.request ?? EMPTY_REQUEST);
  const debs = await Promise.all(change.files.map((f) => cacheDeb(ctx, f)));
  const request = edit(current, change, debs);
  const from = { slot: booted, commit: record.commit, version: record.version };
  const shape = (r: LayerRequest) => ({ packages: r.packages, local_packages: r.local.map((d) => d.name), override_replace: r.replace.map((d) => d.name), override_remove: r.remove.map((n) => n) });
  const alreadyThere = JSON.stringify(request) === JSON.stringify(current) && (staged || !bootedOrigin || JSON.stringify(bootedOrigin.request) === JSON.stringify(request));
  if (alreadyThere && !staged) return { result: 'no-change', from, to: null, base, request: shape(request), changes: { added: [], removed: [], replaced: [] }, layered: [], overrides: { replaced: [], removed: [] } };

  // The vendor's checks, on the base (trust.ts): what the derived commit is accepted for.
  const signedBy = await verifyBase(sysroot, repo, config, base.commit, record.commit);
  const etcDir = join(sysroot.deployDir(booted), 'etc');
  if (opts.dryRun) {
    const built = isEmptyRequest(request) ? null : await buildLayered({ sysroot, repo, base: base.commit, request, etcDir, dryRun: true });
    return { result: 'dry-run', from, to: null, base, request: shape(request), changes: describe(built?.changes ?? []), layered: built?.layered ?? [], overrides: { replaced: built?.replaced ?? [], removed: built?.removed ?? [] } };
  }
  const built = isEmptyRequest(request) ? null : await buildLayered({ sysroot, repo, base: base.commit, request, etcDir }).catch((err) => Promise.reject(noSpaceHint(err, change.verb)));
  const commit = built?.commit ?? base.commit;
  const origin: Origin | null = built ? { base, request } : null;
  // signed_by: the base's verified signers, for a derived commit too (its trust is its base's; status says it was made here).
  const { record: written } = await stageLocal(ctx, commit, signedBy, origin);
  const what = `${change.verb} ${[...change.names, ...debs.map((d) => `${d.name} ${d.version}`)].join(', ') || '(all)'}`;
  await appendJournal(sysroot.journalPath, { event: 'layer', slot: written.slot, commit, version: written.version, message: `${what}: ${built ? `layered commit ${commit.slice(0, 12)} on base ${base.version}` : `the vendor base ${base.version} again`} staged in slot ${written.slot}`, data: { verb: change.verb, base: base.commit } });
  return { result: 'staged', from, to: { slot: written.slot, commit, version: written.version }, base, request: shape(request), changes: describe(built?.changes ?? []), layered: built?.layered ?? [], overrides: { replaced: built?.replaced ?? [], removed: built?.removed ?? [] } };
}

/** A full disk while building: what frees space, and that nothing was staged. */
function noSpaceHint(err: unknown, verb: LayerVerb): unknown {
  if (!(err instanceof LarchError) || err.code !== 'NO_SPACE') return err;
  return new LarchError('NO_SPACE', `${verb}: ${err.message}`, { hint: "building the layered tree needs room for a copy of /etc, the downloaded packages and the new files: free space on the sysroot's filesystem ('larch cleanup --rollback' drops the rollback deployment), then try again; nothing was staged", data: err.data, cause: err });
}

function edit(r: LayerRequest, c: LayerChange, debs: LocalDeb[]): LayerRequest {
  switch (c.verb) {
    case 'install':
      return addInstall(r, c.names, debs);
    case 'uninstall':
      return removeInstall(r, c.names);
    case 'override replace':
      return addReplace(r, debs);
    case 'override remove':
      return addRemove(r, c.names);
    case 'override reset':
      return resetOverrides(r, c.names);
  }
}

function describe(changes: PlannedChange[]): LayerOutcome['changes'] {
  return {
    added: changes.filter((c) => c.from === null && c.to !== null).map((c) => ({ name: c.name, version: c.to! })),
    removed: changes.filter((c) => c.to === null).map((c) => ({ name: c.name, version: c.from ?? '' })),
    replaced: changes.filter((c) => c.from !== null && c.to !== null).map((c) => ({ name: c.name, from: c.from!, to: c.to! })),
  };
}

/**
 * Reads a .deb's name, version and architecture (dpkg-deb) and keeps the file in the cache,
 * S/larch/layering/cache/local/SHA256.deb, so the layer can be rebuilt offline on a new base.
 * @throws NOT_FOUND, INVALID_INPUT (not a .deb)
 */
async function cacheDeb(ctx: UpdateContext, file: string): Promise<LocalDeb> {
  const st = await stat(file).catch(() => null);
  if (!st?.isFile()) throw new LarchError('NOT_FOUND', `no such .deb file: '${file}'`, { hint: 'give the path of a Debian package file', data: { path: file } });
  const r = await runTool('dpkg-deb', ['--show', '--showformat=${Package}\\t${Version}\\t${Architecture}\\n', file], { context: 'layering', purpose: 'to read a .deb file' });
  const [name, version, architecture] = r.stdout.trim().split('\t');
  if (r.code !== 0 || !name || !version) throw new LarchError('INVALID_INPUT', `'${file}' is not a Debian package: ${r.stderr.trim().split('\n').slice(-1)[0] ?? ''}`, { hint: 'give a .deb file (dpkg-deb --info FILE reads it)', data: { path: file } });
  const bytes = await readFile(file);
  const hash = sha256(bytes);
  const dir = layerPaths(ctx.sysroot).cacheLocal;
  await mkdir(dir, { recursive: true });
  const to = join(dir, `${hash}.deb`);
  await copyFile(file, `${to}.tmp`);
  await rename(`${to}.tmp`, to);
  return { name, version, architecture: architecture ?? '', sha256: hash };
}

/**
 * `check` and `upgrade --dry-run` for people and scripts: what an upgrade would do (the target is
 * downloaded into the repo, nothing bootable changes), the /etc merge plan of the booted /etc
 * against the target's, written nowhere, and the package diff of base and layer together: on a
 * layered device, the booted tree's packages against the new base's with the layer re-applied
 * (packages/layer-preview.ts). docs/cli.md (check, upgrade), docs/etc-merge.md.
 */
import type { CborValue } from '../store/cbor.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';
import { decodeLayerInfo } from '../packages/layer-info.ts';
import { type LayerPreview, previewLayeredUpgrade, reappliedLayer } from '../packages/layer-preview.ts';
import { type PackageDiff, decodePackageList } from '../packages/package-diff.ts';
import { previewEtcMerge } from './etc/merger.ts';
import { type CheckResult, type UpdateContext, type UpgradeOptions, type UpgradeResult, check, offeredCommit, upgrade } from './update.ts';

/** A check or dry run's result with `layer`: what is re-applied on the new base (null: the booted deployment is not layered, or no update). */
export type WithLayer<T> = T & { layer: LayerPreview | null };

export interface UpgradePreview {
  /** The dry run's result; with a target, `etc_plan` is the merge plan's JSON. */
  upgrade: WithLayer<UpgradeResult>;
  /** The /etc plan, as JSON and as text for people; null when there is nothing to upgrade to. */
  etc: { json: unknown; text: string } | null;
}

export async function previewUpgrade(ctx: UpdateContext, opts: Omit<UpgradeOptions, 'dryRun' | 'downloadOnly'> = {}): Promise<UpgradePreview> {
  const r = await upgrade(ctx, { ...opts, dryRun: true });
  if (!r.to) return { upgrade: { ...r, layer: null }, etc: null };
  const repo = await ctx.sysroot.openRepo();
  // Both commits are in the repo now: the dry run pulled and verified the target.
  const layered = await layeredPackages(repo, r.from.commit, () => repo.readCommit(r.to!.commit).then((c) => c.metadata));
  const etc = await previewEtcMerge(ctx.sysroot, r.from.slot, r.to.commit);
  return { upgrade: { ...r, ...(layered ?? { layer: null }), etc_plan: etc.json }, etc };
}

/** `check` with its package diff (check's opts.packages), of base and layer together on a layered device. */
export async function previewCheck(ctx: UpdateContext): Promise<WithLayer<CheckResult>> {
  const r = await check(ctx, { packages: true });
  if (!r.update) return { ...r, layer: null };
  const offer = r.update.commit;
  const layered = await layeredPackages(await ctx.sysroot.openRepo(), r.booted.commit, async () => (await offeredCommit(ctx, offer)).metadata);
  return { ...r, ...(layered ?? { layer: null }) };
}

/**
 * The package diff from a layered booted commit to the target with the layer re-applied; null
 * when the booted commit is not derived (the plain diff stands). packages is null when a commit
 * has no package list, as for the plain diff. @throws INVALID_INPUT for unreadable layer metadata
 */
async function layeredPackages(repo: Repo, bootedCommit: ObjectId, target: () => Promise<Map<string, CborValue>>): Promise<{ packages: PackageDiff | null; layer: LayerPreview } | null> {
  if (!(await repo.hasObject('commit', bootedCommit))) return null;
  const booted = (await repo.readCommit(bootedCommit)).metadata;
  const layer = decodeLayerInfo(booted, `the booted commit ${bootedCommit}`);
  if (!layer) return null;
  const bootedList = decodePackageList(booted);
  const newBase = bootedList ? decodePackageList(await target()) : undefined;
  // The booted base's list tells the layer's dependencies apart; a pruned base leaves the layer's own entries.
  const oldBase = (await repo.hasObject('commit', layer.base.commit)) ? (decodePackageList((await repo.readCommit(layer.base.commit)).metadata) ?? null) : null;
  if (!bootedList || !newBase) return { packages: null, layer: reappliedLayer(layer) };
  return previewLayeredUpgrade(bootedList, layer, oldBase, newBase);
}

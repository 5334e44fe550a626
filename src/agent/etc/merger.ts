/**
 * The /etc merge as the deployer uses it: mergeEtc (tree-io.ts: read the three trees, plan
 * with planEtcMerge, write fresh files into the new deployment's etc/), summarised for the
 * deployment record, and the dry-run preview for `upgrade --dry-run`.
 */
import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Slot } from '../../bootcount/state.ts';
import { checkout } from '../../store/checkout.ts';
import type { ObjectId } from '../../store/object.ts';
import { type EtcMergePlan, formatPlan } from './plan.ts';
import { type MergeResult, mergeEtc, mergeResultToJson } from './tree-io.ts';
import { type EtcMerger, type EtcMergeSummary, VENDOR_ETC } from '../deploy.ts';
import type { Sysroot } from '../sysroot.ts';

function summarize(result: MergeResult): EtcMergeSummary {
  const plan: EtcMergePlan = result.plan;
  return {
    merged: plan.actions.filter((a) => a.action === 'merged').length,
    conflicts: plan.actions.filter((a) => a.action === 'conflict').map((a) => a.path),
    larchnew: plan.actions.filter((a) => a.larchnew).map((a) => a.larchnew!.path),
    plan: mergeResultToJson(result),
  };
}

/** The merger writeDeployment and finalize call. A missing vendor /etc reads as empty. */
export function mergerFor(): EtcMerger {
  return async ({ base, local, theirs, out }) => {
    await rm(out, { recursive: true, force: true });
    return summarize(await mergeEtc({ base, local, theirs, out, allowMissingVendor: true }));
  };
}

/** upgrade --dry-run: the merge plan against a commit already in the repo, written nowhere. */
export async function previewEtcMerge(sysroot: Sysroot, bootedSlot: Slot, commit: ObjectId): Promise<{ json: unknown; text: string }> {
  const repo = await sysroot.openRepo();
  const scratch = join(sysroot.larchDir, 'tmp-preview');
  await rm(scratch, { recursive: true, force: true });
  try {
    await checkout(repo, commit, scratch);
    const hasVendorEtc = await lstat(join(scratch, VENDOR_ETC)).then(() => true, () => false);
    const booted = sysroot.deployDir(bootedSlot);
    const result = await mergeEtc({ base: join(booted, VENDOR_ETC), local: join(booted, 'etc'), theirs: join(scratch, hasVendorEtc ? VENDOR_ETC : 'etc'), out: '', dryRun: true, allowMissingVendor: true });
    return { json: mergeResultToJson(result), text: formatPlan(result.plan, { prefix: '/etc/' }) };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The /etc merge as the deployer uses it: read the three /etc directories into trees, plan with
 * planEtcMerge (pure, etc-merge.ts), write the result into the new deployment's etc/, and the
 * dry-run preview. Files are written as new files (never through hardlinks into the repo).
 */
import { lchown, lstat, mkdir, readdir, readFile, readlink, rm, symlink, utimes, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import type { Slot } from '../bootcount/state.ts';
import { checkout } from '../store/checkout.ts';
import type { ObjectId } from '../store/object.ts';
import { type EtcEntry, type EtcMergePlan, type EtcTree, MAX_LINE_MERGE_BYTES, formatPlan, planEtcMerge, planToJson } from './etc-merge.ts';
import { type EtcMerger, type EtcMergeSummary, VENDOR_ETC } from './deploy.ts';
import type { Sysroot } from './sysroot.ts';

const isRoot = () => process.getuid?.() === 0;

/** Reads a directory into an EtcTree (an absent directory is an empty tree). */
export async function readEtcTree(root: string): Promise<Map<string, EtcEntry>> {
  const tree = new Map<string, EtcEntry>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '' ? root : join(root, rel);
    let names: string[];
    try {
      names = (await readdir(abs)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && rel === '') return;
      throw fromSystemError(err, 'read', abs);
    }
    for (const name of names) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, path);
      const st = await lstat(full);
      const owner = { uid: st.uid, gid: st.gid };
      if (st.isDirectory()) {
        tree.set(path, { type: 'dir', mode: st.mode & 0o7777, ...owner });
        await walk(path);
      } else if (st.isSymbolicLink()) {
        tree.set(path, { type: 'symlink', target: await readlink(full), ...owner });
      } else if (st.isFile()) {
        if (st.size > MAX_LINE_MERGE_BYTES) throw new LarchError('INVALID_INPUT', `'${full}' is over ${MAX_LINE_MERGE_BYTES} bytes; /etc holds configuration, not data`, { hint: 'move the file under /var', data: { path: full } });
        tree.set(path, { type: 'file', mode: st.mode & 0o7777, ...owner, content: await readFile(full) });
      }
      // Device nodes, sockets and FIFOs do not belong in /etc; they are left out of the merge.
    }
  };
  await walk('');
  return tree;
}

/** Writes the merged tree described by plan into out (which must not exist). */
export async function writeMergeResult(plan: EtcMergePlan, trees: { local: EtcTree; theirs: EtcTree }, out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  const write = async (path: string, entry: EtcEntry) => {
    const full = join(out, path);
    if (entry.type === 'dir') {
      await mkdir(full, { recursive: true });
      await chmod(full, entry.mode);
    } else if (entry.type === 'symlink') {
      await symlink(entry.target, full);
    } else {
      const content = entry.content ?? (trees.local.get(path) as { content?: Uint8Array } | undefined)?.content ?? (trees.theirs.get(path) as { content?: Uint8Array } | undefined)?.content;
      if (!content) throw new Error(`etc merge: no content for ${path}`);
      await writeFile(full, content, { mode: entry.mode });
      await chmod(full, entry.mode);
    }
    if (isRoot()) await lchown(full, entry.uid, entry.gid);
  };
  // Directories first (the plan is sorted by path, so a parent precedes its children).
  for (const a of plan.actions) if (a.result?.type === 'dir') await write(a.path, a.result);
  for (const a of plan.actions) {
    if (a.result && a.result.type !== 'dir') await write(a.path, a.result);
    if (a.larchnew) await write(a.larchnew.path, a.larchnew.entry);
  }
  // Directory modes again: a directory made read-only above would have refused its children.
  for (const a of plan.actions) if (a.result?.type === 'dir') await chmod(join(out, a.path), a.result.mode);
  await utimes(out, new Date(), new Date()).catch(() => {});
}

function summarize(plan: EtcMergePlan): EtcMergeSummary {
  return {
    merged: plan.actions.filter((a) => a.action === 'merged').length,
    conflicts: plan.actions.filter((a) => a.action === 'conflict').map((a) => a.path),
    larchnew: plan.actions.filter((a) => a.larchnew).map((a) => a.larchnew!.path),
    plan: planToJson(plan),
  };
}

/** The merger writeDeployment and finalize call. */
export function mergerFor(): EtcMerger {
  return async ({ base, local, theirs, out }) => {
    const trees = { base: await readEtcTree(base), local: await readEtcTree(local), theirs: await readEtcTree(theirs) };
    const plan = planEtcMerge(trees.base, trees.local, trees.theirs);
    await rm(out, { recursive: true, force: true });
    await writeMergeResult(plan, trees, out);
    return summarize(plan);
  };
}

/** upgrade --dry-run: the merge plan against a commit already in the repo, written nowhere. */
export async function previewEtcMerge(sysroot: Sysroot, bootedSlot: Slot, commit: ObjectId): Promise<{ json: unknown; text: string }> {
  const repo = await sysroot.openRepo();
  const scratch = join(sysroot.larchDir, 'tmp-preview');
  await rm(scratch, { recursive: true, force: true });
  try {
    await checkout(repo, commit, scratch, { copy: false });
    const theirsDir = (await lstat(join(scratch, VENDOR_ETC)).then(() => true, () => false)) ? join(scratch, VENDOR_ETC) : join(scratch, 'etc');
    const booted = sysroot.deployDir(bootedSlot);
    const plan = planEtcMerge(await readEtcTree(join(booted, VENDOR_ETC)), await readEtcTree(join(booted, 'etc')), await readEtcTree(theirsDir));
    return { json: planToJson(plan), text: formatPlan(plan) };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Reads a commit's whole tree of metadata (dirtrees and dirmetas), validating every name
 * before anyone acts on it: a hostile dirtree ('..', '/', duplicates, a name that is both a
 * symlink and a directory) is refused here, before a single byte is written anywhere.
 */
import { collectGarbageSoon } from '../_gc.ts';
import { LarchError, quash } from '../errors.ts';
import type { DirMeta, ObjectId } from './object.ts';
import { validateDirTree } from './object.ts';
import type { Repo } from './repo.ts';

/** Deeper trees are refused: a shared subtree repeated at every level could otherwise expand without end. */
export const MAX_TREE_DEPTH = 256;
export const MAX_TREE_ENTRIES = 20_000_000;
/** forEachTreeFile asks for a collection after this many files. */
const COLLECT_EVERY_FILES = 1000;

export interface TreeDir {
  /** Path below the root as raw bytes; '' for the root. */
  path: Buffer;
  meta: DirMeta;
  tree: ObjectId;
  metaId: ObjectId;
}
export interface TreeFile {
  path: Buffer;
  id: ObjectId;
  /** The content length a format-2 dirtree signs; undefined in format 1. */
  size?: number;
}
export interface TreePlan {
  dirs: TreeDir[];
  files: TreeFile[];
}

export const pathText = (p: Buffer): string => quash('/' + p.toString('utf8'), 200);
const SLASH = Buffer.from('/');
export const childPath = (parent: Buffer, name: Uint8Array): Buffer => (parent.length === 0 ? Buffer.from(name) : Buffer.concat([parent, SLASH, name]));

/** Lists every directory (parents first) and file of a tree. @throws HOSTILE_TREE, OBJECT_MISSING, OBJECT_CORRUPT */
export async function readTreePlan(repo: Repo, root: { tree: ObjectId; meta: ObjectId }): Promise<TreePlan> {
  const plan: TreePlan = { dirs: [], files: [] };
  const visit = async (path: Buffer, tree: ObjectId, metaId: ObjectId, depth: number): Promise<void> => {
    if (depth > MAX_TREE_DEPTH) throw new LarchError('HOSTILE_TREE', `tree is deeper than ${MAX_TREE_DEPTH} levels at '${pathText(path)}'`, { data: { path: pathText(path) } });
    const [dt, meta] = await Promise.all([repo.readDirTree(tree), repo.readDirMeta(metaId)]);
    const problems = validateDirTree(dt);
    if (problems.length > 0) {
      const p = problems[0];
      const where = pathText(childPath(path, p.name));
      throw new LarchError('HOSTILE_TREE', `dirtree ${tree} at '${pathText(path)}' is unsafe: ${p.problem}: '${where}'`, { data: { tree, path: where, problem: p.problem } });
    }
    plan.dirs.push({ path, meta, tree, metaId });
    for (const f of dt.files) plan.files.push({ path: childPath(path, f.name), id: f.file, size: f.size });
    if (plan.files.length + plan.dirs.length > MAX_TREE_ENTRIES) throw new LarchError('HOSTILE_TREE', `tree has more than ${MAX_TREE_ENTRIES} entries`, { data: { tree, max_entries: MAX_TREE_ENTRIES } });
    for (const d of dt.dirs) await visit(childPath(path, d.name), d.tree, d.meta, depth + 1);
  };
  await visit(Buffer.alloc(0), root.tree, root.meta, 0);
  return plan;
}

/**
 * Calls onFile for every file of a tree, depth first, holding one directory at a time: the
 * streaming form of readTreePlan for checks that need no plan (an applied delta's completeness,
 * whose memory must not grow with the tree). Same safety checks; a subtree seen before (same
 * dirtree and dirmeta) is visited once. Synchronous, as the check it serves (Repo.hasObjectSync):
 * through the thread pool, the corpus pair's 1,278 directories and 10,794 files took 0.60-1.24 s,
 * most of it the metadata reads; this way 0.14-0.19 s under Bun (bench/README.md, "the apply's
 * second thread"). A loop that never yields makes the decoded directories' garbage faster than
 * Bun's collector looks (the corpus pair's 10,794 files: RSS +20 MiB in 0.2 s), so it asks for a
 * collection every COLLECT_EVERY_FILES files, and stays near where it began (bench/README.md,
 * issue 18, "the completeness check").
 * @throws HOSTILE_TREE, OBJECT_MISSING, OBJECT_CORRUPT, and what onFile throws
 */
export function forEachTreeFile(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, onFile: (id: ObjectId, path: () => string) => void): void {
  const seen = new Set<string>();
  let files = 0;
  const visit = (path: Buffer, tree: ObjectId, metaId: ObjectId, depth: number): void => {
    if (depth > MAX_TREE_DEPTH) throw new LarchError('HOSTILE_TREE', `tree is deeper than ${MAX_TREE_DEPTH} levels at '${pathText(path)}'`, { data: { path: pathText(path) } });
    if (seen.has(tree + metaId)) return;
    seen.add(tree + metaId);
    const dt = repo.readDirTreeSync(tree);
    repo.readDirMetaSync(metaId);
    const problems = validateDirTree(dt);
    if (problems.length > 0) {
      const p = problems[0];
      const where = pathText(childPath(path, p.name));
      throw new LarchError('HOSTILE_TREE', `dirtree ${tree} at '${pathText(path)}' is unsafe: ${p.problem}: '${where}'`, { data: { tree, path: where, problem: p.problem } });
    }
    for (const f of dt.files) {
      if (++files % COLLECT_EVERY_FILES === 0) collectGarbageSoon();
      onFile(f.file, () => pathText(childPath(path, f.name)));
    }
    for (const d of dt.dirs) visit(childPath(path, d.name), d.tree, d.meta, depth + 1);
  };
  visit(Buffer.alloc(0), root.tree, root.meta, 0);
}

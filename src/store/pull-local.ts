/**
 * Copies a commit (its tree, its signatures) from one repo to another, in any pair of
 * modes (archive -> bare is how a device's repo is seeded from a server's). Every object is
 * re-hashed on the way in: a corrupt source object is refused, never copied.
 */
import { LarchError } from '../errors.ts';
import { makePool } from '../_pool.ts';
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';
import { Transaction } from './transaction.ts';
import { MAX_TREE_DEPTH, childPath, pathText } from './walk.ts';
import { validateDirTree } from './object.ts';

export interface PullResult {
  commit: ObjectId;
  objectsWritten: number;
  objectsReused: number;
  bytesWritten: number;
}

/** @throws NOT_FOUND, OBJECT_MISSING, OBJECT_CORRUPT, HOSTILE_TREE, LOCKED */
export async function pullLocal(dest: Repo, src: Repo, commitId: ObjectId, ref?: string): Promise<PullResult> {
  const txn = await Transaction.begin(dest);
  try {
    const pool = makePool(8);
    const jobs: Promise<void>[] = [];
    const seen = new Set<string>();
    const copyFile = (id: ObjectId, path: string) =>
      pool(async () => {
        if (await txn.has('file', id)) return;
        const stored = await src.readFile(id);
        const got = await txn.writeFile(stored.header, stored.header.type === 'reg' ? { stream: stored.content() } : undefined, `file ${id} at '${path}'`);
        if (got !== id) throw new LarchError('OBJECT_CORRUPT', `file ${id} at '${path}' in '${src.path}': checksum mismatch: got ${got}`, { data: { id, path, actual: got } });
      });
    const copyTree = async (tree: ObjectId, meta: ObjectId, path: Buffer, depth = 0): Promise<void> => {
      if (depth > MAX_TREE_DEPTH) throw new LarchError('HOSTILE_TREE', `tree is deeper than ${MAX_TREE_DEPTH} levels at '${pathText(path)}'`);
      if (seen.has(tree + meta)) return;
      seen.add(tree + meta);
      await txn.writeMetadata('dirmeta', await src.readMetadataBytes('dirmeta', meta));
      const bytes = await src.readMetadataBytes('dirtree', tree);
      const dt = await src.readDirTree(tree);
      const bad = validateDirTree(dt)[0];
      if (bad) throw new LarchError('HOSTILE_TREE', `dirtree ${tree} at '${pathText(path)}' is unsafe: ${bad.problem}`, { data: { tree } });
      for (const f of dt.files) jobs.push(copyFile(f.file, pathText(childPath(path, f.name))));
      for (const d of dt.dirs) await copyTree(d.tree, d.meta, childPath(path, d.name), depth + 1);
      await txn.writeMetadata('dirtree', bytes);
    };
    const commit = await src.readCommit(commitId);
    await copyTree(commit.root.tree, commit.root.meta, Buffer.alloc(0));
    const settled = await Promise.allSettled(jobs);
    const failed = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    await txn.writeMetadata('commit', await src.readMetadataBytes('commit', commitId));
    const sigs = await src.readSignatures(commitId);
    if (sigs) await txn.writeSignatures(commitId, sigs);
    const stats = { ...txn.stats };
    await txn.commit(ref ? { [ref]: commitId } : {});
    return { commit: commitId, ...stats };
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

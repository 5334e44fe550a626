/**
 * Copies a commit (its tree, its signatures) into a repo from an object source: another local
 * repo of any mode (archive -> bare is how a device's repo is seeded from a server's), or a
 * remote one (`agent/remote/pull.ts` supplies a source over any fetcher). Only the source differs; the walk
 * is this one. Every object is re-hashed on the way in: a corrupt source object is refused,
 * never copied, and a failed pull keeps nothing (one transaction).
 */
import { LarchError } from '../errors.ts';
import { makePool } from '../_pool.ts';
import { type ObjectId, ObjectFormatError, decodeCommit, decodeDirTree, validateDirTree } from './object.ts';
import type { Repo, StoredFile } from './repo.ts';
import { Transaction } from './transaction.ts';
import { MAX_TREE_DEPTH, childPath, pathText } from './walk.ts';

export interface PullResult {
  commit: ObjectId;
  objects_written: number;
  objects_reused: number;
  bytes_written: number;
}

/** Where a pull reads objects from. A `Repo` is one. */
export interface ObjectSource {
  /** Names the source in messages (a repo path or a URL). */
  readonly path: string;
  /** A metadata object's bytes, already checked against its id. @throws OBJECT_MISSING, OBJECT_CORRUPT */
  readMetadataBytes(kind: 'dirtree' | 'dirmeta' | 'commit', id: ObjectId): Promise<Uint8Array>;
  /** The commit's .sig bytes, or null when it has none. */
  readSignatures(commitId: ObjectId): Promise<Uint8Array | null>;
  /**
   * A file object's header and content (the content is re-hashed by the pull). size is the
   * content length a format-2 dirtree signs (undefined in format 1): a remote source stops
   * its download at what that size allows.
   */
  readFile(id: ObjectId, size?: number): Promise<StoredFile>;
  /** Called once the pull is done with a file object (stored or refused), so a source can drop what it cached. */
  released?(id: ObjectId): Promise<void>;
}

export interface PullOptions {
  /** Branch to point at the commit in dest when the pull is complete. */
  ref?: string;
  /** File objects read at once (default 8). */
  concurrency?: number;
  /** Checks the commit and its signatures before any other object is read (a device refuses untrusted commits here). */
  verify?: (commitBytes: Uint8Array, signatures: Uint8Array | null) => Promise<void>;
  /** Called after each object is stored or found present. */
  onObject?: (event: { kind: 'file' | 'dirtree' | 'dirmeta'; id: ObjectId }) => void;
}

/** @throws NOT_FOUND, OBJECT_MISSING, OBJECT_CORRUPT, HOSTILE_TREE, LOCKED */
export async function pullLocal(dest: Repo, src: Repo, commitId: ObjectId, ref?: string): Promise<PullResult> {
  return pullCommit(dest, src, commitId, { ref });
}

/** Copies one commit from src into dest; parents are not copied. See the module comment. */
export async function pullCommit(dest: Repo, src: ObjectSource, commitId: ObjectId, opts: PullOptions = {}): Promise<PullResult> {
  const commitBytes = await src.readMetadataBytes('commit', commitId);
  const sigs = await src.readSignatures(commitId);
  let commit;
  try {
    commit = decodeCommit(commitBytes);
  } catch (err) {
    if (err instanceof ObjectFormatError) throw new LarchError('OBJECT_CORRUPT', `commit ${commitId} in '${src.path}': ${err.message}`, { data: { kind: 'commit', id: commitId } });
    throw err;
  }
  await opts.verify?.(commitBytes, sigs);
  const txn = await Transaction.begin(dest);
  try {
    const filePool = makePool(opts.concurrency ?? 8);
    // Metadata reads have their own pool: a tree waiting for its children never holds a slot.
    const metaPool = makePool(opts.concurrency ?? 8);
    const jobs: Promise<void>[] = [];
    const seen = new Set<string>();
    // Metadata dest already holds is read there: an upgrade shares most directories with the
    // running commit, and over HTTP that saves a round trip per directory.
    const readMeta = (kind: 'dirtree' | 'dirmeta', id: ObjectId) => metaPool(async () => ((await dest.hasObject(kind, id)) ? dest.readMetadataBytes(kind, id) : src.readMetadataBytes(kind, id)));
    // A file id is copied once even when many paths share it (symlinks with one target): two
    // concurrent reads of one id would race on the source's cache (over HTTP, one download file).
    const filesStarted = new Set<ObjectId>();
    const copyFile = (id: ObjectId, size: number | undefined, path: string) =>
      filePool(async () => {
        if (filesStarted.has(id)) return opts.onObject?.({ kind: 'file', id });
        filesStarted.add(id);
        if (txn.has('file', id)) {
          txn.stats.objects_reused++;
          return opts.onObject?.({ kind: 'file', id });
        }
        let stored: StoredFile | undefined;
        try {
          stored = await src.readFile(id, size);
          const length = stored.header.type === 'reg' ? stored.header.size : 0;
          if (size !== undefined && length !== size) {
            throw new LarchError('OBJECT_CORRUPT', `file ${id} at '${path}' in '${src.path}' is ${length} bytes, its signed tree says ${size}`, { data: { id, path, size: length, expected_size: size } });
          }
          // Bad input here is a bad source object (content longer or shorter than its header says).
          const got = await txn.writeFile(stored.header, stored.header.type === 'reg' ? { stream: stored.content() } : undefined, `file ${id} at '${path}'`).catch((err) => {
            throw err instanceof LarchError && err.code === 'INVALID_INPUT' ? new LarchError('OBJECT_CORRUPT', `${err.message} (from '${src.path}')`, { data: { id, path, ...err.data } }) : err;
          });
          if (got !== id) throw new LarchError('OBJECT_CORRUPT', `file ${id} at '${path}' in '${src.path}': checksum mismatch: got ${got}`, { data: { id, path, actual: got } });
        } finally {
          await src.released?.(id);
        }
        opts.onObject?.({ kind: 'file', id });
      });
    const copyTree = async (tree: ObjectId, meta: ObjectId, path: Buffer, depth: number): Promise<void> => {
      if (depth > MAX_TREE_DEPTH) throw new LarchError('HOSTILE_TREE', `tree is deeper than ${MAX_TREE_DEPTH} levels at '${pathText(path)}'`, { data: { tree, path: pathText(path), max_depth: MAX_TREE_DEPTH } });
      if (seen.has(tree + meta)) return;
      seen.add(tree + meta);
      const [metaBytes, treeBytes] = await Promise.all([readMeta('dirmeta', meta), readMeta('dirtree', tree)]);
      await txn.writeMetadata('dirmeta', metaBytes);
      opts.onObject?.({ kind: 'dirmeta', id: meta });
      let dt;
      try {
        dt = decodeDirTree(treeBytes);
      } catch (err) {
        if (err instanceof ObjectFormatError) throw new LarchError('OBJECT_CORRUPT', `dirtree ${tree} at '${pathText(path)}': ${err.message}`, { data: { kind: 'dirtree', id: tree } });
        throw err;
      }
      const bad = validateDirTree(dt)[0];
      if (bad) throw new LarchError('HOSTILE_TREE', `dirtree ${tree} at '${pathText(path)}' is unsafe: ${bad.problem}`, { data: { tree } });
      for (const f of dt.files) {
        const job = copyFile(f.file, f.size, pathText(childPath(path, f.name)));
        // Handled here, reported by settleAll below: a job that fails while the walk goes on
        // would otherwise be an unhandled rejection, which ends a Bun process on the spot.
        job.catch(() => {});
        jobs.push(job);
      }
      await settleAll(dt.dirs.map((d) => copyTree(d.tree, d.meta, childPath(path, d.name), depth + 1)));
      await txn.writeMetadata('dirtree', treeBytes);
      opts.onObject?.({ kind: 'dirtree', id: tree });
    };
    // Every job is waited for, even after a failure, so nothing writes into an aborted transaction.
    const walked = await Promise.allSettled([copyTree(commit.root.tree, commit.root.meta, Buffer.alloc(0), 0)]);
    await settleAll([...jobs, ...walked.map((s) => (s.status === 'rejected' ? Promise.reject(s.reason) : Promise.resolve()))]);
    await txn.writeMetadata('commit', commitBytes);
    if (sigs) await txn.writeSignatures(commitId, sigs);
    const stats = { ...txn.stats };
    await txn.commit(opts.ref ? { [opts.ref]: commitId } : {});
    return { commit: commitId, ...stats };
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

/** Waits for every promise; then throws the first failure, if any. */
async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
  if (failed) throw failed.reason;
}

/** Builds a commit from a directory or a tar: import, write trees, commit object, signatures, ref. */
import { LarchError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import type { CborValue } from './cbor.ts';
import { importDirectory } from './import-dir.ts';
import { importTar } from './import-tar.ts';
import { writeMTree } from './mtree.ts';
import { type ObjectId, encodeCommit } from './object.ts';
import type { Repo } from './repo.ts';
import { type SecretKey, encodeSignatures, keyId, mergeSignatures, signCommit } from './sign.ts';
import { Transaction } from './transaction.ts';

export interface CommitOptions {
  source: { tree: string } | { tar: string };
  branch: string;
  version: string;
  subject?: string;
  body?: string;
  metadata?: Record<string, CborValue>;
  /** Seconds since the epoch; defaults to now. */
  timestamp?: number;
  /** The parent; defaults to the branch's current commit. null starts a new history. */
  parent?: ObjectId | null;
  signKeys?: SecretKey[];
  xattrs?: boolean;
  owner?: { uid: number; gid: number };
  /**
   * When the commit would be the branch's head again (same tree, version, subject, body and
   * metadata; only the timestamp may differ), write nothing and return the head with
   * changed: false, as `rpm-ostree compose tree` does: devices then download nothing.
   */
  unlessUnchanged?: boolean;
}

export interface CommitResult {
  commit: ObjectId;
  branch: string;
  parent: ObjectId | null;
  version: string;
  timestamp: number;
  signedBy: string[];
  objectsWritten: number;
  objectsReused: number;
  bytesWritten: number;
  /** False when unlessUnchanged found the branch's head equal (commit is then the head). */
  changed: boolean;
}

/** @throws LOCKED, NOT_FOUND, INVALID_INPUT, UNSUPPORTED_FILE_TYPE, NO_SPACE */
export async function createCommit(repo: Repo, opts: CommitOptions): Promise<CommitResult> {
  const branchHead = await repo.readRef(opts.branch);
  const parent = opts.parent === undefined ? branchHead : opts.parent;
  if (parent !== null && !(await repo.hasObject('commit', parent))) {
    throw new LarchError('NOT_FOUND', `parent commit ${parent} is not in the repo`, { data: { parent } });
  }
  const txn = await Transaction.begin(repo);
  try {
    const tree =
      'tree' in opts.source
        ? await importDirectory(txn, opts.source.tree, { xattrs: opts.xattrs ?? true, owner: opts.owner })
        : await importTar(txn, opts.source.tar, { xattrs: opts.xattrs ?? true, owner: opts.owner });
    const root = await writeMTree(txn, tree);
    const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
    const metadata = new Map(Object.entries(opts.metadata ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
    const fields = { root, version: opts.version, subject: opts.subject ?? '', body: opts.body ?? '', metadata };
    if (opts.unlessUnchanged && parent !== null && parent === branchHead) {
      const head = await repo.readCommit(parent);
      const same = Buffer.from(encodeCommit({ ...fields, parent: head.parent, timestamp: head.timestamp })).equals(await repo.readMetadataBytes('commit', parent));
      if (same) {
        await txn.abort();
        return { commit: parent, branch: opts.branch, parent: head.parent, version: head.version, timestamp: head.timestamp, signedBy: [], objectsWritten: 0, objectsReused: 0, bytesWritten: 0, changed: false };
      }
    }
    const bytes = encodeCommit({ ...fields, parent, timestamp });
    const commit = await txn.writeMetadata('commit', bytes);
    const signed = [];
    for (const key of opts.signKeys ?? []) signed.push(await signCommit(commit, key));
    const sigs = mergeSignatures([], signed);
    if (sigs.length > 0) await txn.writeSignatures(commit, encodeSignatures(sigs));
    const stats = { ...txn.stats };
    await txn.commit({ [opts.branch]: commit });
    failpoint('commit::after-transaction');
    return { commit, branch: opts.branch, parent, version: opts.version, timestamp, signedBy: sigs.map((s) => keyId(s.key)), ...stats, changed: true };
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

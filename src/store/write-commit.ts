/** Builds a commit from a directory, a tar or an importer: import, write trees, commit object, signatures, ref. */
import { LarchError, quash } from '../errors.ts';
import { BINDING_KEYS, COLLECTION_ID_KEY, bindingValueProblem } from './binding.ts';
import { failpoint } from '../failpoint.ts';
import type { CborValue } from './cbor.ts';
import { importDirectory } from './import-dir.ts';
import { importTar } from './import-tar.ts';
import { type MDir, writeMTree } from './mtree.ts';
import { type ObjectId, decodeCommit, encodeCommit } from './object.ts';
import type { Repo } from './repo.ts';
import { REF_KEY, RELEASE_KEY, commitRelease, nextRelease, recordRelease } from './release.ts';
import { type SecretKey, decodeSignatures, encodeSignatures, keyId, mergeSignatures, signCommit } from './sign.ts';
import { Transaction } from './transaction.ts';

/**
 * Fills the transaction with a tree and says what it learnt on the way: metadata (larch.packages),
 * and the version and time when the source carries them (an OCI image's labels and `created`).
 */
export type Importer = (txn: Transaction) => Promise<{ tree: MDir; metadata?: Record<string, CborValue>; version?: string; timestamp?: number; restore?: RestoreOffer }>;

/**
 * A commit the source carries whole (an image larch exported: its labels hold the commit object
 * and signatures). When the imported tree is that commit's root, the commit is stored as it is,
 * so the id, version, time, parent and signatures survive the round trip.
 */
export interface RestoreOffer {
  id: ObjectId;
  bytes: Uint8Array;
  root: { tree: ObjectId; meta: ObjectId };
  release: number | null;
  signatures: Uint8Array | null;
}

export interface CommitOptions {
  /**
   * What the root tree is made from. An importer (an OCI image, oci/commit-image.ts) fills the
   * transaction itself and may add metadata it learnt from the tree (larch.packages).
   */
  source: { tree: string } | { tar: string } | { importer: Importer };
  branch: string;
  /** Required unless the importer gives one. */
  version?: string;
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
  /**
   * `larch.release`: by default one above the repo's highest (store/release.ts); a given one must
   * be above it unless forceRelease.
   */
  release?: number;
  forceRelease?: boolean;
}

export interface CommitResult {
  commit: ObjectId;
  branch: string;
  parent: ObjectId | null;
  version: string;
  timestamp_s: number;
  signed_by: string[];
  objects_written: number;
  objects_reused: number;
  bytes_written: number;
  /** False when unlessUnchanged found the branch's head equal (commit is then the head). */
  changed: boolean;
  /** The commit's `larch.release` (the head's when nothing changed; null for a head made before releases). */
  release: number | null;
  /** An importer's RestoreOffer was taken: the commit is the one the source carried. */
  restored?: boolean;
}

/** @throws LOCKED, NOT_FOUND, INVALID_INPUT, UNSUPPORTED_FILE_TYPE, NO_SPACE */
export async function createCommit(repo: Repo, opts: CommitOptions): Promise<CommitResult> {
  opts = { ...opts, metadata: bindingMetadata(repo, opts.metadata ?? {}) };
  const branchHead = await repo.readRef(opts.branch);
  const parent = opts.parent === undefined ? branchHead : opts.parent;
  if (parent !== null && !(await repo.hasObject('commit', parent))) {
    throw new LarchError('NOT_FOUND', `parent commit ${parent} is not in the repo`, { data: { parent } });
  }
  const txn = await Transaction.begin(repo);
  try {
    const imported =
      'importer' in opts.source
        ? await opts.source.importer(txn)
        : { tree: 'tree' in opts.source ? await importDirectory(txn, opts.source.tree, { xattrs: opts.xattrs ?? true, owner: opts.owner }) : await importTar(txn, opts.source.tar, { xattrs: opts.xattrs ?? true, owner: opts.owner }) };
    const root = await writeMTree(txn, imported.tree);
    const offer = imported.restore;
    if (offer && offer.root.tree === root.tree && offer.root.meta === root.meta) return await restoreCommit(repo, txn, offer, opts, branchHead);
    const version = imported.version ?? opts.version;
    if (version === undefined) throw new LarchError('USAGE', 'commit: give --version', { data: { option: 'version' } });
    const timestamp = opts.timestamp ?? imported.timestamp ?? Math.floor(Date.now() / 1000);
    const given = imported.metadata ? bindingMetadata(repo, { ...imported.metadata, ...opts.metadata }) : opts.metadata;
    // Under the writer lock (Transaction.begin), so two writers never hand out one release twice.
    const release = await nextRelease(repo, opts.release, opts.forceRelease);
    const sorted = (m: Record<string, CborValue>) => new Map(Object.entries(m).sort(([a], [b]) => (a < b ? -1 : 1)));
    const withRelease = (r: CborValue | undefined) => sorted({ ...given, [REF_KEY]: opts.branch, ...(r === undefined ? {} : { [RELEASE_KEY]: r }) });
    const metadata = withRelease(release);
    const fields = { root, version, subject: opts.subject ?? '', body: opts.body ?? '', metadata };
    if (opts.unlessUnchanged && parent !== null && parent === branchHead) {
      const head = await repo.readCommit(parent);
      // The release always differs; the head is the same release when all else is equal.
      const headFields = { ...fields, metadata: withRelease(head.metadata.get(RELEASE_KEY)) };
      const same = Buffer.from(encodeCommit({ ...headFields, parent: head.parent, timestamp: head.timestamp })).equals(await repo.readMetadataBytes('commit', parent));
      if (same) {
        await txn.abort();
        return { commit: parent, branch: opts.branch, parent: head.parent, version: head.version, timestamp_s: head.timestamp, signed_by: [], objects_written: 0, objects_reused: 0, bytes_written: 0, changed: false, release: commitRelease(head.metadata) };
      }
    }
    const bytes = encodeCommit({ ...fields, parent, timestamp });
    const commit = await txn.writeMetadata('commit', bytes);
    const signed = [];
    for (const key of opts.signKeys ?? []) signed.push(await signCommit(commit, key));
    const sigs = mergeSignatures([], signed);
    if (sigs.length > 0) await txn.writeSignatures(commit, encodeSignatures(sigs));
    const stats = { ...txn.stats };
    await recordRelease(repo, release);
    await txn.commit({ [opts.branch]: commit });
    failpoint('commit::after-transaction');
    return { commit, branch: opts.branch, parent, version, timestamp_s: timestamp, signed_by: sigs.map((s) => keyId(s.key)), ...stats, changed: true, release };
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

/** Stores a commit the source carried (its tree already staged), with its signatures and those of signKeys. */
async function restoreCommit(repo: Repo, txn: Transaction, offer: RestoreOffer, opts: CommitOptions, branchHead: ObjectId | null): Promise<CommitResult> {
  const c = decodeCommit(offer.bytes);
  const base = { branch: opts.branch, parent: c.parent, version: c.version, timestamp_s: c.timestamp, release: offer.release, restored: true };
  if (branchHead === offer.id) {
    await txn.abort();
    return { ...base, commit: offer.id, signed_by: [], objects_written: 0, objects_reused: 0, bytes_written: 0, changed: false };
  }
  const commit = await txn.writeMetadata('commit', offer.bytes);
  const carried = (offer.signatures && decodeSignatures(offer.signatures)) || [];
  const signed = [];
  for (const key of opts.signKeys ?? []) signed.push(await signCommit(commit, key));
  const sigs = mergeSignatures(carried, signed);
  if (sigs.length > 0) await txn.writeSignatures(commit, encodeSignatures(sigs));
  const stats = { ...txn.stats };
  if (offer.release !== null) await recordRelease(repo, offer.release);
  await txn.commit({ [opts.branch]: commit });
  failpoint('commit::after-transaction');
  return { ...base, commit, signed_by: sigs.map((s) => keyId(s.key)), ...stats, changed: true };
}

/**
 * The metadata with the repo's collection id added (larch.collection_id), each binding value
 * checked (store/binding.ts): a commit bound to what no device can match is refused here, not
 * on the devices. @throws INVALID_INPUT
 */
function bindingMetadata(repo: Repo, metadata: Record<string, CborValue>): Record<string, CborValue> {
  const out = { ...metadata };
  if (repo.collectionId !== null) {
    const given = out[COLLECTION_ID_KEY];
    if (given !== undefined && given !== repo.collectionId) {
      throw new LarchError('INVALID_INPUT', `metadata ${COLLECTION_ID_KEY} '${quash(String(given))}' is not the collection id of repo '${repo.path}' ('${repo.collectionId}')`, { hint: `leave ${COLLECTION_ID_KEY} out: commits of this repo carry its id`, data: { key: COLLECTION_ID_KEY, value: String(given), collection_id: repo.collectionId } });
    }
    out[COLLECTION_ID_KEY] = repo.collectionId;
  }
  for (const [field, key] of Object.entries(BINDING_KEYS) as [keyof typeof BINDING_KEYS, string][]) {
    const value = out[key];
    if (value === undefined) continue;
    const problem = typeof value === 'string' ? bindingValueProblem(field, value) : 'is not text';
    if (problem !== null) throw new LarchError('INVALID_INPUT', `metadata ${key} '${quash(String(value))}' ${problem}`, { data: { key, value: String(value) } });
  }
  return out;
}

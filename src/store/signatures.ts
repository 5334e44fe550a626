/** Verifying and adding a stored commit's signatures (the repo-level half of sign.ts). */
import { LarchError } from '../errors.ts';
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';
import { type SecretKey, decodeSignatures, encodeSignatures, keyId, mergeSignatures, signCommit, verifyCommitSignatures } from './sign.ts';
import { Transaction } from './transaction.ts';

export interface VerifyResult {
  commit: ObjectId;
  valid: boolean;
  /** Key ids of all signatures present, valid or not. */
  signatures: { key_id: string; trusted: boolean; valid: boolean }[];
}

/** Checks a commit's signatures against trusted keys; valid means one trusted key signed it. */
export async function verifyCommit(repo: Repo, commit: ObjectId, trusted: Uint8Array[]): Promise<VerifyResult> {
  await repo.readCommit(commit); // the commit itself must be intact
  const bytes = await repo.readSignatures(commit);
  if (bytes === null) return { commit, valid: false, signatures: [] };
  const sigs = decodeSignatures(bytes);
  if (sigs === null) throw new LarchError('SIGNATURE_INVALID', `signatures of commit ${commit} are malformed`, { data: { commit } });
  const signatures = [];
  for (const s of sigs) {
    const isTrusted = trusted.some((t) => Buffer.from(t).equals(Buffer.from(s.key)));
    signatures.push({ key_id: keyId(s.key), trusted: isTrusted, valid: await verifyCommitSignatures(commit, [s], [s.key]) });
  }
  return { commit, valid: signatures.some((s) => s.trusted && s.valid), signatures };
}

/** Adds signatures to a stored commit (one per key; re-signing replaces). */
export async function addSignatures(repo: Repo, commit: ObjectId, keys: SecretKey[]): Promise<string[]> {
  await repo.readCommit(commit);
  const txn = await Transaction.begin(repo);
  try {
    const existing = decodeSignatures((await repo.readSignatures(commit)) ?? new Uint8Array([0x80])) ?? [];
    const added = [];
    for (const k of keys) added.push(await signCommit(commit, k));
    await txn.writeSignatures(commit, encodeSignatures(mergeSignatures(existing, added)));
    await txn.commit();
    return added.map((s) => keyId(s.key));
  } catch (err) {
    await txn.abort();
    throw err;
  }
}

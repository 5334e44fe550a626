/**
 * The trust rule of derived commits (docs/layering.md "Trust"): a derived (larch.local) commit is
 * the device's own and carries no vendor signature. Everything the vendor vouches for is checked
 * on the base commit it was built from: its signatures (threshold of the commit role), its ref
 * binding, its product binding and its release counter; the derived commit is accepted only as
 * made here, from that base (larch.base.commit, which is also its parent). A larch.local commit
 * never comes from a remote.
 */
import { LarchError } from '../../errors.ts';
import type { CborValue } from '../../store/cbor.ts';
import type { Commit, ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { verifyCommit } from '../../store/signatures.ts';
import { meetsThreshold } from '../../protocol/trust.ts';
import { checkCommitBinding, deviceBinding, isBound } from '../product-binding.ts';
import { checkTarget } from '../release-floor.ts';
import type { DeviceConfig, Sysroot } from '../sysroot.ts';
import { roleKeys } from '../trust-store.ts';
import { LAYER_KEYS } from '../../packages/layer-info.ts';

/** Whether a commit's metadata says it was made on a device (larch.local true). */
export function isLocalCommit(metadata: ReadonlyMap<string, CborValue>): boolean {
  return metadata.get(LAYER_KEYS.local) === true;
}

/** The vendor commit a derived commit was built from, or null for a vendor commit. */
export function baseOf(metadata: ReadonlyMap<string, CborValue>): ObjectId | null {
  const base = metadata.get(LAYER_KEYS.baseCommit);
  return isLocalCommit(metadata) && typeof base === 'string' && /^[0-9a-f]{64}$/.test(base) ? base : null;
}

/**
 * Refuses a larch.local commit offered by a remote: derived commits are made on the device, and
 * a server (or whoever signed it) handing one out is passing off a tree as a device's own.
 * @throws REFUSED with data.reason "local-commit-from-remote"
 */
export function refuseRemoteLocal(id: ObjectId, commit: Pick<Commit, 'version' | 'metadata'>, source: string): void {
  if (!isLocalCommit(commit.metadata)) return;
  throw new LarchError('REFUSED', `refusing commit ${id.slice(0, 12)} (version ${commit.version}) from ${source}: it says it was made on a device (larch.local), and such commits are never taken from a remote`, {
    hint: 'a vendor never publishes a derived commit: tell the vendor (a mistake, or an attack); layering is rebuilt on each device from the vendor base',
    data: { reason: 'local-commit-from-remote', commit: id, source },
  });
}

/**
 * Checks a base commit as upgrade checks a vendor commit before it is staged: signed by the
 * commit role's threshold, bound to the device's ref and product, not below the release floor.
 * Returns the ids of the keys whose signatures verified.
 * @throws SIGNATURE_INVALID, SIGNATURE_MISSING, REFUSED (wrong-ref, below-release-floor, wrong-*, local-commit-as-base)
 */
export async function verifyBase(sysroot: Sysroot, repo: Repo, config: DeviceConfig, base: ObjectId, bootedCommit: ObjectId): Promise<string[]> {
  const commit = await repo.readCommit(base);
  if (isLocalCommit(commit.metadata)) {
    throw new LarchError('REFUSED', `commit ${base.slice(0, 12)} is a derived (larch.local) commit and cannot be the base of a layered tree`, { hint: 'layering builds on the vendor commit; this is a bug in larch if it happens', data: { reason: 'local-commit-as-base', commit: base } });
  }
  const role = await roleKeys(sysroot, 'commit');
  const verified = await verifyCommit(repo, base, role.keys);
  const signedBy = verified.signatures.filter((s) => s.trusted && s.valid).map((s) => s.key_id);
  if (!verified.valid || !meetsThreshold(signedBy, role)) {
    throw new LarchError('SIGNATURE_INVALID', `base commit ${base} (version ${commit.version}) is not signed by ${role.threshold > 1 ? `${role.threshold} keys` : 'a key'} of the commit role the device trusts`, { hint: "layering builds only on a vendor commit the device verifies; 'larch trust show' lists the keys", data: { commit: base, signed_by: signedBy, threshold: role.threshold } });
  }
  const device = await deviceBinding(sysroot, config, bootedCommit);
  if (isBound(device)) checkCommitBinding(device, base, commit);
  const booted = await repo.readCommit(bootedCommit);
  await checkTarget(sysroot, config, booted.metadata, { commit: base, version: commit.version, metadata: commit.metadata }, false);
  return signedBy;
}

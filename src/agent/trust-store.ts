/**
 * The device's trust: S/larch/trust.cbor (the signed trust document it accepted last, docs/formats.md
 * §15) and, without one, the keys given to `provision --keys` (S/larch/keys/*.pub), which then
 * count for every role with threshold 1, as before trust documents existed. Every check reads it
 * afresh, so a revocation takes effect on the next check.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import { readPublicKey } from '../store/sign.ts';
import { ROLES, type Role, type RoleKeys, type TrustDocument, TrustFormatError, acceptTrust, decodeSignedTrust, keysWithRoles, minRelease } from '../protocol/trust.ts';
import { keyId } from '../store/sign.ts';
import { appendJournal } from './journal.ts';
import type { Sysroot } from './sysroot.ts';

export interface DeviceTrust {
  /** The trust document's version; null without one. */
  version: number | null;
  document: TrustDocument | null;
  /** The signed file's bytes (what a newer document is checked against); null without one. */
  bytes: Uint8Array | null;
  /** The keys and threshold of each role. */
  roles: Record<Role, RoleKeys>;
  /** S/larch/keys: they vouch for the first trust document. */
  provisioned: Uint8Array[];
}

export const trustPath = (sysroot: Sysroot): string => join(sysroot.larchDir, 'trust.cbor');

/** The keys in S/larch/keys/*.pub, sorted by file name. */
export async function provisionedKeys(sysroot: Sysroot): Promise<Uint8Array[]> {
  const names = await readdir(sysroot.keysDir).catch(() => [] as string[]);
  const keys: Uint8Array[] = [];
  for (const n of names.filter((n) => n.endsWith('.pub')).sort()) keys.push(await readPublicKey(join(sysroot.keysDir, n)));
  return keys;
}

/** The device's trust. @throws INVALID_INPUT (a damaged trust.cbor), IO */
export async function readDeviceTrust(sysroot: Sysroot): Promise<DeviceTrust> {
  const path = trustPath(sysroot);
  const provisioned = await provisionedKeys(sysroot);
  const bytes = await readFile(path).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', path))));
  if (bytes === null) {
    const every = { keys: provisioned, threshold: 1 };
    return { version: null, document: null, bytes: null, roles: Object.fromEntries(ROLES.map((r) => [r, every])) as Record<Role, RoleKeys>, provisioned };
  }
  let document: TrustDocument;
  try {
    document = decodeSignedTrust(bytes).document;
  } catch (err) {
    if (!(err instanceof TrustFormatError)) throw err;
    throw new LarchError('INVALID_INPUT', `${path}: not a valid larch trust document: ${err.message}`, { hint: 'install the current trust document again: larch trust install --sysroot S T.trust --force-replace is not possible; restore the file from the vendor', data: { path } });
  }
  return { version: document.version, document, bytes: Uint8Array.from(bytes), roles: document.roles, provisioned };
}

/**
 * The keys and threshold of one role.
 * @throws SIGNATURE_MISSING when the role has no key (an unprovisioned device)
 */
export async function roleKeys(sysroot: Sysroot, role: Role): Promise<RoleKeys> {
  const r = (await readDeviceTrust(sysroot)).roles[role];
  if (r.keys.length === 0) throw new LarchError('SIGNATURE_MISSING', `no trusted keys in ${sysroot.keysDir}`, { hint: 'provision the device with --keys K.pub', data: { path: sysroot.keysDir, role } });
  return r;
}

/** The vendor's --allow-downgrade floor from the device's trust document (null: none set). */
export async function deviceMinRelease(sysroot: Sysroot): Promise<number | null> {
  return minRelease((await readDeviceTrust(sysroot)).document);
}

/**
 * Accepts a trust document (acceptTrust: higher version, signed by the current and the new root
 * thresholds, or, for the first one, by its root threshold and a provisioned key) and stores it.
 * @returns installed false when it is the current document again
 * @throws SIGNATURE_INVALID (data.reason), IO, NO_SPACE
 */
export async function installTrust(sysroot: Sysroot, bytes: Uint8Array, source: string): Promise<{ installed: boolean; version: number; previous: number | null }> {
  const current = await readDeviceTrust(sysroot);
  const next = await acceptTrust(bytes, { current: current.bytes, vouchers: current.provisioned, source });
  if (next === null) return { installed: false, version: current.version!, previous: current.version };
  await writeFileAtomic(trustPath(sysroot), bytes);
  const version = next.document.version;
  await appendJournal(sysroot.journalPath, { event: 'trust', message: `trust document version ${version} accepted from ${source} (was ${current.version === null ? 'none: the provisioned keys' : `version ${current.version}`})`, data: { version, previous: current.version, source } });
  return { installed: true, version, previous: current.version };
}

/** `status --json`'s trust: the version (null without a document) and every key with its roles. */
export async function trustStatus(sysroot: Sysroot): Promise<{ version: number | null; keys: { id: string; roles: Role[] }[] }> {
  const t = await readDeviceTrust(sysroot);
  if (!t.document) return { version: null, keys: t.provisioned.map((k) => ({ id: keyId(k), roles: [...ROLES] })) };
  return { version: t.version, keys: keysWithRoles(t.document).map((k) => ({ id: k.id, roles: k.roles })) };
}

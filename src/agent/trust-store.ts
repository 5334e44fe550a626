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

/**
 * Whose trust: the origin's (S/larch/keys, S/larch/trust.cbor: what provision wrote) or a named
 * remote's own (S/larch/remotes/NAME/, agent/remotes.ts), each with exactly the same rules.
 */
export interface TrustScope {
  /** The remote it belongs to (origin for the device's own). */
  remote: string;
  keysDir: string;
  trustPath: string;
}

export const originScope = (sysroot: Sysroot): TrustScope => ({ remote: 'origin', keysDir: sysroot.keysDir, trustPath: join(sysroot.larchDir, 'trust.cbor') });

/** The keys in KEYS/*.pub (S/larch/keys for the origin), sorted by file name. */
export async function provisionedKeys(scope: TrustScope): Promise<Uint8Array[]> {
  const names = await readdir(scope.keysDir).catch(() => [] as string[]);
  const keys: Uint8Array[] = [];
  for (const n of names.filter((n) => n.endsWith('.pub')).sort()) keys.push(await readPublicKey(join(scope.keysDir, n)));
  return keys;
}

/** The device's trust (the origin's, or a remote's own). @throws INVALID_INPUT (a damaged trust.cbor), IO */
export async function readDeviceTrust(sysroot: Sysroot, scope: TrustScope = originScope(sysroot)): Promise<DeviceTrust> {
  const path = scope.trustPath;
  const provisioned = await provisionedKeys(scope);
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
export async function roleKeys(sysroot: Sysroot, role: Role, scope: TrustScope = originScope(sysroot)): Promise<RoleKeys> {
  const r = (await readDeviceTrust(sysroot, scope)).roles[role];
  if (r.keys.length === 0) throw noKeys(scope, role);
  return r;
}

/** SIGNATURE_MISSING: a trust with no key for a role (an unprovisioned device, a remote added without keys of its own). */
export function noKeys(scope: TrustScope, role: Role): LarchError {
  const hint = scope.remote === 'origin' ? 'provision the device with --keys K.pub' : `add the remote again with its keys: larch remote delete ${scope.remote}; larch remote add ${scope.remote} URL --keys K.pub`;
  return new LarchError('SIGNATURE_MISSING', `no trusted keys in ${scope.keysDir}`, { hint, data: { path: scope.keysDir, role, remote: scope.remote } });
}

/** The vendor's --allow-downgrade floor from the device's trust document (null: none set). */
export async function deviceMinRelease(sysroot: Sysroot, scope: TrustScope = originScope(sysroot)): Promise<number | null> {
  return minRelease((await readDeviceTrust(sysroot, scope)).document);
}

/**
 * Accepts a trust document (acceptTrust: higher version, signed by the current and the new root
 * thresholds, or, for the first one, by its root threshold and a provisioned key) and stores it.
 * @returns installed false when it is the current document again
 * @throws SIGNATURE_INVALID (data.reason), IO, NO_SPACE
 */
export async function installTrust(sysroot: Sysroot, bytes: Uint8Array, source: string, scope: TrustScope = originScope(sysroot)): Promise<{ installed: boolean; version: number; previous: number | null }> {
  const current = await readDeviceTrust(sysroot, scope);
  const next = await acceptTrust(bytes, { current: current.bytes, vouchers: current.provisioned, source });
  if (next === null) return { installed: false, version: current.version!, previous: current.version };
  await writeFileAtomic(scope.trustPath, bytes);
  const version = next.document.version;
  const whose = scope.remote === 'origin' ? '' : ` for remote ${scope.remote}`;
  await appendJournal(sysroot.journalPath, { event: 'trust', message: `trust document version ${version} accepted${whose} from ${source} (was ${current.version === null ? 'none: the provisioned keys' : `version ${current.version}`})`, data: { version, previous: current.version, source, remote: scope.remote } });
  return { installed: true, version, previous: current.version };
}

/** `status --json`'s trust: the version (null without a document) and every key with its roles. */
export async function trustStatus(sysroot: Sysroot, scope: TrustScope = originScope(sysroot)): Promise<{ version: number | null; keys: { id: string; roles: Role[] }[] }> {
  const t = await readDeviceTrust(sysroot, scope);
  if (!t.document) return { version: null, keys: t.provisioned.map((k) => ({ id: keyId(k), roles: [...ROLES] })) };
  return { version: t.version, keys: keysWithRoles(t.document).map((k) => ({ id: k.id, roles: k.roles })) };
}

/**
 * The signed trust document (TUF's root role, without expiry: larch has no trusted clock). It
 * names the keys allowed for each role, each role with a threshold, and a version that only goes
 * up. Pure: bytes in and out. See docs/formats.md §15.
 *
 *   T.trust / R/trust/N.cbor / S/larch/trust.cbor   canonical CBOR map:
 *     {"signed": bstr,                 the document's canonical CBOR bytes (below)
 *      "signatures": [{"alg": "ed25519", "key": bstr(32), "sig": bstr(64)}]}   sorted by key
 *   document:
 *     {"format": 1, "version": uint (>= 1),
 *      "roles": {"root"|"commit"|"summary"|"command": {"keys": [bstr(32)...] sorted, "threshold": uint >= 1}},
 *      "min_release": uint}            optional
 *   Each signature is over "larch-trust-v1:" ‖ SHA-256(signed bytes).
 *
 * Acceptance (TUF's root rotation): a document replacing version N must have a higher version
 * and be signed by a threshold of the current root keys AND a threshold of its own root keys.
 * A first document (none trusted yet) must be signed by its own root threshold and by a key the
 * caller already trusts (the device's provisioned keys: they vouch for it).
 */
import * as ed from '@noble/ed25519';
import { LarchError, quash } from '../errors.ts';
import { sha256 } from '../_hash.ts';
import { type CborValue, compareBytes, decodeCanonical, encodeCanonical } from '../store/cbor.ts';
import { type SecretKey, type Signature, keyId } from '../store/sign.ts';

export const TRUST_FORMAT = 1;
export const ROLES = ['root', 'commit', 'summary', 'command'] as const;
export type Role = (typeof ROLES)[number];
/** Largest trust document a device reads (a few dozen keys fit in a few KiB). */
export const MAX_TRUST_BYTES = 64 * 1024;
const DOMAIN = Buffer.from('larch-trust-v1:', 'ascii');

/** Where a repo serves the trust document of a version: R/trust/N.cbor (one per version, a TUF-style chain). */
export const trustFilePath = (version: number): string => `trust/${version}.cbor`;

export interface RoleKeys {
  keys: Uint8Array[];
  threshold: number;
}

export interface TrustDocument {
  version: number;
  roles: Record<Role, RoleKeys>;
  /** The vendor's floor for `--allow-downgrade` (larch.release); absent when none. */
  minRelease?: number;
}

export interface SignedTrust {
  document: TrustDocument;
  /** The signed bytes (the document's canonical CBOR). */
  signed: Uint8Array;
  signatures: Signature[];
}

export class TrustFormatError extends Error {
  override name = 'TrustFormatError';
}
const fail = (m: string): never => {
  throw new TrustFormatError(m);
};

const sortKeys = (keys: Uint8Array[]) => [...keys].sort(compareBytes);

/** The document's canonical bytes: what signatures sign. @throws TrustFormatError when a role is unusable */
export function encodeTrustDocument(doc: TrustDocument): Uint8Array {
  checkDocument(doc);
  const roles: Record<string, CborValue> = {};
  for (const r of ROLES) roles[r] = { keys: sortKeys(doc.roles[r].keys), threshold: doc.roles[r].threshold };
  const m: Record<string, CborValue> = { format: TRUST_FORMAT, version: doc.version, roles };
  if (doc.minRelease !== undefined) m.min_release = doc.minRelease;
  return encodeCanonical(m);
}

function checkDocument(doc: TrustDocument): void {
  if (!Number.isSafeInteger(doc.version) || doc.version < 1) fail(`version ${doc.version} is not an integer >= 1`);
  if (doc.minRelease !== undefined && (!Number.isSafeInteger(doc.minRelease) || doc.minRelease < 0)) fail('min_release is not an unsigned integer');
  for (const r of ROLES) {
    const role = doc.roles[r];
    if (!role) fail(`role ${r} is missing`);
    const hex = new Set(role.keys.map((k) => Buffer.from(k).toString('hex')));
    if (hex.size !== role.keys.length) fail(`role ${r} lists a key twice`);
    if (role.keys.some((k) => k.length !== 32)) fail(`role ${r} has a key that is not 32 bytes`);
    if (!Number.isSafeInteger(role.threshold) || role.threshold < 1) fail(`role ${r} threshold ${role.threshold} is not an integer >= 1`);
    if (role.threshold > role.keys.length) fail(`role ${r} threshold ${role.threshold} is more than its ${role.keys.length} key(s): nothing could ever satisfy it`);
  }
}

const uint = (v: CborValue | undefined, what: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${what} is not an unsigned integer`));
const map = (v: CborValue | undefined, what: string): Map<CborValue, CborValue> => (v instanceof Map ? v : fail(`${what} is not a map`));
const onlyKeys = (m: Map<CborValue, CborValue>, allowed: readonly string[], what: string): void => {
  for (const k of m.keys()) if (typeof k !== 'string' || !allowed.includes(k)) fail(`${what} has an unknown key ${quash(String(k), 40)}`);
};

/** Decodes the document bytes (the `signed` field). @throws TrustFormatError */
export function decodeTrustDocument(bytes: Uint8Array): TrustDocument {
  const m = map(decodeCanonical(bytes), 'trust document (canonical CBOR)');
  if (m.get('format') !== TRUST_FORMAT) fail(`trust document format ${quash(String(m.get('format')), 20)} is not ${TRUST_FORMAT}`);
  onlyKeys(m, ['format', 'version', 'roles', 'min_release'], 'trust document');
  const rolesMap = map(m.get('roles'), 'roles');
  onlyKeys(rolesMap, ROLES, 'roles');
  const roles = {} as Record<Role, RoleKeys>;
  for (const r of ROLES) {
    const rm = map(rolesMap.get(r), `role ${r}`);
    onlyKeys(rm, ['keys', 'threshold'], `role ${r}`);
    const keys = rm.get('keys');
    if (!Array.isArray(keys) || keys.some((k) => !(k instanceof Uint8Array) || k.length !== 32)) fail(`role ${r} keys is not an array of 32-byte keys`);
    // Sorted, as encodeTrustDocument writes them: one document has one encoding.
    if ((keys as Uint8Array[]).some((k, i, all) => i > 0 && compareBytes(all[i - 1], k) >= 0)) fail(`role ${r} keys are not sorted (or one is listed twice)`);
    roles[r] = { keys: keys as Uint8Array[], threshold: uint(rm.get('threshold'), `role ${r} threshold`) };
  }
  const doc: TrustDocument = { version: uint(m.get('version'), 'version'), roles };
  if (m.has('min_release')) doc.minRelease = uint(m.get('min_release'), 'min_release');
  checkDocument(doc);
  return doc;
}

/** The message each signature signs: the domain, then SHA-256 of the document bytes. */
export function trustSigningMessage(signed: Uint8Array): Uint8Array {
  return Buffer.concat([DOMAIN, Buffer.from(sha256(signed), 'hex')]);
}

export function encodeSignedTrust(t: { signed: Uint8Array; signatures: Signature[] }): Uint8Array {
  const sigs = [...t.signatures].sort((a, b) => compareBytes(a.key, b.key)).map((s) => ({ alg: 'ed25519', key: s.key, sig: s.sig }) as CborValue);
  return encodeCanonical({ signed: t.signed, signatures: sigs });
}

/** Decodes a signed trust file (signatures not checked). @throws TrustFormatError */
export function decodeSignedTrust(bytes: Uint8Array): SignedTrust {
  if (bytes.length > MAX_TRUST_BYTES) fail(`the trust file is ${bytes.length} bytes, more than ${MAX_TRUST_BYTES}`);
  let value: CborValue | undefined;
  try {
    value = decodeCanonical(bytes);
  } catch (err) {
    fail(`not canonical CBOR: ${(err as Error).message}`);
  }
  const m = map(value, 'trust file');
  onlyKeys(m, ['signed', 'signatures'], 'trust file');
  const signed = m.get('signed');
  if (!(signed instanceof Uint8Array)) fail('trust file signed is not a byte string');
  const list = m.get('signatures');
  if (!Array.isArray(list)) fail('trust file signatures is not an array');
  const signatures: Signature[] = [];
  for (const item of list as CborValue[]) {
    const s = map(item, 'signature');
    if (s.get('alg') !== 'ed25519') continue; // a later version's algorithm: skipped, as in .sig files
    onlyKeys(s, ['alg', 'key', 'sig'], 'signature');
    const key = s.get('key');
    const sig = s.get('sig');
    if (!(key instanceof Uint8Array) || key.length !== 32 || !(sig instanceof Uint8Array) || sig.length !== 64) fail('a signature is not a 32-byte key and a 64-byte signature');
    signatures.push({ key: key as Uint8Array, sig: sig as Uint8Array });
  }
  return { document: decodeTrustDocument(signed as Uint8Array), signed: signed as Uint8Array, signatures };
}

/** A signed trust file for doc, signed by each key (no signature when keys is empty). */
export async function createSignedTrust(doc: TrustDocument, keys: SecretKey[]): Promise<Uint8Array> {
  const signed = encodeTrustDocument(doc);
  return addTrustSignatures(encodeSignedTrust({ signed, signatures: [] }), keys);
}

/** Adds (or replaces) each key's signature. @throws TrustFormatError */
export async function addTrustSignatures(bytes: Uint8Array, keys: SecretKey[]): Promise<Uint8Array> {
  const t = decodeSignedTrust(bytes);
  const message = trustSigningMessage(t.signed);
  const byKey = new Map<string, Signature>(t.signatures.map((s) => [Buffer.from(s.key).toString('hex'), s]));
  for (const k of keys) byKey.set(Buffer.from(k.publicKey).toString('hex'), { key: k.publicKey, sig: await ed.signAsync(message, k.seed) });
  return encodeSignedTrust({ signed: t.signed, signatures: [...byKey.values()] });
}

/** Ids of the keys among `keys` whose signature over the document verifies (each key counted once). */
export async function validSigners(t: SignedTrust, keys: Uint8Array[]): Promise<string[]> {
  const message = trustSigningMessage(t.signed);
  const wanted = new Set(keys.map((k) => Buffer.from(k).toString('hex')));
  const out = new Set<string>();
  for (const s of t.signatures) {
    const hex = Buffer.from(s.key).toString('hex');
    if (!wanted.has(hex) || out.has(hex)) continue;
    try {
      if (await ed.verifyAsync(s.sig, message, s.key)) out.add(hex);
    } catch {
      // a malformed point or signature is simply not valid
    }
  }
  return [...out].map((h) => keyId(Buffer.from(h, 'hex')));
}

export interface AcceptOptions {
  /** The trust the device holds now (its signed file's bytes), or null for none yet. */
  current: Uint8Array | null;
  /** With no current document: keys that must vouch for the first one (S/larch/keys); null: its own root is enough (the vendor's repo). */
  vouchers: Uint8Array[] | null;
  /** Names the document's origin in messages (a path or URL). */
  source: string;
}

/**
 * Checks a new trust document against the current one. Returns the new one, or null when it is
 * the current one again (the same bytes: nothing to do).
 * @throws SIGNATURE_INVALID (data.reason: 'malformed', 'trust-rollback', 'root-threshold',
 *   'old-root-threshold', 'not-vouched'), with data.version and data.current_version
 */
export async function acceptTrust(bytes: Uint8Array, opts: AcceptOptions): Promise<SignedTrust | null> {
  const refuse = (reason: string, message: string, extra: Record<string, unknown>, hint: string) =>
    new LarchError('SIGNATURE_INVALID', `${opts.source}: ${message}`, { hint, data: { reason, source: opts.source, ...extra } });
  let next: SignedTrust;
  try {
    next = decodeSignedTrust(bytes);
  } catch (err) {
    if (err instanceof TrustFormatError) throw refuse('malformed', `not a valid larch trust document: ${err.message}`, {}, "make trust documents with 'larch trust create' or 'larch trust rotate'");
    throw err;
  }
  const current = opts.current ? decodeSignedTrust(opts.current) : null;
  const version = next.document.version;
  const data = { version, current_version: current?.document.version ?? null };
  if (current) {
    if (version === current.document.version && Buffer.from(bytes).equals(Buffer.from(opts.current!))) return null;
    if (version <= current.document.version) {
      throw refuse('trust-rollback', `trust document version ${version} is not above version ${current.document.version}, the one this device trusts`, data, 'a trust document replaces the current one only with a higher version (larch trust rotate adds one)');
    }
  }
  const root = next.document.roles.root;
  const byNewRoot = await validSigners(next, root.keys);
  if (byNewRoot.length < root.threshold) {
    throw refuse('root-threshold', `trust document version ${version} is signed by ${byNewRoot.length} of its own root keys, it needs ${root.threshold}`, { ...data, signed_by: byNewRoot, threshold: root.threshold }, "sign it with the new root keys: larch trust sign T.trust --sign-key ROOT.key");
  }
  if (current) {
    const old = current.document.roles.root;
    const byOldRoot = await validSigners(next, old.keys);
    if (byOldRoot.length < old.threshold) {
      throw refuse('old-root-threshold', `trust document version ${version} is signed by ${byOldRoot.length} of the current (version ${current.document.version}) root keys, it needs ${old.threshold}`, { ...data, signed_by: byOldRoot, threshold: old.threshold }, 'a rotation is signed by the current root keys as well as the new ones: larch trust sign T.trust --sign-key OLD-ROOT.key');
    }
  } else if (opts.vouchers !== null) {
    const vouched = await validSigners(next, opts.vouchers);
    if (vouched.length === 0) {
      throw refuse('not-vouched', `trust document version ${version} is the first this device would trust, and no key it was provisioned with (S/larch/keys) signed it`, data, 'sign the first trust document with a provisioned key too (larch trust sign T.trust --sign-key K.key)');
    }
  }
  return next;
}

/** The vendor's floor for --allow-downgrade from a trust document, or null when it sets none. */
export function minRelease(doc: TrustDocument | null): number | null {
  return doc?.minRelease ?? null;
}

/** The roles a key has in doc. */
export function rolesOf(doc: TrustDocument, key: Uint8Array): Role[] {
  return ROLES.filter((r) => doc.roles[r].keys.some((k) => Buffer.from(k).equals(Buffer.from(key))));
}

/** Every key of doc, once, with its roles, sorted by id (trust show, status --json). */
export function keysWithRoles(doc: TrustDocument): { id: string; key: Uint8Array; roles: Role[] }[] {
  const seen = new Map<string, Uint8Array>();
  for (const r of ROLES) for (const k of doc.roles[r].keys) seen.set(Buffer.from(k).toString('hex'), k);
  return [...seen.values()].map((k) => ({ id: keyId(k), key: k, roles: rolesOf(doc, k) })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Counts the distinct keys of a role among verified signer ids, against its threshold. */
export function meetsThreshold(signerIds: string[], role: RoleKeys): boolean {
  const ids = new Set(role.keys.map(keyId));
  return new Set(signerIds.filter((id) => ids.has(id))).size >= role.threshold;
}

/**
 * ed25519 keys and detached commit signatures.
 *
 * Key files are one line of text: `larch-ed25519-secret BASE64(32-byte seed)` and
 * `larch-ed25519-public BASE64(32-byte key)`. A commit's signatures live beside it as
 * OBJ.sig: canonical CBOR array of {"alg": "ed25519", "key": bstr(32), "sig": bstr(64)}.
 * The signed message is the ASCII domain "larch-commit-v1:" followed by the 32 raw bytes
 * of the commit id, so a signature can never be replayed as one of another kind.
 */
import * as ed from '@noble/ed25519';
import { access, readFile, writeFile } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../errors.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from './cbor.ts';
import { sha256 } from '../_hash.ts';
import { type ObjectId, idToBytes } from './object.ts';

export interface SecretKey {
  seed: Uint8Array;
  publicKey: Uint8Array;
}
export interface Signature {
  key: Uint8Array;
  sig: Uint8Array;
}

const SECRET_TAG = 'larch-ed25519-secret';
const PUBLIC_TAG = 'larch-ed25519-public';

/** A short printable key id: the first 16 hex digits of SHA-256(public key). */
export function keyId(publicKey: Uint8Array): string {
  return sha256(publicKey).slice(0, 16);
}

export function commitSigningMessage(commitId: ObjectId): Uint8Array {
  return Buffer.concat([Buffer.from('larch-commit-v1:', 'ascii'), idToBytes(commitId)]);
}

export async function generateKey(): Promise<SecretKey> {
  const { secretKey, publicKey } = await ed.keygenAsync();
  return { seed: secretKey, publicKey };
}

export function formatSecretKey(k: SecretKey): string {
  return `${SECRET_TAG} ${Buffer.from(k.seed).toString('base64')}\n`;
}
export function formatPublicKey(publicKey: Uint8Array): string {
  return `${PUBLIC_TAG} ${Buffer.from(publicKey).toString('base64')}\n`;
}

function parseKeyLine(text: string, tag: string, path: string): Uint8Array {
  const m = new RegExp(`^${tag} ([A-Za-z0-9+/=]{43,44})\\s*$`).exec(text.trim());
  const bytes = m ? Buffer.from(m[1], 'base64') : null;
  if (!bytes || bytes.length !== 32) {
    throw new LarchError('KEY_INVALID', `'${path}' is not a larch ${tag === SECRET_TAG ? 'secret' : 'public'} key`, { data: { path } });
  }
  return Uint8Array.from(bytes);
}

/** @throws NOT_FOUND, KEY_INVALID */
export async function readSecretKey(path: string): Promise<SecretKey> {
  const text = await readFile(path, 'utf8').catch((err) => {
    throw fromSystemError(err, 'read secret key', path);
  });
  const seed = parseKeyLine(text, SECRET_TAG, path);
  return { seed, publicKey: await ed.getPublicKeyAsync(seed) };
}

/** @throws NOT_FOUND, KEY_INVALID */
export async function readPublicKey(path: string): Promise<Uint8Array> {
  const text = await readFile(path, 'utf8').catch((err) => {
    throw fromSystemError(err, 'read public key', path);
  });
  return parseKeyLine(text, PUBLIC_TAG, path);
}

export async function writeKeyPair(base: string, key: SecretKey): Promise<{ secret: string; public: string }> {
  const secret = `${base}.key`;
  const pub = `${base}.pub`;
  // Check both first: never leave a secret key beside a public key that is not its own.
  for (const p of [secret, pub]) {
    if (await access(p).then(() => true, () => false)) throw new LarchError('EXISTS', `'${p}' already exists; keygen never overwrites a key`, { data: { path: p } });
  }
  await writeFile(secret, formatSecretKey(key), { mode: 0o600, flag: 'wx' }).catch((err) => {
    throw fromSystemError(err, 'write secret key', secret);
  });
  await writeFile(pub, formatPublicKey(key.publicKey), { flag: 'wx' }).catch((err) => {
    throw fromSystemError(err, 'write public key', pub);
  });
  return { secret, public: pub };
}

export async function signCommit(commitId: ObjectId, key: SecretKey): Promise<Signature> {
  return { key: key.publicKey, sig: await ed.signAsync(commitSigningMessage(commitId), key.seed) };
}

export function encodeSignatures(sigs: Signature[]): Uint8Array {
  return encodeCanonical(sigs.map((s) => ({ alg: 'ed25519', key: s.key, sig: s.sig }) as CborValue));
}

/** Decodes a .sig file; returns null when it is malformed (callers report that). */
export function decodeSignatures(bytes: Uint8Array): Signature[] | null {
  const value = decodeCanonical(bytes);
  if (!Array.isArray(value)) return null;
  const out: Signature[] = [];
  for (const item of value) {
    if (!(item instanceof Map) || typeof item.get('alg') !== 'string') return null;
    // Signatures of other algorithms (a later version's) are skipped, not fatal.
    if (item.get('alg') !== 'ed25519') continue;
    if (item.size !== 3) return null;
    const key = item.get('key');
    const sig = item.get('sig');
    if (!(key instanceof Uint8Array) || key.length !== 32 || !(sig instanceof Uint8Array) || sig.length !== 64) return null;
    out.push({ key, sig });
  }
  return out;
}

/** True when some signature is by one of the trusted keys and valid for this commit. */
export function verifyCommitSignatures(commitId: ObjectId, sigs: Signature[], trusted: Uint8Array[]): Promise<boolean> {
  return verifyAnySignature(commitSigningMessage(commitId), sigs, trusted);
}

/** True when some signature over `message` is by one of the trusted keys and valid. */
export async function verifyAnySignature(message: Uint8Array, sigs: Signature[], trusted: Uint8Array[]): Promise<boolean> {
  for (const s of sigs) {
    if (!trusted.some((t) => Buffer.from(t).equals(Buffer.from(s.key)))) continue;
    try {
      if (await ed.verifyAsync(s.sig, message, s.key)) return true;
    } catch {
      // a malformed point or signature is simply not valid
    }
  }
  return false;
}

/** Merges new signatures into existing ones, one per key. */
export function mergeSignatures(existing: Signature[], added: Signature[]): Signature[] {
  const byKey = new Map<string, Signature>();
  for (const s of [...existing, ...added]) byKey.set(Buffer.from(s.key).toString('hex'), s);
  return [...byKey.values()].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
}

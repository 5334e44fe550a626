/**
 * The signed summary: the first file a device reads from a remote (as OSTree's `summary`).
 * It says which commit each ref points to and which static deltas lead there, and it carries
 * an expiry time (against freeze attacks) and a serial that never goes down (against rollback
 * to an older, validly signed summary). Pure: bytes in and out; the clock is passed in.
 * See docs/formats.md §10.
 *
 *   R/summary      canonical CBOR map (RFC 8949 §4.2.1):
 *     {"format": 1,
 *      "serial": uint,                 never lower than the previous summary's
 *      "created": uint, "expires": uint, seconds since the epoch
 *      "refs": {NAME: {"commit": bstr(32), "version": tstr, "timestamp": uint,
 *                      "barriers"?: [{"commit": bstr(32), "version": tstr, "timestamp": uint, "release"?: uint}]}},
 *      "deltas": [{"from": bstr(32) | null, "to": bstr(32), "bytes": uint,
 *                  "envelope": {"size": uint, "sha256": bstr(32)},
 *                  "parts": [{"size": uint, "sha256": bstr(32)}]}],
 *      ? "collection_id": tstr}       the repo's collection id (store/binding.ts), when it has one
 *   R/summary.sig  canonical CBOR array of {"alg": "ed25519", "key": bstr(32), "sig": bstr(64)}
 *                  (as a commit's .sig, §4), over "larch-summary-v1:" ‖ SHA-256(summary bytes)
 */
import * as ed from '@noble/ed25519';
import { LarchError, quash } from '../errors.ts';
import { sha256 } from '../_hash.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from '../store/cbor.ts';
import { type ObjectId, bytesToId, idToBytes } from '../store/object.ts';
import { type SecretKey, type Signature, decodeSignatures, encodeSignatures, keyId } from '../store/sign.ts';

export const SUMMARY_FORMAT = 1;
/** Largest summary a device reads (refs and deltas of a whole repo fit in far less). */
export const MAX_SUMMARY_BYTES = 16 * 1024 * 1024;
/** Largest summary.sig a device reads: a few entries of 120 bytes each. */
export const MAX_SUMMARY_SIG_BYTES = 64 * 1024;
const DOMAIN = Buffer.from('larch-summary-v1:', 'ascii');

export interface SummaryRef {
  commit: ObjectId;
  version: string;
  /** The commit's own timestamp, seconds since the epoch. */
  timestamp: number;
  /**
   * Barrier releases of the ref (Fedora CoreOS style), oldest first: a device below one is offered
   * it before the head (src/agent/barriers.ts). Absent (and not encoded) when the ref has none, so
   * a summary without barriers is byte for byte what larch 0.1 wrote.
   */
  barriers?: SummaryBarrier[];
}

export interface SummaryBarrier {
  commit: ObjectId;
  version: string;
  timestamp: number;
  /** The commit's `larch.release` counter, when it has one. */
  release?: number;
}

export interface SummaryDelta {
  from: ObjectId | null;
  to: ObjectId;
  /** envelope.size plus every part's size: what a device downloads for this delta. */
  bytes: number;
  envelope: { size: number; sha256: string };
  parts: { size: number; sha256: string }[];
}

export interface Summary {
  serial: number;
  created: number;
  expires: number;
  refs: Record<string, SummaryRef>;
  deltas: SummaryDelta[];
  /** The publishing repo's collection id; absent when it has none (and in older summaries). */
  collectionId?: string;
  /** The version of the trust document (R/trust/N.cbor) the summary is signed under; absent: none (docs/formats.md §15). */
  trustVersion?: number;
}

export class SummaryFormatError extends Error {
  override name = 'SummaryFormatError';
}
const fail = (m: string): never => {
  throw new SummaryFormatError(m);
};

/** The name of a delta's directory under R/deltas/: FROM-TO, FROM being 'empty' for a from-scratch delta. */
export function deltaName(d: { from: ObjectId | null; to: ObjectId }): string {
  return `${d.from ?? 'empty'}-${d.to}`;
}

/** The deltas a device at `from` can use to reach `to` (at most one, since names are unique). */
export function findDelta(summary: Summary, from: ObjectId | null, to: ObjectId): SummaryDelta | null {
  return summary.deltas.find((d) => d.from === from && d.to === to) ?? null;
}

export function encodeSummary(s: Summary): Uint8Array {
  // A Map, so a ref named like an Object.prototype member ('__proto__') is a key like any other.
  const refs = new Map<string, CborValue>();
  for (const [name, r] of Object.entries(s.refs)) {
    const ref: Record<string, CborValue> = { commit: idToBytes(r.commit), version: r.version, timestamp: r.timestamp };
    if (r.barriers?.length) ref.barriers = r.barriers.map((b) => ({ commit: idToBytes(b.commit), version: b.version, timestamp: b.timestamp, ...(b.release !== undefined ? { release: b.release } : {}) }));
    refs.set(name, ref);
  }
  const deltas = [...s.deltas].sort((a, b) => (deltaName(a) < deltaName(b) ? -1 : deltaName(a) > deltaName(b) ? 1 : 0));
  return encodeCanonical({
    ...(s.trustVersion !== undefined ? { trust_version: s.trustVersion } : {}),
    format: SUMMARY_FORMAT,
    serial: s.serial,
    created: s.created,
    expires: s.expires,
    refs,
    deltas: deltas.map((d) => ({
      from: d.from === null ? null : idToBytes(d.from),
      to: idToBytes(d.to),
      bytes: d.bytes,
      envelope: { size: d.envelope.size, sha256: idToBytes(d.envelope.sha256) },
      parts: d.parts.map((p) => ({ size: p.size, sha256: idToBytes(p.sha256) })),
    })),
    ...(s.collectionId === undefined ? {} : { collection_id: s.collectionId }),
  });
}

const uint = (v: CborValue | undefined, what: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${what} is not an unsigned integer`));
const id32 = (v: CborValue | undefined, what: string): ObjectId => (v instanceof Uint8Array && v.length === 32 ? bytesToId(v) : fail(`${what} is not a 32-byte id`));
const map = (v: CborValue | undefined, what: string): Map<CborValue, CborValue> => (v instanceof Map ? v : fail(`${what} is not a map`));
const keys = (m: Map<CborValue, CborValue>, allowed: string[], what: string): void => {
  for (const k of m.keys()) if (typeof k !== 'string' || !allowed.includes(k)) fail(`${what} has an unknown key ${quash(String(k), 40)}`);
};
const sizeAndHash = (v: CborValue | undefined, what: string) => {
  const m = map(v, what);
  keys(m, ['size', 'sha256'], what);
  return { size: uint(m.get('size'), `${what} size`), sha256: id32(m.get('sha256'), `${what} sha256`) };
};

function decodeBarriers(v: CborValue | undefined, ref: string): SummaryBarrier[] {
  if (!Array.isArray(v)) fail(`${ref} barriers is not an array`);
  return (v as CborValue[]).map((value, i) => {
    const what = `${ref} barrier ${i}`;
    const b = map(value, what);
    keys(b, ['commit', 'version', 'timestamp', 'release'], what);
    const version = b.get('version');
    if (typeof version !== 'string') fail(`${what} version is not text`);
    const barrier: SummaryBarrier = { commit: id32(b.get('commit'), `${what} commit`), version: version as string, timestamp: uint(b.get('timestamp'), `${what} timestamp`) };
    if (b.has('release')) barrier.release = uint(b.get('release'), `${what} release`);
    return barrier;
  });
}

/** Decodes summary bytes (without checking any signature). @throws SummaryFormatError */
export function decodeSummary(bytes: Uint8Array): Summary {
  const m = map(decodeCanonical(bytes), 'summary (canonical CBOR)');
  if (m.get('format') !== SUMMARY_FORMAT) fail(`summary format ${quash(String(m.get('format')), 20)} is not ${SUMMARY_FORMAT}`);
  keys(m, ['format', 'serial', 'created', 'expires', 'refs', 'deltas', 'collection_id', 'trust_version'], 'summary');
  const collectionId = m.get('collection_id');
  if (collectionId !== undefined && typeof collectionId !== 'string') fail('summary collection_id is not text');
  // No prototype: a served ref named '__proto__' or 'constructor' is data, never a member lookup.
  const refs: Record<string, SummaryRef> = Object.create(null);
  for (const [name, value] of map(m.get('refs'), 'summary refs')) {
    if (typeof name !== 'string' || name === '') fail('summary has a ref name that is not a non-empty text string');
    const what = `ref '${quash(name as string)}'`;
    const r = map(value, what);
    keys(r, ['commit', 'version', 'timestamp', 'barriers'], what);
    const version = r.get('version');
    if (typeof version !== 'string') fail(`${what} version is not text`);
    refs[name as string] = { commit: id32(r.get('commit'), `${what} commit`), version: version as string, timestamp: uint(r.get('timestamp'), `${what} timestamp`) };
    if (r.has('barriers')) refs[name as string].barriers = decodeBarriers(r.get('barriers'), what);
  }
  const list = m.get('deltas');
  if (!Array.isArray(list)) fail('summary deltas is not an array');
  const deltas = (list as CborValue[]).map((v, i): SummaryDelta => {
    const what = `delta ${i}`;
    const d = map(v, what);
    keys(d, ['from', 'to', 'bytes', 'envelope', 'parts'], what);
    const parts = d.get('parts');
    if (!Array.isArray(parts)) fail(`${what} parts is not an array`);
    const delta: SummaryDelta = {
      from: d.get('from') === null ? null : id32(d.get('from'), `${what} from`),
      to: id32(d.get('to'), `${what} to`),
      bytes: uint(d.get('bytes'), `${what} bytes`),
      envelope: sizeAndHash(d.get('envelope'), `${what} envelope`),
      parts: (parts as CborValue[]).map((p, j) => sizeAndHash(p, `${what} part ${j}`)),
    };
    if (delta.bytes !== delta.envelope.size + delta.parts.reduce((n, p) => n + p.size, 0)) fail(`${what} bytes is not the sum of its envelope and parts`);
    return delta;
  });
  const names = deltas.map(deltaName);
  if (new Set(names).size !== names.length) fail('summary lists a delta twice');
  const summary: Summary = { serial: uint(m.get('serial'), 'serial'), created: uint(m.get('created'), 'created'), expires: uint(m.get('expires'), 'expires'), refs, deltas, ...(collectionId === undefined ? {} : { collectionId: collectionId as string }) };
  if (m.has('trust_version')) summary.trustVersion = uint(m.get('trust_version'), 'trust_version');
  if (summary.expires < summary.created) fail('summary expires before it was created');
  return summary;
}

/** The message a summary signature signs: the domain, then SHA-256 of the summary bytes. */
export function summarySigningMessage(summaryBytes: Uint8Array): Uint8Array {
  return Buffer.concat([DOMAIN, Buffer.from(sha256(summaryBytes), 'hex')]);
}

/** Signs summary bytes with each key; returns the summary.sig bytes (one entry per key, sorted by key). */
export async function signSummary(summaryBytes: Uint8Array, keys: SecretKey[]): Promise<Uint8Array> {
  const message = summarySigningMessage(summaryBytes);
  const byKey = new Map<string, Signature>();
  for (const k of keys) byKey.set(Buffer.from(k.publicKey).toString('hex'), { key: k.publicKey, sig: await ed.signAsync(message, k.seed) });
  return encodeSignatures([...byKey.values()].sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key))));
}

export interface VerifyOptions {
  /** Public keys the device trusts for this remote. */
  trusted: Uint8Array[];
  /** The time of this update cycle, seconds since the epoch (taken once per cycle, as TUF does). */
  now: number;
  /** The highest serial this device accepted before (persisted by the caller); none on first contact. */
  lastSerial?: number;
  /** Names the summary's origin in messages (a URL or a path). */
  source?: string;
  /** Valid signatures by distinct trusted keys needed (the trust document's summary threshold); 1 when absent. */
  threshold?: number;
}

/**
 * Checks a summary and returns it decoded. In this order, so nothing unsigned is parsed:
 * the signature file, a valid signature by a trusted key over these exact bytes, then the
 * content, the expiry and the serial.
 *
 * @throws SIGNATURE_MISSING (no signature), SIGNATURE_INVALID (data.reason: 'malformed-signatures',
 *   'untrusted', 'modified', 'malformed', 'expired', 'rollback')
 * @example
 *   const summary = await verifySummary(bytes, sigBytes, { trusted: [pub], now: Math.floor(Date.now() / 1000), lastSerial: 41 });
 */
export async function verifySummary(bytes: Uint8Array, sigBytes: Uint8Array | null, opts: VerifyOptions): Promise<Summary> {
  const source = opts.source ?? 'summary';
  const refuse = (reason: string, message: string, extra: Record<string, unknown> = {}, hint?: string) =>
    new LarchError('SIGNATURE_INVALID', `${source}: ${message}`, { hint, data: { reason, source, ...extra } });
  if (sigBytes === null || sigBytes.length === 0) {
    throw new LarchError('SIGNATURE_MISSING', `${source}: the summary is not signed (no summary.sig)`, { hint: "the vendor publishes it with 'larch publish --sign-key K'", data: { reason: 'unsigned', source } });
  }
  const sigs = decodeSignatures(sigBytes);
  if (sigs === null) throw refuse('malformed-signatures', 'summary.sig is not a valid signature file');
  if (sigs.length === 0) throw new LarchError('SIGNATURE_MISSING', `${source}: summary.sig holds no ed25519 signature`, { data: { reason: 'unsigned', source } });
  const message = summarySigningMessage(bytes);
  const trustedHex = new Set(opts.trusted.map((k) => Buffer.from(k).toString('hex')));
  // Each key counts once toward the threshold, however many entries it has.
  const byTrusted = sigs.filter((s, i) => trustedHex.has(Buffer.from(s.key).toString('hex')) && sigs.findIndex((o) => Buffer.from(o.key).equals(Buffer.from(s.key))) === i);
  if (byTrusted.length === 0) {
    const ids = sigs.map((s) => keyId(s.key));
    throw refuse('untrusted', `the summary is signed only by untrusted key(s) ${ids.join(', ')}`, { keys: ids }, "check that the device trusts the vendor's current public key");
  }
  const threshold = opts.threshold ?? 1;
  let validCount = 0;
  for (const s of byTrusted) {
    try {
      if (await ed.verifyAsync(s.sig, message, s.key)) validCount++;
    } catch {
      // a malformed point or signature is simply not valid
    }
    if (validCount >= threshold) break;
  }
  if (validCount > 0 && validCount < threshold) {
    throw refuse('threshold', `the summary is signed by ${validCount} trusted key(s), the trust document's summary role needs ${threshold}`, { keys: byTrusted.map((s) => keyId(s.key)), threshold }, 'the vendor signs the summary with enough summary-role keys (larch publish --sign-key K1 --sign-key K2)');
  }
  if (validCount === 0) {
    throw refuse('modified', 'the summary does not match its signature (modified, or summary and summary.sig from different publishes)', { keys: byTrusted.map((s) => keyId(s.key)) }, 'fetch both files again; if it persists, the server holds a tampered summary');
  }
  let summary: Summary;
  try {
    summary = decodeSummary(bytes);
  } catch (err) {
    if (err instanceof SummaryFormatError) throw refuse('malformed', `the signed summary is malformed: ${err.message}`, {}, 'the publisher wrote a summary this larch cannot read; ask the vendor to republish');
    throw err;
  }
  if (opts.now >= summary.expires) {
    throw refuse('expired', `the summary expired at ${isoTime(summary.expires)} (now ${isoTime(opts.now)})`, { expires: summary.expires, now: opts.now }, "the server's summary is stale; ask the vendor to republish (larch publish)");
  }
  if (opts.lastSerial !== undefined && summary.serial < opts.lastSerial) {
    throw refuse('rollback', `the summary's serial ${summary.serial} is lower than ${opts.lastSerial}, the last one this device accepted`, { serial: summary.serial, lastSerial: opts.lastSerial }, 'the server offers an older summary than this device has seen (a rollback or a stale mirror); nothing was changed');
  }
  return summary;
}

export function isoTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

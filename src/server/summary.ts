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
 *      "refs": {NAME: {"commit": bstr(32), "version": tstr, "timestamp": uint}},
 *      "deltas": [{"from": bstr(32) | null, "to": bstr(32), "bytes": uint,
 *                  "envelope": {"size": uint, "sha256": bstr(32)},
 *                  "parts": [{"size": uint, "sha256": bstr(32)}]}]}
 *   R/summary.sig  canonical CBOR array of {"alg": "ed25519", "key": bstr(32), "sig": bstr(64)}
 *                  (as a commit's .sig, §4), over "larch-summary-v1:" ‖ SHA-256(summary bytes)
 */
import * as ed from '@noble/ed25519';
import { LarchError, quash } from '../errors.ts';
import { sha256 } from '../store/_hash.ts';
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
  const refs: Record<string, CborValue> = {};
  for (const [name, r] of Object.entries(s.refs)) refs[name] = { commit: idToBytes(r.commit), version: r.version, timestamp: r.timestamp };
  const deltas = [...s.deltas].sort((a, b) => (deltaName(a) < deltaName(b) ? -1 : deltaName(a) > deltaName(b) ? 1 : 0));
  return encodeCanonical({
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

/** Decodes summary bytes (without checking any signature). @throws SummaryFormatError */
export function decodeSummary(bytes: Uint8Array): Summary {
  const m = map(decodeCanonical(bytes), 'summary (canonical CBOR)');
  if (m.get('format') !== SUMMARY_FORMAT) fail(`summary format ${quash(String(m.get('format')), 20)} is not ${SUMMARY_FORMAT}`);
  keys(m, ['format', 'serial', 'created', 'expires', 'refs', 'deltas'], 'summary');
  const refs: Record<string, SummaryRef> = {};
  for (const [name, value] of map(m.get('refs'), 'summary refs')) {
    if (typeof name !== 'string' || name === '') fail('summary has a ref name that is not a non-empty text string');
    const what = `ref '${quash(name as string)}'`;
    const r = map(value, what);
    keys(r, ['commit', 'version', 'timestamp'], what);
    const version = r.get('version');
    if (typeof version !== 'string') fail(`${what} version is not text`);
    refs[name as string] = { commit: id32(r.get('commit'), `${what} commit`), version: version as string, timestamp: uint(r.get('timestamp'), `${what} timestamp`) };
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
  const summary = { serial: uint(m.get('serial'), 'serial'), created: uint(m.get('created'), 'created'), expires: uint(m.get('expires'), 'expires'), refs, deltas };
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
  const byTrusted = sigs.filter((s) => trustedHex.has(Buffer.from(s.key).toString('hex')));
  if (byTrusted.length === 0) {
    const ids = sigs.map((s) => keyId(s.key));
    throw refuse('untrusted', `the summary is signed only by untrusted key(s) ${ids.join(', ')}`, { keys: ids }, "check that the device trusts the vendor's current public key");
  }
  let valid = false;
  for (const s of byTrusted) {
    try {
      if (await ed.verifyAsync(s.sig, message, s.key)) valid = true;
    } catch {
      // a malformed point or signature is simply not valid
    }
    if (valid) break;
  }
  if (!valid) {
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

/**
 * Files of an archive repo over MQTT (docs/formats.md §13.8): a device asks for a byte range of
 * one repo file, a responder answers with the bytes. Pure: the request and response bytes, and
 * the paths a responder may serve.
 *
 *   request   topic larch/v1/fetch, QoS 1, not retained, MQTT 5 properties:
 *             response topic  larch/v1/fetch/reply/CLIENT (the device's own reply topic)
 *             correlation data  opaque bytes (1-64), echoed in the response
 *             payload  {"format":1,"path":P,"offset":N,"length":N}   (UTF-8 JSON)
 *   response  topic = the request's response topic, QoS 1, not retained, same correlation data
 *             payload  HEADER "\n" BYTES, HEADER one line of JSON:
 *             {"format":1,"status":"ok","size":S,"offset":N,"length":L}    BYTES = L bytes from N
 *             {"format":1,"status":"not-found"|"bad-request"|"error","message":TEXT}  no bytes
 *
 * Responders subscribe to $share/larch/larch/v1/fetch (MQTT 5 shared subscription), so the
 * broker hands each request to one of them; they keep no per-device state, so any may answer
 * any request, and a device resumes a file from the length it holds, whoever answers.
 */
import { LarchError } from '../errors.ts';
import { TOPIC_ROOT } from './format.ts';

export const FETCH_FORMAT = 1;
export const FETCH_TOPIC = `${TOPIC_ROOT}/fetch`;
/** Shared subscription group: every responder subscribes to it, each request goes to one. */
export const FETCH_SHARE_GROUP = 'larch';
export const FETCH_SHARED_SUBSCRIPTION = `$share/${FETCH_SHARE_GROUP}/${FETCH_TOPIC}`;
export const FETCH_REPLY_PREFIX = `${TOPIC_ROOT}/fetch/reply/`;
/** Bytes a device asks for at once (64 KiB: small enough for any broker's message limit). */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;
/** The most a responder sends in one response, whatever is asked. */
export const MAX_CHUNK_BYTES = 256 * 1024;
/** Largest request payload a responder reads. */
export const MAX_REQUEST_BYTES = 1024;
const MAX_CORRELATION_BYTES = 64;

/**
 * The repo files that may be fetched, and nothing else: no '..', no other directory, so a
 * request cannot read outside the repo (symlinks are checked by the responder as well).
 */
const PATH_RE = /^(summary|summary\.sig|trust\/[1-9][0-9]{0,15}\.cbor|deltas\/(?:empty|[0-9a-f]{64})-[0-9a-f]{64}\/(?:envelope|part-(?:0|[1-9][0-9]{0,8}))|objects\/[0-9a-f]{2}\/[0-9a-f]{62}\.(?:commit|sig|dirtree|dirmeta|filez))$/;

export function isFetchablePath(path: string): boolean {
  return PATH_RE.test(path);
}

/** A device's reply topic: one topic level from its client id (letters, digits, . _ -). */
export function replyTopic(clientId: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(clientId)) throw new RangeError(`'${clientId}' cannot be a reply topic level`);
  return FETCH_REPLY_PREFIX + clientId;
}

/** A responder only publishes to reply topics (never to an announcement or command topic). */
export function isReplyTopic(topic: string): boolean {
  return topic.startsWith(FETCH_REPLY_PREFIX) && /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(topic.slice(FETCH_REPLY_PREFIX.length));
}

export function isValidCorrelation(c: Uint8Array | undefined): c is Uint8Array {
  return c !== undefined && c.length >= 1 && c.length <= MAX_CORRELATION_BYTES;
}

export interface FetchRequest {
  path: string;
  offset: number;
  length: number;
}

export function encodeRequest(r: FetchRequest): Uint8Array {
  return Buffer.from(JSON.stringify({ format: FETCH_FORMAT, path: r.path, offset: r.offset, length: r.length }), 'utf8');
}

/** The request, or why it is refused (bad-request). */
export function decodeRequest(payload: Uint8Array): FetchRequest | { error: string; status: 'bad-request' | 'not-found' } {
  const bad = (error: string) => ({ error, status: 'bad-request' as const });
  if (payload.length > MAX_REQUEST_BYTES) return bad(`request is over ${MAX_REQUEST_BYTES} bytes`);
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return bad('request is not JSON');
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return bad('request is not a JSON object');
  const r = o as Record<string, unknown>;
  if (r.format !== FETCH_FORMAT) return bad(`request format is not ${FETCH_FORMAT}`);
  if (typeof r.path !== 'string' || !isFetchablePath(r.path)) return { error: 'no such file (not a path devices may fetch)', status: 'not-found' };
  const uint = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!uint(r.offset)) return bad('offset is not an unsigned integer');
  if (!uint(r.length) || (r.length as number) < 1) return bad('length is not a positive integer');
  return { path: r.path, offset: r.offset as number, length: Math.min(r.length as number, MAX_CHUNK_BYTES) };
}

export type FetchResponse =
  | { status: 'ok'; size: number; offset: number; bytes: Uint8Array }
  | { status: 'not-found' | 'bad-request' | 'error'; message: string };

export function encodeResponse(r: FetchResponse): Uint8Array {
  if (r.status === 'ok') {
    const head = JSON.stringify({ format: FETCH_FORMAT, status: 'ok', size: r.size, offset: r.offset, length: r.bytes.length });
    return Buffer.concat([Buffer.from(head + '\n', 'utf8'), r.bytes]);
  }
  return Buffer.from(JSON.stringify({ format: FETCH_FORMAT, status: r.status, message: r.message }) + '\n', 'utf8');
}

/**
 * @throws INVALID_INPUT when the response is malformed (the caller asks again). The header is any
 * JSON a responder sent: not JSON, or `null`, threw SyntaxError / TypeError here (found by fuzzing).
 */
export function decodeResponse(payload: Uint8Array): FetchResponse {
  const bad = (why: string): never => {
    throw new LarchError('INVALID_INPUT', `MQTT chunk answer: ${why}`, { hint: 'the responder sent a malformed answer; the device asks again', data: { reason: why } });
  };
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  const nl = buf.indexOf(0x0a);
  if (nl < 0 || nl > 1024) bad('response has no header line');
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.subarray(0, nl).toString('utf8'));
  } catch {
    return bad('response header is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return bad('response header is not a JSON object');
  const h = parsed as Record<string, unknown>;
  if (h.format !== FETCH_FORMAT) bad(`response format is not ${FETCH_FORMAT}`);
  const uint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (h.status === 'ok') {
    if (!uint(h.size) || !uint(h.offset) || !uint(h.length)) return bad('response header fields are not unsigned integers');
    const bytes = buf.subarray(nl + 1);
    if (bytes.length !== h.length) bad(`response carries ${bytes.length} bytes, its header says ${h.length}`);
    return { status: 'ok', size: h.size, offset: h.offset, bytes };
  }
  if (h.status === 'not-found' || h.status === 'bad-request' || h.status === 'error') return { status: h.status, message: typeof h.message === 'string' ? h.message : '' };
  return bad('response status is unknown');
}

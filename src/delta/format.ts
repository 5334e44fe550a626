/**
 * The static delta format: a signed superblock, then parts. Pure: bytes in and out.
 * See docs/formats.md §8.
 *
 * Delta file (`larch delta generate --out`, and what `delta apply` reads):
 *   "LARCHDLT" (8 bytes) ‖ u32be format (1, 2 or 3) ‖ u32be N ‖ envelope (N bytes) ‖ part 0 ‖ part 1 ‖ …
 *   Format 2 is format 1 plus control records of type 4 (a file rebuilt through its view, §8.6);
 *   format 3 is format 2 with each part's diff bytes zero-run coded into two streams (§8.3).
 *   envelope  = canonical CBOR {"superblock": bstr, "signatures": [{"alg","key","sig"}...]}
 *   signature = ed25519 over "larch-delta-v1:" ‖ SHA-256(superblock bytes)
 *
 * Superblock (canonical CBOR map):
 *   {"format": 1 | 2 | 3, "from": bstr(32) | null, "to": bstr(32), "commit": bstr (the commit object of
 *    `to`), "commit_sigs": bstr | null (its .sig file), "created": uint seconds,
 *    "parts": [{"size": uint, "sha256": bstr(32), "raw": uint, "objects": [[kind, bstr(32)]...],
 *               "scratch": uint (format 2 on, optional: the largest source view a record of the part expands)}]}
 *   kind: 0 file, 1 dirtree, 2 dirmeta, 3 commit (only 0-2 appear in parts)
 *
 * Part (the bytes `size` and `sha256` describe):
 *   u32be C ‖ u32be D ‖ u32be L ‖ control (C bytes) ‖ diff (D bytes) ‖ literal (L bytes)
 *   format 3: u32be C ‖ u32be R ‖ u32be D ‖ u32be L ‖ control ‖ runs (R bytes) ‖ diff ‖ literal
 *   each of the three is a brotli stream (RFC 7932). Decompressed:
 *   control = records (see "control records" below), one per object of the part's list, in
 *             order, each followed by op records when it is a patched file
 *   diff    = the bsdiff "diff" bytes of all patches, in order (added bytewise to the source)
 *   literal = metadata bytes, file contents and bsdiff "extra" bytes, in order
 */
import { type CborValue, decodeCanonical, encodeCanonical } from '../store/cbor.ts';
import { type ObjectId, type ObjectKind, bytesToId, idToBytes, MAX_FILE_HEADER_BYTES, MAX_METADATA_BYTES } from '../store/object.ts';
import { MAX_VIEW_BYTES } from './view/deflate.ts';
import { LZ4_LEGACY_BLOCK_BYTES } from './view/lz4.ts';
import type { Segment } from './view/segment.ts';

export const DELTA_MAGIC = Buffer.from('LARCHDLT', 'ascii');
/** The format of a delta without view records: every larch since 0.1 reads it. */
export const DELTA_FORMAT = 1;
/** The newest format this larch reads and writes (2: view records, §8.6; 3: zero-run coded diff bytes, §8.3). */
export const DELTA_FORMAT_MAX = 3;
export type DeltaFormatVersion = 1 | 2 | 3;
/** Most segments a view record lists per side. */
export const MAX_SEGMENTS = 4096;
/** Largest envelope (superblock + signatures) we read: it lists every object of the update. */
export const MAX_ENVELOPE_BYTES = 64 * 1024 * 1024;
/** Largest control record: a file header (1 MiB) plus ids and framing. */
export const MAX_RECORD_BYTES = MAX_FILE_HEADER_BYTES + 4096;
export const MAX_OPS_PER_RECORD = 4096;
/** The file preamble: magic (8), format (u32be), envelope length (u32be). */
export const PREAMBLE_BYTES = 16;
/** A part's header: the stream lengths, u32be each (three streams; four from format 3). */
export const PART_HEADER_BYTES = 12;
export const partHeaderBytes = (format: DeltaFormatVersion) => (format >= 3 ? 16 : PART_HEADER_BYTES);
/** A control record's length prefix (u32be). */
export const RECORD_LENGTH_BYTES = 4;

export const KIND_CODES: Record<ObjectKind, number> = { file: 0, dirtree: 1, dirmeta: 2, commit: 3 };
export const KIND_NAMES: ObjectKind[] = ['file', 'dirtree', 'dirmeta', 'commit'];

export interface PartInfo {
  size: number;
  sha256: string;
  raw: number;
  objects: { kind: ObjectKind; id: ObjectId }[];
  /** Format 2: the largest source view (bytes) a record of this part writes to R/tmp/ (0: none). */
  scratch?: number;
}

export interface Superblock {
  format: DeltaFormatVersion;
  from: ObjectId | null;
  to: ObjectId;
  commit: Uint8Array;
  commitSigs: Uint8Array | null;
  created: number;
  parts: PartInfo[];
}

export class DeltaFormatError extends Error {
  override name = 'DeltaFormatError';
}
/** A well-formed delta of a format newer than this larch reads. */
export class DeltaUnsupportedError extends DeltaFormatError {
  override name = 'DeltaUnsupportedError';
  constructor(readonly format: number) {
    super(`delta format ${format} is newer than this larch reads (1-${DELTA_FORMAT_MAX})`);
  }
}
const fail = (m: string): never => {
  throw new DeltaFormatError(m);
};

export function encodeSuperblock(sb: Superblock): Uint8Array {
  return encodeCanonical({
    format: sb.format,
    from: sb.from === null ? null : idToBytes(sb.from),
    to: idToBytes(sb.to),
    commit: sb.commit,
    commit_sigs: sb.commitSigs,
    created: sb.created,
    parts: sb.parts.map((p) => ({
      size: p.size,
      sha256: idToBytes(p.sha256),
      raw: p.raw,
      objects: p.objects.map((o) => [KIND_CODES[o.kind], idToBytes(o.id)]),
      // Only in format 2, and only when non-zero: a format-1 superblock stays byte-identical.
      ...(sb.format >= 2 && p.scratch ? { scratch: p.scratch } : {}),
    })),
  });
}

const id32 = (v: CborValue | undefined, what: string): ObjectId => (v instanceof Uint8Array && v.length === 32 ? bytesToId(v) : fail(`${what} is not a 32-byte id`));
const uint = (v: CborValue | undefined, what: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${what} is not an unsigned integer`));

/** The format a preamble or superblock declares. @throws DeltaUnsupportedError when newer than maxFormat */
function checkFormat(v: unknown, what: string, maxFormat: number): DeltaFormatVersion {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > maxFormat && v <= 0xffffffff) throw new DeltaUnsupportedError(v);
  if (v !== 1 && v !== 2 && v !== 3) return fail(`${what} format ${String(v)} is not ${DELTA_FORMAT}-${maxFormat}`);
  return v;
}

/** `maxFormat` plays an older reader in tests (1: larch before view records). */
export function decodeSuperblock(bytes: Uint8Array, maxFormat: number = DELTA_FORMAT_MAX): Superblock {
  const m = decodeCanonical(bytes);
  if (!(m instanceof Map)) return fail('superblock is not canonical CBOR map');
  const format = checkFormat(m.get('format'), 'superblock', maxFormat);
  const parts = m.get('parts');
  if (!Array.isArray(parts)) fail('superblock parts is not an array');
  const commit = m.get('commit');
  const sigs = m.get('commit_sigs');
  if (!(commit instanceof Uint8Array)) fail('superblock commit is not a byte string');
  if (sigs !== null && !(sigs instanceof Uint8Array)) fail('superblock commit_sigs is not a byte string or null');
  return {
    format,
    from: m.get('from') === null ? null : id32(m.get('from'), 'from'),
    to: id32(m.get('to'), 'to'),
    commit: commit as Uint8Array,
    commitSigs: (sigs as Uint8Array | null) ?? null,
    created: uint(m.get('created'), 'created'),
    parts: (parts as CborValue[]).map((p, i) => {
      if (!(p instanceof Map)) return fail(`part ${i} is not a map`);
      const objects = p.get('objects');
      if (!Array.isArray(objects)) return fail(`part ${i} objects is not an array`);
      return {
        size: uint(p.get('size'), `part ${i} size`),
        sha256: id32(p.get('sha256'), `part ${i} sha256`),
        raw: uint(p.get('raw'), `part ${i} raw`),
        ...(format >= 2 && p.has('scratch') ? { scratch: uint(p.get('scratch'), `part ${i} scratch`) } : {}),
        objects: objects.map((o) => {
          if (!Array.isArray(o) || o.length !== 2 || typeof o[0] !== 'number' || o[0] < 0 || o[0] > 2) return fail(`part ${i} has a malformed object entry`);
          return { kind: KIND_NAMES[o[0] as number], id: id32(o[1], `part ${i} object id`) };
        }),
      };
    }),
  };
}

/** The message a delta signature signs. */
export function deltaSigningMessage(superblockSha256: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from('larch-delta-v1:', 'ascii'), superblockSha256]);
}

export function encodeEnvelope(superblock: Uint8Array, signatures: Uint8Array): Uint8Array {
  const sigs = decodeCanonical(signatures);
  return encodeCanonical({ superblock, signatures: (sigs ?? []) as CborValue });
}

export function decodeEnvelope(bytes: Uint8Array): { superblock: Uint8Array; signatures: Uint8Array } {
  const m = decodeCanonical(bytes);
  if (!(m instanceof Map) || !(m.get('superblock') instanceof Uint8Array) || !Array.isArray(m.get('signatures'))) return fail('delta envelope is malformed');
  return { superblock: m.get('superblock') as Uint8Array, signatures: encodeCanonical(m.get('signatures') as CborValue) };
}

/** The 16-byte file preamble: magic, format, envelope length. */
export function encodePreamble(envelopeLength: number, format: DeltaFormatVersion = DELTA_FORMAT): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  DELTA_MAGIC.copy(b, 0);
  b.writeUInt32BE(format, 8);
  b.writeUInt32BE(envelopeLength, 12);
  return b;
}

export function decodePreamble(b: Uint8Array, maxFormat: number = DELTA_FORMAT_MAX): number {
  if (b.length < PREAMBLE_BYTES || !Buffer.from(b.subarray(0, 8)).equals(DELTA_MAGIC)) return fail('not a larch delta (bad magic)');
  const view = Buffer.from(b.buffer, b.byteOffset, b.length);
  checkFormat(view.readUInt32BE(8), 'delta', maxFormat);
  const n = view.readUInt32BE(12);
  if (n > MAX_ENVELOPE_BYTES) fail(`delta envelope of ${n} bytes is over the ${MAX_ENVELOPE_BYTES}-byte limit`);
  return n;
}

/** The size of a one-file delta: preamble, envelope, parts. */
export function deltaFileBytes(envelopeLength: number, parts: readonly Pick<PartInfo, 'size'>[]): number {
  return PREAMBLE_BYTES + envelopeLength + parts.reduce((n, p) => n + p.size, 0);
}

// ---- parts --------------------------------------------------------------------

/**
 * The compressed lengths of a part's streams, in the order they follow the header: control,
 * runs (format 3; 0 before, where the part has no such stream), diff, literal.
 */
export interface PartStreams {
  control: number;
  runs: number;
  diff: number;
  literal: number;
}

export function encodePartHeader(p: PartStreams, format: DeltaFormatVersion): Buffer {
  if (format < 3 && p.runs !== 0) throw new RangeError(`a format-${format} part has no runs stream`);
  const lengths = format >= 3 ? [p.control, p.runs, p.diff, p.literal] : [p.control, p.diff, p.literal];
  const b = Buffer.alloc(partHeaderBytes(format));
  lengths.forEach((n, i) => b.writeUInt32BE(n, 4 * i));
  return b;
}

/** Reads a part header of a delta of `format`; the streams must fill the part's `size` exactly. */
export function decodePartHeader(b: Uint8Array, size: number, format: DeltaFormatVersion): PartStreams {
  const headerBytes = partHeaderBytes(format);
  if (b.length < headerBytes) return fail(`part header is ${b.length} of ${headerBytes} bytes`);
  const view = Buffer.from(b.buffer, b.byteOffset, b.length);
  const p = format >= 3 ? { control: view.readUInt32BE(0), runs: view.readUInt32BE(4), diff: view.readUInt32BE(8), literal: view.readUInt32BE(12) } : { control: view.readUInt32BE(0), runs: 0, diff: view.readUInt32BE(4), literal: view.readUInt32BE(8) };
  if (headerBytes + p.control + p.runs + p.diff + p.literal !== size) fail('stream lengths do not add up to its size');
  return p;
}

/** A part's bytes: its header, then the compressed streams (`runs` only in format 3). */
export function encodePart(format: DeltaFormatVersion, control: Uint8Array, runs: Uint8Array | null, diff: Uint8Array, literal: Uint8Array): Buffer {
  const streams = { control: control.length, runs: runs?.length ?? 0, diff: diff.length, literal: literal.length };
  return Buffer.concat([encodePartHeader(streams, format), control, ...(runs ? [runs] : []), diff, literal]);
}

// ---- control records --------------------------------------------------------
// Each record is u32be length ‖ body. Object records are canonical CBOR arrays and stand for
// the next object of the part's list (so they carry no id): [1|2, length] for a dirtree or
// dirmeta, [0, header, source id | null] for a file. After a patched file come op records,
// binary for size (columnar varints compress 20% better than CBOR, measured on libcrypto):
// [4, header, source id, src segments, dst segments] (format 2) is a file whose patch runs
// between views (§8.6): the ops read the source's view and write the new file's view.
//   LEB128 count ‖ count × LEB128 diffLen ‖ count × LEB128 extraLen ‖ count × zigzag-LEB128 seek
// and an op record with count 0 ends the patch.

export type ControlRecord =
  | { type: 'metadata'; kind: 'dirtree' | 'dirmeta'; length: number }
  | { type: 'file'; header: Uint8Array; source: ObjectId | null }
  | { type: 'view-file'; header: Uint8Array; source: ObjectId; src: Segment[]; dst: Segment[] }
  | { type: 'ops'; ops: [number, number, number][] };

const SEGMENT_CODES = { raw: 0, deflate: 1, 'lz4-legacy': 2 } as const;

function encodeSegment(s: Segment): CborValue {
  if (s.codec === 'raw') return [SEGMENT_CODES.raw, s.n];
  if (s.codec === 'deflate') return [SEGMENT_CODES.deflate, s.n, s.m];
  return [SEGMENT_CODES['lz4-legacy'], s.n, s.m, s.level, s.blocks];
}

/**
 * A segment list of a view record, with every check that needs no other data: shapes, counts,
 * the view's size limit, an LZ4 frame whose blocks add up to its n and cover its m.
 */
function decodeSegments(v: CborValue | undefined, what: string): Segment[] {
  if (!Array.isArray(v) || v.length === 0) return fail(`${what} is not a non-empty array`);
  if (v.length > MAX_SEGMENTS) fail(`${what} has ${v.length} entries, over ${MAX_SEGMENTS}`);
  let m = 0;
  const out = v.map((e, i): Segment => {
    const at = `${what} entry ${i}`;
    if (!Array.isArray(e)) return fail(`${at} is not an array`);
    const n = uint(e[1], `${at} size`);
    if (e[0] === SEGMENT_CODES.raw && e.length === 2) {
      m += n;
      return { codec: 'raw', n };
    }
    if (e[0] === SEGMENT_CODES.deflate && e.length === 3) {
      const vm = uint(e[2], `${at} view size`);
      m += vm;
      return { codec: 'deflate', n, m: vm };
    }
    if (e[0] === SEGMENT_CODES['lz4-legacy'] && e.length === 5) {
      const vm = uint(e[2], `${at} view size`);
      const level = uint(e[3], `${at} level`);
      if (level > 12) fail(`${at} level ${level} is not 0-12`);
      const blocks = e[4];
      const count = Math.ceil(vm / LZ4_LEGACY_BLOCK_BYTES);
      if (!Array.isArray(blocks) || blocks.length !== count) return fail(`${at} lists ${Array.isArray(blocks) ? blocks.length : 'no'} blocks for ${vm} decoded bytes (${count} expected)`);
      const sizes = blocks.map((c, k) => uint(c, `${at} block ${k}`));
      if (4 + sizes.reduce((a, c) => a + 4 + c, 0) !== n) fail(`${at} blocks do not add up to its ${n} bytes`);
      m += vm;
      return { codec: 'lz4-legacy', n, m: vm, level, blocks: sizes };
    }
    return fail(`${at} is not a raw, deflate or lz4 segment`);
  });
  if (m > MAX_VIEW_BYTES) fail(`${what} describes a view of ${m} bytes, over the ${MAX_VIEW_BYTES}-byte limit`);
  return out;
}

function frame(body: Uint8Array): Uint8Array {
  const out = Buffer.alloc(RECORD_LENGTH_BYTES + body.length);
  out.writeUInt32BE(body.length, 0);
  out.set(body, RECORD_LENGTH_BYTES);
  return out;
}

/** The body length a record's prefix declares. @throws DeltaFormatError over MAX_RECORD_BYTES */
export function decodeRecordLength(prefix: Uint8Array): number {
  const n = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.length).readUInt32BE(0);
  if (n > MAX_RECORD_BYTES) fail(`control record of ${n} bytes is over the limit`);
  return n;
}

function pushVarint(out: number[], v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`varint ${v} out of range`);
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

const zigzag = (v: number) => (v >= 0 ? v * 2 : -v * 2 - 1);
const unzigzag = (v: number) => (v % 2 === 0 ? v / 2 : -(v + 1) / 2);

export function encodeRecord(r: ControlRecord): Uint8Array {
  if (r.type === 'ops') {
    const out: number[] = [];
    pushVarint(out, r.ops.length);
    for (const [d] of r.ops) pushVarint(out, d);
    for (const [, e] of r.ops) pushVarint(out, e);
    for (const [, , s] of r.ops) pushVarint(out, zigzag(s));
    return frame(Uint8Array.from(out));
  }
  const value: CborValue =
    r.type === 'metadata'
      ? [KIND_CODES[r.kind], r.length]
      : r.type === 'view-file'
        ? [4, r.header, idToBytes(r.source), r.src.map(encodeSegment), r.dst.map(encodeSegment)]
        : [0, r.header, r.source === null ? null : idToBytes(r.source)];
  return frame(encodeCanonical(value));
}

/** Decodes a LEB128 list body; refuses overlong or truncated input. */
function decodeOps(body: Uint8Array): [number, number, number][] {
  let at = 0;
  const next = (): number => {
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (at >= body.length) return fail('op record ends inside a number');
      const b = body[at++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) fail('op value too large');
        return v;
      }
      scale *= 0x80;
    }
    return fail('op value longer than 8 bytes');
  };
  const count = next();
  if (count > MAX_OPS_PER_RECORD) fail(`op record has ${count} entries, over ${MAX_OPS_PER_RECORD}`);
  const ops: [number, number, number][] = Array.from({ length: count }, () => [0, 0, 0]);
  for (const op of ops) op[0] = next();
  for (const op of ops) op[1] = next();
  for (const op of ops) op[2] = unzigzag(next());
  if (at !== body.length) fail('op record has trailing bytes');
  return ops;
}

/**
 * Decodes one record body (without its length prefix). `expectOps` says whether op records are
 * due; `format` is the delta's (view records exist from format 2 on).
 */
export function decodeRecord(body: Uint8Array, expectOps: boolean, format: DeltaFormatVersion = DELTA_FORMAT_MAX): ControlRecord {
  if (expectOps) return { type: 'ops', ops: decodeOps(body) };
  const v = decodeCanonical(body);
  if (!Array.isArray(v)) return fail('control record is not an array');
  if (v[0] === 1 || v[0] === 2) {
    if (v.length !== 2) fail('metadata record is not [kind, length]');
    const length = uint(v[1], 'metadata length');
    // Checked here, before apply reads (allocates) that many bytes: a record may declare 2^40.
    if (length > MAX_METADATA_BYTES) fail(`metadata record declares ${length} bytes, over the ${MAX_METADATA_BYTES}-byte limit`);
    return { type: 'metadata', kind: v[0] === 1 ? 'dirtree' : 'dirmeta', length };
  }
  if (v[0] === 0) {
    if (v.length !== 3 || !(v[1] instanceof Uint8Array)) fail('file record is not [0, header, source]');
    return { type: 'file', header: v[1] as Uint8Array, source: v[2] === null ? null : id32(v[2], 'source id') };
  }
  if (v[0] === 4 && format >= 2) {
    if (v.length !== 5 || !(v[1] instanceof Uint8Array)) fail('view record is not [4, header, source, src, dst]');
    return { type: 'view-file', header: v[1] as Uint8Array, source: id32(v[2], 'source id'), src: decodeSegments(v[3], 'view record src'), dst: decodeSegments(v[4], 'view record dst') };
  }
  return fail(`control record kind ${String(v[0])} is unknown`);
}

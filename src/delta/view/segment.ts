/**
 * Where the compressed streams of a file are (docs/formats.md §8.6). Pure: the file's bytes in,
 * the streams' places out. Detection is by content, never by file name:
 *   - gzip (RFC 1952), one or more members from offset 0: the header and the 8-byte trailer of each
 *     member stay raw, its deflate body is a stream;
 *   - an x86 bzImage (the kernel): its payload, found through the boot protocol header, is a
 *     stream (an LZ4 legacy frame, minus Kbuild's 4-byte size_append; gzip; or one we cannot
 *     rebuild: xz, zstd, bzip2, lzma, lzo);
 *   - an initramfs made of uncompressed newc cpio archives (early microcode) followed by a
 *     compressed one: the cpio bytes stay raw, the stream after them is found as above;
 *   - a file that is one zstd, xz or bzip2 stream: found and reported, never expanded.
 * Nested containers (the cpio inside an initramfs, a tar inside a .gz) are not descended into.
 */
import { isBzImage } from './kind.ts';

/** A piece of a file's content: raw bytes, or one compressed stream and its view (§8.6). */
export type Segment =
  | { codec: 'raw'; n: number }
  /** n compressed bytes, m bytes of puff view (PV1). */
  | { codec: 'deflate'; n: number; m: number }
  /** n bytes of legacy frame (magic included), m decoded bytes, the level that rebuilds it (0 in a source's list), the compressed size of each block. */
  | { codec: 'lz4-legacy'; n: number; m: number; level: number; blocks: number[] };

export type StreamCodec = 'deflate' | 'lz4-legacy' | 'zstd' | 'xz' | 'bzip2' | 'lzma' | 'lzo';

/** A stream found in a file. For deflate only the start is known (the stream says where it ends). */
export interface StreamPlace {
  codec: StreamCodec;
  offset: number;
  /** Bytes the stream spans (known for a bzImage payload; null for deflate: the parser finds its end). */
  length: number | null;
  /** For deflate inside gzip: an 8-byte trailer follows, then possibly the next member. */
  gzipMember: boolean;
}

const FLG_FHCRC = 2;
const FLG_FEXTRA = 4;
const FLG_FNAME = 8;
const FLG_FCOMMENT = 16;

/**
 * The offset of a gzip member's deflate body, or null when `at` does not start a member we can
 * read (magic, CM 8, no reserved FLG bits, every field inside the file).
 */
export function gzipBodyOffset(b: Uint8Array, at: number): number | null {
  if (at + 10 > b.length || b[at] !== 0x1f || b[at + 1] !== 0x8b || b[at + 2] !== 8) return null;
  const flg = b[at + 3];
  if (flg & 0xe0) return null;
  let p = at + 10;
  if (flg & FLG_FEXTRA) {
    if (p + 2 > b.length) return null;
    p += 2 + (b[p] | (b[p + 1] << 8));
  }
  for (const bit of [FLG_FNAME, FLG_FCOMMENT]) {
    if (!(flg & bit)) continue;
    while (p < b.length && b[p] !== 0) p++;
    p++;
  }
  if (flg & FLG_FHCRC) p += 2;
  return p <= b.length ? p : null;
}

const u16 = (b: Uint8Array, at: number) => b[at] | (b[at + 1] << 8);
const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
const magicIs = (b: Uint8Array, at: number, bytes: number[]) => at + bytes.length <= b.length && bytes.every((x, i) => b[at + i] === x);

const LZ4_LEGACY = [0x02, 0x21, 0x4c, 0x18];
const XZ = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];
const BZIP2 = [0x42, 0x5a, 0x68];
const LZMA = [0x5d, 0x00, 0x00];
const LZO = [0x89, 0x4c, 0x5a, 0x4f];

/** The payload of an x86 bzImage (boot protocol 2.08+: payload_offset/length), or null. */
export function bzImagePayload(b: Uint8Array): { offset: number; length: number } | null {
  if (b.length < 0x250 || !isBzImage(b) || u16(b, 0x206) < 0x208) return null;
  const setupSects = b[0x1f1] || 4;
  const offset = (setupSects + 1) * 512 + u32(b, 0x248);
  const length = u32(b, 0x24c);
  return length > 0 && offset + length <= b.length ? { offset, length } : null;
}

/** The compressed streams of a file, in order, not overlapping. */
export function findStreams(b: Uint8Array): StreamPlace[] {
  if (gzipBodyOffset(b, 0) !== null) return [{ codec: 'deflate', offset: gzipBodyOffset(b, 0)!, length: null, gzipMember: true }];
  const payload = bzImagePayload(b);
  if (payload) {
    const { offset, length } = payload;
    // Kbuild appends the decompressed size (4 bytes) to the lz4 frame: it is not part of the frame.
    if (magicIs(b, offset, LZ4_LEGACY) && length > 8) return [{ codec: 'lz4-legacy', offset, length: length - 4, gzipMember: false }];
    const body = gzipBodyOffset(b, offset);
    if (body !== null) return [{ codec: 'deflate', offset: body, length: null, gzipMember: true }];
    const other = otherCodec(b, offset);
    return other ? [{ codec: other, offset, length, gzipMember: false }] : [];
  }
  const start = afterUncompressedCpio(b);
  if (start > 0 && gzipBodyOffset(b, start) !== null) return [{ codec: 'deflate', offset: gzipBodyOffset(b, start)!, length: null, gzipMember: true }];
  const whole = otherCodec(b, start);
  return whole ? [{ codec: whole, offset: start, length: b.length - start, gzipMember: false }] : [];
}

const NEWC_HEADER_BYTES = 110;
const pad4 = (n: number) => (n + 3) & ~3;

/**
 * Where the compressed part of an initramfs starts when it begins with uncompressed newc cpio
 * archives (initramfs-tools puts early microcode there): after each archive's TRAILER!!! entry and
 * the zero padding that follows it. 0 when the file does not start with a whole newc archive.
 */
export function afterUncompressedCpio(b: Uint8Array): number {
  let at = 0;
  let end = 0;
  // Entries are 4-byte aligned relative to the start of their archive.
  let base = 0;
  const align = (n: number) => base + pad4(n - base);
  while (at + NEWC_HEADER_BYTES <= b.length && magicIs(b, at, [0x30, 0x37, 0x30, 0x37, 0x30]) && (b[at + 5] === 0x31 || b[at + 5] === 0x32)) {
    const field = (i: number) => Number.parseInt(Buffer.from(b.subarray(at + 6 + i * 8, at + 14 + i * 8)).toString('latin1'), 16);
    const fileSize = field(6);
    const nameSize = field(11);
    if (!Number.isSafeInteger(fileSize) || !Number.isSafeInteger(nameSize) || nameSize < 1) return end;
    const name = Buffer.from(b.subarray(at + NEWC_HEADER_BYTES, at + NEWC_HEADER_BYTES + nameSize - 1)).toString('latin1');
    at = align(align(at + NEWC_HEADER_BYTES + nameSize) + fileSize);
    if (at > b.length) return end;
    if (name === 'TRAILER!!!') {
      while (at < b.length && b[at] === 0) at++;
      end = at;
      base = at;
    }
  }
  return end;
}

function otherCodec(b: Uint8Array, at: number): StreamCodec | null {
  if (magicIs(b, at, XZ)) return 'xz';
  if (magicIs(b, at, ZSTD)) return 'zstd';
  if (magicIs(b, at, BZIP2) && b[at + 3] >= 0x31 && b[at + 3] <= 0x39) return 'bzip2';
  if (magicIs(b, at, LZO)) return 'lzo';
  if (magicIs(b, at, LZMA)) return 'lzma';
  return null;
}

/** The sum of the compressed (n) and view (m) sizes of a segment list. */
export function segmentTotals(segments: readonly Segment[]): { n: number; m: number } {
  let n = 0;
  let m = 0;
  for (const s of segments) {
    n += s.n;
    m += s.codec === 'raw' ? s.n : s.m;
  }
  return { n, m };
}

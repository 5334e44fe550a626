/**
 * A file's view: its raw bytes as they are and each compressed stream in its expanded form
 * (deflate: the PV1 puff view; LZ4 legacy: the decoded bytes), so a delta diffs what changed
 * instead of compressed bytes that change all over (docs/formats.md §8.6). Three jobs:
 *   - describe (generator): find the streams, prove each can be rebuilt byte-exactly, and return
 *     the segment list and the view;
 *   - expandView (device): the view of a patch source, following the segments the delta gives;
 *   - foldView (device): the patched view back into the file's exact bytes, streaming.
 * The object id check after folding stays the last word on every byte.
 */
import { ByteReader } from '../byte-reader.ts';
import { type HuffScratch, MAX_VIEW_BYTES, huffDeflate, puffDeflate } from './deflate.ts';
import { ViewError } from './errors.ts';
import { LZ4_LEGACY_BLOCK_BYTES, compressLz4BlockExactly, decodeLz4Block, decodeLz4Legacy, findLz4Level, lz4CompressBound } from './lz4.ts';
import { type Segment, type StreamCodec, findStreams, gzipBodyOffset, segmentTotals } from './segment.ts';

/** Why a stream found in a file was not used (the JSON's `streams.fallbacks[].reason`). */
export type FallbackReason = 'no-encoder' | 'deflate-refused' | 'deflate-mismatch' | 'lz4-refused' | 'lz4-no-level' | 'verify' | 'larger' | 'limit';

export interface StreamNote {
  codec: StreamCodec;
  /** null: the stream is a segment of the view. */
  reason: FallbackReason | null;
}

export interface Described {
  segments: Segment[];
  view: Uint8Array;
  /** Every stream found, used or not. */
  streams: StreamNote[];
}

const GZIP_TRAILER_BYTES = 8;
const LZ4_MAGIC_BYTES = new Uint8Array([0x02, 0x21, 0x4c, 0x18]);

/**
 * The view of `content` and its segments. `side` 'dst' (the new file) needs a recipe for every
 * stream (deflate: the re-encoded bytes equal the original; LZ4: a level that rebuilds the frame);
 * 'src' (the patch source) only needs the decoders. Streams that fail stay raw, with the reason.
 */
export function describe(content: Uint8Array, side: 'src' | 'dst', maxView = MAX_VIEW_BYTES): Described {
  const segments: Segment[] = [];
  const pieces: Uint8Array[] = [];
  const streams: StreamNote[] = [];
  let rawFrom = 0;
  let viewBytes = 0;
  const stream = (offset: number, seg: Segment, view: Uint8Array) => {
    if (offset > rawFrom) {
      segments.push({ codec: 'raw', n: offset - rawFrom });
      pieces.push(content.subarray(rawFrom, offset));
    }
    segments.push(seg);
    pieces.push(view);
    rawFrom = offset + seg.n;
    viewBytes += view.length;
  };
  const refuse = (codec: StreamCodec, err: unknown, otherwise: FallbackReason) => {
    if (!(err instanceof ViewError)) throw err;
    streams.push({ codec, reason: err.reason === 'limit' ? 'limit' : otherwise });
  };

  for (const place of findStreams(content)) {
    if (place.codec === 'deflate') {
      let offset: number | null = place.offset;
      while (offset !== null) {
        try {
          const { view, used } = puffDeflate(content, offset, maxView - viewBytes);
          if (side === 'dst' && !Buffer.from(huffDeflate(view)).equals(content.subarray(offset, offset + used))) {
            streams.push({ codec: 'deflate', reason: 'deflate-mismatch' });
            break;
          }
          stream(offset, { codec: 'deflate', n: used, m: view.length }, view);
          streams.push({ codec: 'deflate', reason: null });
        } catch (err) {
          refuse('deflate', err, 'deflate-refused');
          break;
        }
        // gzip allows several members one after the other (pigz, `cat a.gz b.gz`).
        offset = place.gzipMember ? gzipBodyOffset(content, rawFrom + GZIP_TRAILER_BYTES) : null;
      }
    } else if (place.codec === 'lz4-legacy') {
      const frame = content.subarray(place.offset, place.offset + place.length!);
      try {
        const { data, blocks } = decodeLz4Legacy(frame, maxView - viewBytes);
        const level = side === 'dst' ? findLz4Level(frame, data, blocks) : 0;
        if (level === null) {
          streams.push({ codec: 'lz4-legacy', reason: 'lz4-no-level' });
          continue;
        }
        stream(place.offset, { codec: 'lz4-legacy', n: frame.length, m: data.length, level, blocks }, data);
        streams.push({ codec: 'lz4-legacy', reason: null });
      } catch (err) {
        refuse('lz4-legacy', err, 'lz4-refused');
      }
    } else {
      streams.push({ codec: place.codec, reason: 'no-encoder' });
    }
  }
  if (segments.length === 0) return { segments: [{ codec: 'raw', n: content.length }], view: content, streams };
  if (content.length > rawFrom) {
    segments.push({ codec: 'raw', n: content.length - rawFrom });
    pieces.push(content.subarray(rawFrom));
  }
  return { segments, view: Buffer.concat(pieces), streams };
}

/** True when a segment list expands anything (a list of raw segments is the file itself). */
export const hasStreams = (segments: readonly Segment[]) => segments.some((s) => s.codec !== 'raw');

/**
 * A patch source's bytes read front to back: each call hands out exactly the next n bytes, as a
 * view that stays valid until the next call. The device reads a large source from its file this
 * way, so expanding a kernel never holds the whole 14 MB object. @throws ViewError('corrupt') when
 * the bytes end early
 */
export interface SourceReader {
  readonly size: number;
  next(n: number): Uint8Array;
}

/** A SourceReader over bytes in memory (no copies). */
function memoryReader(content: Uint8Array): SourceReader {
  let at = 0;
  return {
    size: content.length,
    next(n) {
      if (n > content.length - at) throw new ViewError('corrupt', `the source ends ${n - (content.length - at)} bytes early`);
      at += n;
      return content.subarray(at - n, at);
    },
  };
}

/**
 * Buffers a caller lends to the view paths for the length of an apply's part. Expanding a source's
 * kernel and folding the new one use the same 8 MiB block buffer instead of one each (the
 * allocator kept the expansion's freed pages resident through the fold), and the small views of
 * .gz files, a few hundred in an update, are made and re-encoded in the same few buffers instead
 * of new ones each (the corpus delta's last part peaked ~5 MiB higher with new ones,
 * bench/README.md). Each is taken only when it is large enough, and replaced (and kept) when it is
 * not; the small views' only up to SCRATCH_MAX_BYTES. What is in one is valid until the next call
 * that lends it.
 */
export interface ViewBuffers extends HuffScratch {
  /** A decoded LZ4 block (8 MiB for a kernel). */
  block?: Uint8Array;
  /** A compressed LZ4 block of the new file (its largest recorded size). */
  compressed?: Uint8Array;
  /** A source's whole view, made in memory (expandView). */
  sourceView?: Uint8Array;
  /** The patched view of one deflate stream of the new file, read whole to be re-encoded (foldView). */
  deflateView?: Uint8Array;
}

/** The small views' buffers are kept up to this size; a larger view has buffers of its own. */
const SCRATCH_MAX_BYTES = 1024 * 1024;

function lend(buffers: ViewBuffers, key: keyof ViewBuffers, bytes: number): Uint8Array {
  const have = buffers[key];
  if (have !== undefined && have.length >= bytes) return have;
  return (buffers[key] = new Uint8Array(bytes));
}

/** Raw bytes of a source are handed on in pieces of at most this size. */
const RAW_PIECE_BYTES = 128 * 1024;

/**
 * The view of a patch source, built by the device from the segments the delta gives, as a
 * series of chunks (an LZ4 frame one 8 MiB block at a time: the device writes the view to a file
 * and never holds a whole kernel's). A chunk is valid until the next is asked for: the LZ4 blocks
 * share one buffer (a new 8 MiB per block left ~60 MiB of garbage per kernel under Bun), and the
 * raw and compressed bytes come from the reader's. Every stream must span exactly its n bytes
 * and expand to exactly its m. @throws ViewError
 */
export function* expandViewChunks(content: Uint8Array | SourceReader, segments: readonly Segment[], buffers: ViewBuffers = {}, target?: Uint8Array): Generator<Uint8Array> {
  const source = content instanceof Uint8Array ? memoryReader(content) : content;
  const { n, m } = segmentTotals(segments);
  if (n !== source.size) throw new ViewError('corrupt', `the source's segments cover ${n} bytes, the source has ${source.size}`);
  if (m > MAX_VIEW_BYTES) throw new ViewError('limit', `a view of ${m} bytes is over the ${MAX_VIEW_BYTES}-byte limit`);
  // Where the segment's view starts in the whole view (`target`, when the caller gives one: a
  // deflate stream's view is then made in place).
  let at = 0;
  for (const seg of segments) {
    if (seg.codec === 'raw') {
      for (let left = seg.n; left > 0; ) {
        const piece = source.next(Math.min(left, RAW_PIECE_BYTES));
        left -= piece.length;
        yield piece;
      }
      at += seg.n;
    } else if (seg.codec === 'deflate') {
      yield expandDeflate(source.next(seg.n), seg.m, target?.subarray(at, at + seg.m));
      at += seg.m;
    } else {
      yield* expandLz4(source, seg.n, seg.m, buffers);
      at += seg.m;
    }
  }
}

/**
 * The whole view of a patch source (the generator's check runs this, the device the chunks). With
 * `buffers`, a view of at most SCRATCH_MAX_BYTES is made in buffers.sourceView: valid until the
 * next expandView with the same buffers.
 */
export function expandView(content: Uint8Array, segments: readonly Segment[], buffers?: ViewBuffers): Uint8Array {
  const m = segmentTotals(segments).m;
  const view = buffers !== undefined && m <= SCRATCH_MAX_BYTES ? lend(buffers, 'sourceView', m).subarray(0, m) : new Uint8Array(m);
  let at = 0;
  for (const chunk of expandViewChunks(content, segments, buffers, view)) {
    // A deflate stream's view is already in place.
    if (chunk.buffer !== view.buffer || chunk.byteOffset !== view.byteOffset + at) view.set(chunk, at);
    at += chunk.length;
  }
  // Every segment spans exactly its m (checked as each is expanded), so the view is filled.
  return view;
}

/** The next n bytes of an LZ4 legacy frame, its blocks decoded one by one: each but the last is 8 MiB, m in all. */
function* expandLz4(source: SourceReader, n: number, m: number, buffers: ViewBuffers): Generator<Uint8Array> {
  if (n < 4) throw new ViewError('corrupt', 'an lz4 stream of the source does not start with the legacy magic');
  const magic = source.next(4);
  if (magic[0] !== LZ4_MAGIC_BYTES[0] || magic[1] !== LZ4_MAGIC_BYTES[1] || magic[2] !== LZ4_MAGIC_BYTES[2] || magic[3] !== LZ4_MAGIC_BYTES[3]) throw new ViewError('corrupt', 'an lz4 stream of the source does not start with the legacy magic');
  let at = 4;
  let left = m;
  const block = lend(buffers, 'block', Math.min(LZ4_LEGACY_BLOCK_BYTES, m));
  while (at < n) {
    if (at + 4 > n) throw new ViewError('corrupt', 'an lz4 stream of the source ends inside a block size');
    const s = source.next(4);
    const size = (s[0] | (s[1] << 8) | (s[2] << 16) | (s[3] << 24)) >>> 0;
    at += 4;
    if (size > n - at) throw new ViewError('corrupt', `an lz4 block of the source declares ${size} bytes, ${n - at} are left`);
    if (left === 0) throw new ViewError('corrupt', `an lz4 stream of the source decodes to more than ${m} bytes`);
    const want = Math.min(LZ4_LEGACY_BLOCK_BYTES, left);
    yield decodeLz4Block(source.next(size), want, block);
    at += size;
    left -= want;
  }
  if (left !== 0) throw new ViewError('corrupt', `an lz4 stream of the source decodes to ${m - left} bytes, not ${m}`);
}

/** A deflate stream's view, of exactly m bytes (made in `into` when given: m bytes). */
function expandDeflate(bytes: Uint8Array, m: number, into?: Uint8Array): Uint8Array {
  const { view, used } = puffDeflate(bytes, 0, m, m, into);
  if (used !== bytes.length) throw new ViewError('corrupt', `a deflate stream of the source ends after ${used} of its ${bytes.length} bytes`);
  if (view.length !== m) throw new ViewError('corrupt', `a deflate stream of the source expands to a view of ${view.length} bytes, not ${m}`);
  return view;
}

/**
 * The file's bytes from its patched view (a stream of chunks, as the bspatch loop yields them),
 * following the new file's segments: raw bytes pass through, each deflate view is re-encoded,
 * each LZ4 block compressed again at the recorded level. Holds one deflate view or one 8 MiB LZ4
 * block at a time. @throws ViewError, StreamEndedError (the view is shorter than its segments)
 */
export async function* foldView(view: AsyncIterable<Uint8Array>, segments: readonly Segment[], buffers: ViewBuffers = {}): AsyncGenerator<Uint8Array> {
  const reader = new ByteReader(view, 'patched view');
  for (const seg of segments) {
    if (seg.codec === 'raw') {
      yield* reader.pieces(seg.n);
    } else if (seg.codec === 'deflate') {
      // A small view is read into the part's buffer and re-encoded into another (ViewBuffers).
      const small = seg.m <= SCRATCH_MAX_BYTES;
      let streamView: Uint8Array;
      if (small) {
        streamView = lend(buffers, 'deflateView', seg.m).subarray(0, seg.m);
        const copying = reader.copyInto(streamView, 0, seg.m);
        if (copying) await copying;
      } else {
        streamView = await reader.read(seg.m);
      }
      const bytes = huffDeflate(streamView, seg.n, small ? buffers : undefined);
      if (bytes.length !== seg.n) throw new ViewError('corrupt', `a deflate stream re-encodes to ${bytes.length} bytes, not ${seg.n}`);
      yield bytes;
    } else {
      yield LZ4_MAGIC_BYTES;
      let left = seg.m;
      // One decoded block and one compressed block at a time, in buffers reused for every block;
      // the compressed one as large as the largest block the frame records, not the bound.
      const blockBuffer = lend(buffers, 'block', Math.min(LZ4_LEGACY_BLOCK_BYTES, seg.m));
      const compressed = lend(buffers, 'compressed', Math.min(Math.max(0, ...seg.blocks), lz4CompressBound(LZ4_LEGACY_BLOCK_BYTES)));
      for (const size of seg.blocks) {
        const want = Math.min(LZ4_LEGACY_BLOCK_BYTES, left);
        let at = 0;
        for await (const piece of reader.pieces(want)) {
          blockBuffer.set(piece, at);
          at += piece.length;
        }
        if (size > compressed.length) throw new ViewError('corrupt', `an lz4 block is recorded as ${size} bytes, over the bound of ${lz4CompressBound(LZ4_LEGACY_BLOCK_BYTES)}`);
        const block = compressLz4BlockExactly(blockBuffer.subarray(0, want), seg.level, size, compressed);
        left -= want;
        const prefix = Buffer.alloc(4);
        prefix.writeUInt32LE(size, 0);
        yield prefix;
        yield block;
      }
    }
  }
  if (!(await reader.atEnd())) throw new ViewError('corrupt', 'the patched view is longer than its segments');
}

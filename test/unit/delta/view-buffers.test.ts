/**
 * The device's view paths with less memory (src/delta/view/view.ts, lz4.ts, deflate.ts,
 * src/delta/byte-reader.ts): a source read piece by piece from a reused buffer, LZ4 block buffers
 * lent by the caller and shared by an expansion and a fold, the compressed block sized from the
 * frame's record instead of the bound, deflate outputs made at their known size, puffDeflate's
 * working buffers kept between calls, small views made and re-encoded in the part's buffers, and
 * ByteReader.read copying once. Each must give the same
 * bytes as before, and a wrong size must still end in ViewError('corrupt'), never wrong bytes.
 */
import t from 'tap';
import { deflateRawSync, gzipSync } from 'node:zlib';
import { ByteReader } from '../../../src/delta/byte-reader.ts';
import { huffDeflate, puffDeflate } from '../../../src/delta/view/deflate.ts';
import { ViewError } from '../../../src/delta/view/errors.ts';
import { LZ4_LEGACY_BLOCK_BYTES, compressLz4Block, compressLz4BlockExactly, decodeLz4Legacy, encodeLz4Legacy } from '../../../src/delta/view/lz4.ts';
import type { Segment } from '../../../src/delta/view/segment.ts';
import { type SourceReader, type ViewBuffers, expandView, expandViewChunks, foldView } from '../../../src/delta/view/view.ts';
import { prng } from '../../helpers.ts';

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
const isCorrupt = (err: unknown) => err instanceof ViewError && err.reason === 'corrupt';

/** Text-like bytes (words from a small vocabulary), so LZ4 and deflate find matches. */
function textLike(n: number, seed: number): Uint8Array {
  const rnd = prng(seed);
  const words = ['kernel', 'module', 'deflate', 'larch', 'update', 'the', 'of', 'boot', '\n', '0x', 'ff'];
  const out = new Uint8Array(n);
  for (let i = 0; i < n; ) {
    const w = rnd() < 0.05 ? String(Math.floor(rnd() * 1e6)) : words[Math.floor(rnd() * words.length)];
    for (let j = 0; j < w.length && i < n; j++) out[i++] = w.charCodeAt(j);
    if (i < n) out[i++] = 32;
  }
  return out;
}

/** A reader like the device's file reader: every piece comes out of one buffer, overwritten by the next call. */
function reusingReader(content: Uint8Array): SourceReader & { largest: number } {
  let buffer = new Uint8Array(0);
  let at = 0;
  return {
    size: content.length,
    largest: 0,
    next(n) {
      if (n > buffer.length) buffer = new Uint8Array(n);
      buffer.fill(0xee);
      if (n > content.length - at) throw new ViewError('corrupt', 'ends early');
      buffer.set(content.subarray(at, at + n));
      at += n;
      this.largest = Math.max(this.largest, n);
      return buffer.subarray(0, n);
    },
  };
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const out: Buffer[] = [];
  for await (const c of chunks) out.push(Buffer.from(c));
  return Uint8Array.from(Buffer.concat(out));
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/**
 * A file of: 16 raw bytes, a gzip member's deflate body between its header and trailer, an LZ4
 * legacy frame of two blocks (8 MiB + a tail, level 1), 7 raw bytes; with its segments and view.
 */
function compoundFile(seed: number): { content: Uint8Array; segments: Segment[]; view: Uint8Array } {
  const text = textLike(200_000, seed);
  const gz = gzipSync(text, { level: 9 });
  const body = gz.subarray(10, gz.length - 8);
  const puffed = puffDeflate(body);
  const kernel = textLike(LZ4_LEGACY_BLOCK_BYTES + 300_007, seed + 1);
  const frame = encodeLz4Legacy(kernel, 1);
  const { blocks } = decodeLz4Legacy(frame);
  const head = Uint8Array.from({ length: 16 }, (_, i) => i);
  const tail = Uint8Array.from({ length: 7 }, (_, i) => 200 + i);
  const content = Uint8Array.from(Buffer.concat([head, gz.subarray(0, 10), body, gz.subarray(gz.length - 8), frame, tail]));
  const segments: Segment[] = [
    { codec: 'raw', n: 26 },
    { codec: 'deflate', n: body.length, m: puffed.view.length },
    { codec: 'raw', n: 8 },
    { codec: 'lz4-legacy', n: frame.length, m: kernel.length, level: 1, blocks },
    { codec: 'raw', n: 7 },
  ];
  const view = Uint8Array.from(Buffer.concat([head, gz.subarray(0, 10), puffed.view, gz.subarray(gz.length - 8), kernel, tail]));
  return { content, segments, view };
}

t.test('compressLz4BlockExactly: a buffer of exactly the recorded size gives the block; any other size is corrupt', async (t) => {
  const src = textLike(300_000, 7);
  for (const level of [1, 3, 9]) {
    const block = compressLz4Block(src, level);
    const exact = compressLz4BlockExactly(src, level, block.length, new Uint8Array(block.length));
    t.ok(same(exact, block), `level ${level}: the same ${block.length} bytes from a buffer of exactly that size`);
    t.ok(same(compressLz4BlockExactly(src, level, block.length, new Uint8Array(block.length + 1000)), block), `level ${level}: a larger buffer, the same bytes`);
    for (const size of [block.length - 1, block.length - 100, block.length + 1]) {
      let err: unknown = null;
      try {
        compressLz4BlockExactly(src, level, size, new Uint8Array(block.length + 1000));
      } catch (e) {
        err = e;
      }
      t.ok(isCorrupt(err), `level ${level}: recorded as ${size} bytes (it makes ${block.length}): corrupt`);
    }
  }
  // A buffer too small to hold a 0-byte input's one token: the copies or the count catch it.
  t.throws(() => compressLz4BlockExactly(src, 1, 10, new Uint8Array(5)), RangeError, 'a buffer under the recorded size is the caller\'s bug');
});

t.test('a source read piece by piece from a reused buffer expands to the same view as the source in memory', async (t) => {
  const { content, segments, view } = compoundFile(11);
  t.ok(same(expandView(content, segments), view), 'expandView from memory: the view');
  const reader = reusingReader(content);
  const buffers: ViewBuffers = {};
  const got: Buffer[] = [];
  for (const chunk of expandViewChunks(reader, segments, buffers)) got.push(Buffer.from(chunk));
  t.ok(same(Buffer.concat(got), view), 'chunk by chunk from the reader: the same view');
  const lz4 = segments[3] as Extract<Segment, { codec: 'lz4-legacy' }>;
  const biggest = Math.max(segments[1].n, ...lz4.blocks);
  t.equal(reader.largest, biggest, `the reader never held more than one deflate stream or one compressed LZ4 block (${biggest} B of ${content.length})`);
  t.equal(buffers.block?.length, LZ4_LEGACY_BLOCK_BYTES, 'the LZ4 block buffer was lent to the caller');
  const truncated = reusingReader(content.subarray(0, content.length - 1));
  t.throws(() => [...expandViewChunks(truncated, segments)], ViewError, 'a source shorter than its segments is refused before anything is read');
});

t.test('one set of buffers serves the expansion and then the fold: the fold gives the file back exactly', async (t) => {
  const { content, segments, view } = compoundFile(23);
  const buffers: ViewBuffers = {};
  for (const _ of expandViewChunks(reusingReader(content), segments, buffers));
  const block = buffers.block;
  const rebuilt = await collect(foldView(once(view), segments, buffers));
  t.ok(same(rebuilt, content), 'the fold after the expansion, with the same buffers: the exact file');
  t.equal(buffers.block, block, 'the fold used the expansion\'s block buffer, not a new one');
  const largest = Math.max(...(segments[3] as { blocks: number[] }).blocks);
  t.equal(buffers.compressed?.length, largest, 'the compressed block buffer is the largest recorded block, not the bound');
  t.ok(same(await collect(foldView(once(view), segments)), content), 'without lent buffers: the same file');
});

t.test('a frame that records the wrong block size folds to corrupt, never to other bytes', async (t) => {
  const { segments, view } = compoundFile(31);
  const lz4 = segments[3] as Extract<Segment, { codec: 'lz4-legacy' }>;
  for (const delta of [-1, 1, -50]) {
    const blocks = [lz4.blocks[0] + delta, lz4.blocks[1] - delta];
    const wrong = segments.map((s) => (s === lz4 ? { ...lz4, blocks } : s));
    let err: unknown = null;
    try {
      await collect(foldView(once(view), wrong, {}));
    } catch (e) {
      err = e;
    }
    t.ok(isCorrupt(err), `block 0 recorded ${delta > 0 ? '+' : ''}${delta} bytes off: corrupt`);
  }
  const over = segments.map((s) => (s === lz4 ? { ...lz4, blocks: [9_000_000, lz4.blocks[1]] } : s));
  let err: unknown = null;
  try {
    await collect(foldView(once(view), over, {}));
  } catch (e) {
    err = e;
  }
  t.ok(isCorrupt(err) && /over the bound/.test((err as Error).message), 'a block recorded over the bound: corrupt, named');
});

t.test('puffDeflate keeps its working buffers between calls: each view stays intact, a failed call spoils nothing', async (t) => {
  const a = deflateRawSync(textLike(150_000, 41), { level: 9 });
  const b = deflateRawSync(textLike(90_000, 43), { level: 1 });
  const first = puffDeflate(a).view;
  const copy = Uint8Array.from(first);
  const second = puffDeflate(b).view;
  t.ok(same(first, copy), 'the first view is unchanged by the second call');
  t.ok(same(huffDeflate(first), a) && same(huffDeflate(second), b), 'both views rebuild their streams');
  t.throws(() => puffDeflate(a.subarray(0, a.length >>> 1)), ViewError, 'a cut stream is refused');
  t.ok(same(puffDeflate(b).view, second), 'the call after a failed one gives the same view');
});

t.test('known sizes: a view and an output made at their size are the same bytes, whatever size is claimed', async (t) => {
  const stream = deflateRawSync(textLike(120_000, 53), { level: 6 });
  const { view } = puffDeflate(stream);
  for (const claim of [view.length, view.length - 1, view.length + 1, 1, view.length * 100]) {
    t.ok(same(puffDeflate(stream, 0, view.length + 10, claim).view, view), `puffDeflate told ${claim} (really ${view.length}): the same view`);
  }
  for (const claim of [stream.length, stream.length - 1, stream.length + 1, 0, stream.length * 1000]) {
    t.ok(same(huffDeflate(view, claim), stream), `huffDeflate told ${claim} (really ${stream.length}): the same stream`);
  }
});

t.test('small views in the part\'s buffers: each source and fold reuses them, and every file comes back exactly', async (t) => {
  /** A gzip file of one or two members, with its segments (header and trailer raw, each body a deflate stream). */
  const gzFile = (seed: number, members: number) => {
    const parts: Uint8Array[] = [];
    const segments: Segment[] = [];
    for (let i = 0; i < members; i++) {
      const gz = gzipSync(textLike(60_000 + 7_000 * i + seed, seed + i), { level: 9 - 3 * i });
      const body = gz.subarray(10, gz.length - 8);
      parts.push(gz);
      segments.push({ codec: 'raw', n: 10 }, { codec: 'deflate', n: body.length, m: puffDeflate(body).view.length }, { codec: 'raw', n: 8 });
    }
    return { content: Uint8Array.from(Buffer.concat(parts)), segments };
  };
  const buffers: ViewBuffers = {};
  const files = [gzFile(61, 1), gzFile(67, 2), gzFile(71, 1)];
  let sourceView: ArrayBufferLike | undefined;
  for (const [i, { content, segments }] of files.entries()) {
    const fresh = expandView(content, segments);
    const lent = expandView(content, segments, buffers);
    t.ok(same(lent, fresh), `file ${i}: the view made in the part's buffer is the view`);
    t.equal(lent.buffer, buffers.sourceView?.buffer, `file ${i}: in buffers.sourceView`);
    if (i === 1) sourceView = lent.buffer;
    // The fold of the same view (the patch left it unchanged): chunks are copied as they come, as gather and writeFile do.
    t.ok(same(await collect(foldView(once(Uint8Array.from(fresh)), segments, buffers)), content), `file ${i}: the fold with the part's buffers gives the file`);
  }
  t.equal(buffers.sourceView?.buffer, sourceView, 'the largest source view\'s buffer served the smaller one after it');
  t.ok(buffers.deflateView !== undefined && buffers.deflateOut !== undefined, 'the fold read each stream\'s view into the part\'s buffer and re-encoded it into another');

  // A view that comes out shorter than its segment says: corrupt, whatever the buffer held before.
  const { content, segments } = files[0];
  const deflate = segments[1] as Extract<Segment, { codec: 'deflate' }>;
  const longer: Segment[] = [segments[0], { ...deflate, m: deflate.m + 1 }, segments[2]];
  const failure = (f: () => unknown): unknown => {
    try {
      f();
    } catch (err) {
      return err;
    }
    return undefined;
  };
  const short = failure(() => expandView(content, longer, buffers));
  t.ok(isCorrupt(short) && /expands to a view of \d+ bytes, not \d+/.test((short as Error).message), `a view one byte short of its segment: corrupt, with both sizes (${(short as Error)?.message})`);
  t.ok(isCorrupt(failure(() => expandView(content, longer))), 'without the part\'s buffers: the same');
});

t.test('ByteReader.read returns copies: a source that reuses its buffer cannot change what was read', async (t) => {
  const bytes = textLike(5000, 61);
  async function* reusing(): AsyncGenerator<Uint8Array> {
    const buffer = new Uint8Array(700);
    for (let at = 0; at < bytes.length; at += 700) {
      const n = Math.min(700, bytes.length - at);
      buffer.set(bytes.subarray(at, at + n));
      yield buffer.subarray(0, n);
      buffer.fill(0xee);
    }
  }
  const r = new ByteReader(reusing(), 'test');
  const reads: Uint8Array[] = [];
  for (const n of [10, 600, 300, 1500, 0, 1, 2589]) reads.push(await r.read(n));
  t.ok(await r.atEnd(), 'every byte read');
  t.ok(same(Buffer.concat(reads), bytes), 'within a chunk, across chunks and across many chunks: the stream, intact after the source moved on');
});

/**
 * The PV1 deflate view (src/delta/view/deflate.ts, docs/design/pv1.md): streams from every real
 * compressor round-trip byte for byte, the committed vectors both ways, hand-made edge streams
 * (accepted and refused exactly as zlib's inflate does), node:zlib streams over its whole parameter
 * space, and corrupted views end in ViewError or an output, never another exception.
 */
import { existsSync, readFileSync } from 'node:fs';
import { constants, deflateRawSync, gunzipSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import t from 'tap';
import { MAX_BLOCK_STRUCTURE_BYTES, deflateViewOutputLength, huffDeflate, puffDeflate } from '../../../src/delta/view/deflate.ts';
import { ViewError } from '../../../src/delta/view/errors.ts';
import { PRODUCERS, pythonZlibLevels, syntheticText } from '../../deflate-producers.ts';
import { type TapTest, missingTools, testNeeding } from '../../helpers.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

/** An independent reading of a PV1 view (pv1.md §2): the blocks' U_b concatenated, and the block count. */
function viewContent(view: Uint8Array): { u: Uint8Array; blocks: number } {
  let p = 0;
  const leb = () => {
    let x = 0;
    for (let scale = 1; ; scale *= 128) {
      const b = view[p++];
      x += (b & 127) * scale;
      if (b < 128) return x;
    }
  };
  const parts: Uint8Array[] = [];
  let blocks = 0;
  for (;;) {
    const s = leb();
    const sEnd = p + s;
    const head = view[p++];
    let ulen = 0;
    if (head >> 1 === 0) {
      p++;
      ulen = leb();
    } else {
      if (head >> 1 === 2) {
        const total = view[p] + 257 + view[p + 1] + 1;
        p += 3 + view[p + 2] + 4;
        for (let n = 0; n < total; ) {
          const sym = view[p++];
          if (sym < 16) n++;
          else n += (sym === 18 ? 11 : 3) + view[p++];
        }
      }
      for (;;) {
        ulen += leb();
        const l = leb();
        if (l === 0) break;
        leb();
        ulen += l + 2;
      }
    }
    if (p !== sEnd) throw new Error(`block ${blocks}: S_b ends at ${p}, declared ${sEnd}`);
    parts.push(view.subarray(p, p + ulen));
    p += ulen;
    blocks++;
    if (head & 1) break;
  }
  if (p !== view.length - 1) throw new Error('view does not end with its tail byte');
  return { u: Uint8Array.from(Buffer.concat(parts)), blocks };
}

/** The ViewError reason fn throws with, or what else happened. */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof ViewError ? err.reason : `${(err as Error).name}: ${(err as Error).message}`;
  }
}

/** Checks one stream round-trips: puff, huff, used, the output length and the U bytes. */
function checkRoundTrip(t: TapTest, stream: Uint8Array, input: Uint8Array, what: string): Uint8Array {
  const { view, used } = puffDeflate(stream);
  t.equal(used, stream.length, `${what}: used is the whole stream (${stream.length} B)`);
  t.ok(same(huffDeflate(view), stream), `${what}: huff(puff(stream)) is the stream byte for byte`);
  t.equal(deflateViewOutputLength(view), input.length, `${what}: the view's output length`);
  const { u, blocks } = viewContent(view);
  t.ok(same(u, input), `${what}: the view's U bytes are the input (${blocks} blocks)`);
  return view;
}

// ---- real compressors --------------------------------------------------------

const dpkgChangelog = '/usr/share/doc/dpkg/changelog.gz';
/** Inputs of realistic size; `unmatched`: the gzip, zopfli and 7-Zip streams of it are checked to be none of zlib's. */
const realistic: { name: string; data: Uint8Array; unmatched: boolean }[] = [
  { name: 'synthetic 400 KB (seed 1)', data: syntheticText(400_000, 1), unmatched: true },
  existsSync(dpkgChangelog)
    ? { name: 'dpkg changelog, first 300 KB', data: Uint8Array.from(gunzipSync(readFileSync(dpkgChangelog))).subarray(0, 300_000), unmatched: true }
    : { name: 'synthetic 300 KB (seed 2; no dpkg changelog on this machine)', data: syntheticText(300_000, 2), unmatched: false },
];
const zlibLevels = new Map<string, Uint8Array[]>();

for (const producer of PRODUCERS) {
  const missing = missingTools(producer.tools);
  const cannot = missing.length > 0 && `${missing.join(', ')} not installed (${producer.name})`;
  void testNeeding(t, `${producer.name}: real streams round-trip`, cannot, { timeout: 300_000 }, async (t) => {
    for (const { name, data, unmatched } of realistic) {
      const stream = producer.make(data);
      checkRoundTrip(t, stream, data, `${producer.name} of ${name}`);
      if (unmatched && /^(gzip|zopfli|7zz)/.test(producer.name)) {
        // The point of the view: no zlib level re-creates these (memo §1.3), so re-running an encoder cannot.
        if (!zlibLevels.has(name)) zlibLevels.set(name, pythonZlibLevels(data));
        const levels = zlibLevels.get(name)!.flatMap((z, i) => (same(z, stream) ? [i + 1] : []));
        t.same(levels, [], `${producer.name} of ${name}: no system zlib level 1-9 reproduces it`);
      }
    }
  });
}

// ---- committed vectors -------------------------------------------------------

t.test('vectors: puff(stream) = view and huff(view) = stream', async (t) => {
  const doc = JSON.parse(readFileSync(new URL('../../vectors/delta/view/deflate.json', import.meta.url), 'utf8')) as { vectors: { comment: string; producer: string; stream: string; view: string; decompressed_length: number }[] };
  t.same(
    doc.vectors.map((v) => v.producer),
    PRODUCERS.map((p) => p.name),
    'one vector per producer',
  );
  for (const v of doc.vectors) {
    const stream = Uint8Array.from(Buffer.from(v.stream, 'hex'));
    const view = Uint8Array.from(Buffer.from(v.view, 'hex'));
    const puffed = puffDeflate(stream);
    t.equal(hex(puffed.view), v.view, `${v.comment}: puff gives the committed view`);
    t.equal(puffed.used, stream.length, `${v.comment}: used`);
    t.equal(hex(huffDeflate(view)), v.stream, `${v.comment}: huff gives the committed stream`);
    t.equal(deflateViewOutputLength(view), v.decompressed_length, `${v.comment}: output length`);
    t.equal(inflateRawSync(stream).length, v.decompressed_length, `${v.comment}: the stream inflates to that length`);
  }
});

// ---- hand-made streams ---------------------------------------------------------

/** A deflate bit writer: put() sends values LSB first, code() sends a Huffman code MSB first (RFC 1951 §3.1.1). */
class Bits {
  private bytes: number[] = [];
  private acc = 0;
  private n = 0;
  put(v: number, k: number): this {
    for (let i = 0; i < k; i++) {
      this.acc |= ((v >> i) & 1) << this.n;
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
    return this;
  }
  code(c: [number, number]): this {
    for (let i = c[1] - 1; i >= 0; i--) this.put((c[0] >> i) & 1, 1);
    return this;
  }
  bytesRaw(b: number[]): this {
    if (this.n !== 0) throw new Error('not byte-aligned');
    this.bytes.push(...b);
    return this;
  }
  /** The stream, the last byte's unused high bits set to `tail`. */
  done(tail = 0): Uint8Array {
    const out = [...this.bytes];
    if (this.n !== 0) out.push(this.acc | (tail << this.n));
    return Uint8Array.from(out);
  }
}

/** Canonical codes of RFC 1951 §3.2.2: [code, length] per symbol. */
function canonical(lens: number[]): [number, number][] {
  const count = new Array(16).fill(0);
  for (const l of lens) if (l) count[l]++;
  const next = new Array(16).fill(0);
  for (let len = 1, code = 0; len < 16; len++) {
    code = (code + (len > 1 ? count[len - 1] : 0)) << 1;
    next[len] = code;
  }
  return lens.map((l) => [l ? next[l]++ : 0, l]);
}

const FIXED = canonical([...Array(144).fill(8), ...Array(112).fill(9), ...Array(24).fill(7), ...Array(8).fill(8)]);
const FIXED_DIST = canonical(Array(32).fill(5));
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
/** The code-length code the hand-made dynamic blocks use: 0..15 length 5, 16 length 2, 17 and 18 length 3 (complete). */
const CL_LENS = [...Array(16).fill(5), 2, 3, 3];
const CL = canonical(CL_LENS);

/** A dynamic block header: HLIT, HDIST, all 19 code-length code lengths, then the code-length symbols ([sym] or [sym, extra]). */
function dynamicHeader(b: Bits, final: number, hlit: number, hdist: number, seq: number[][]): Bits {
  b.put(final, 1).put(2, 2).put(hlit - 257, 5).put(hdist - 1, 5).put(19 - 4, 4);
  for (const sym of CL_ORDER) b.put(CL_LENS[sym], 3);
  for (const [sym, extra] of seq) {
    b.code(CL[sym]);
    if (sym >= 16) b.put(extra, sym === 16 ? 2 : sym === 17 ? 3 : 7);
  }
  return b;
}

/** Lengths array for `n` symbols with the given non-zero ones. */
const lengths = (n: number, set: Record<number, number>) => Array.from({ length: n }, (_, i) => set[i] ?? 0);

const acceptedEdges: { name: string; stream: Uint8Array; output: string }[] = (() => {
  const list: { name: string; stream: Uint8Array; output: string }[] = [];
  list.push({ name: 'an empty stored block', stream: Uint8Array.of(0x01, 0x00, 0x00, 0xff, 0xff), output: '' });
  list.push({ name: 'an empty stored block with non-zero pad bits', stream: Uint8Array.of(0xf9, 0x00, 0x00, 0xff, 0xff), output: '' });
  list.push({
    name: 'a stored block with pad bits 10101, then an empty fixed block with tail bits 111111',
    stream: new Bits().put(0, 1).put(0, 2).put(0b10101, 5).bytesRaw([2, 0, 0xfd, 0xff, 0x68, 0x69]).put(1, 1).put(1, 2).code(FIXED[256]).done(0x3f),
    output: 'hi',
  });
  list.push({ name: 'an empty final fixed block', stream: Uint8Array.of(0x03, 0x00), output: '' });
  list.push({ name: 'an empty final fixed block with non-zero tail bits', stream: Uint8Array.of(0x03, 0x80), output: '' });
  {
    // Literal/length: 'a' 1, 256 2, 257 2 (complete); distance: only code 0, length 1 (zlib's incomplete-code exception).
    const lit = canonical(lengths(258, { 97: 1, 256: 2, 257: 2 }));
    const dist = canonical([1]);
    const b = dynamicHeader(new Bits(), 1, 258, 1, [[18, 86], [1], [18, 127], [18, 9], [2], [2], [1]]);
    b.code(lit[97]).code(lit[257]).code(dist[0]).code(lit[256]);
    list.push({ name: 'a single length-1 distance code', stream: b.done(), output: 'aaaa' });
  }
  {
    // A run of zeros (code 18) from literal/length lengths 258..285 into distance lengths 0 and 1.
    const lit = canonical(lengths(286, { 97: 1, 256: 2, 257: 2 }));
    const dist = canonical([0, 0, 1]);
    const b = dynamicHeader(new Bits(), 1, 286, 3, [[18, 86], [1], [18, 127], [18, 9], [2], [2], [18, 19], [1]]);
    b.code(lit[97]).code(lit[97]).code(lit[97]).code(lit[257]).code(dist[2]).code(lit[256]);
    list.push({ name: 'a zero run (18) crossing from literal/length into distance lengths', stream: b.done(), output: 'aaaaaa' });
  }
  {
    // A repeat (16) of length 2 from symbol 257 into distance codes 0..3.
    const lit = canonical(lengths(258, { 97: 2, 98: 2, 256: 2, 257: 2 }));
    const dist = canonical([2, 2, 2, 2]);
    const b = dynamicHeader(new Bits(), 1, 258, 4, [[18, 86], [2], [2], [18, 127], [18, 8], [2], [16, 2]]);
    b.code(lit[97]).code(lit[98]).code(lit[257]).code(dist[1]).code(lit[256]);
    list.push({ name: 'a repeat (16) crossing from literal/length into distance lengths', stream: b.done(), output: 'ababa' });
  }
  return list;
})();

t.test('hand-made edge streams round-trip', async (t) => {
  for (const { name, stream, output } of acceptedEdges) {
    t.equal(Buffer.from(inflateRawSync(stream)).toString('latin1'), output, `${name}: zlib inflates it (${hex(stream)})`);
    checkRoundTrip(t, stream, Uint8Array.from(Buffer.from(output, 'latin1')), name);
  }
  const last = acceptedEdges[2];
  const { view } = puffDeflate(last.stream);
  t.equal(view[view.length - 1], 0x3f, 'the tail byte holds the unused high bits of the last byte');
  t.equal(view[2], 0b10101, "the stored block's S_b holds its pad bits");
});

t.test('used, offset and data after the stream', async (t) => {
  const stream = pythonZlibOr(syntheticText(5000, 3));
  const data = Uint8Array.from(Buffer.concat([Buffer.from('garbage!'), stream, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])]));
  const { view, used } = puffDeflate(data, 8);
  t.equal(used, stream.length, 'used stops at the last byte of the stream, not at the end of data');
  t.ok(same(huffDeflate(view), stream), 'and the view huffs back to exactly those bytes');
  t.throws(() => puffDeflate(data, data.length + 1), RangeError, 'an offset past the end is a caller mistake');
});

/** A deflate stream of `data` (node:zlib is fine here: only the parser's reading of it is tested). */
function pythonZlibOr(data: Uint8Array): Uint8Array {
  return Uint8Array.from(deflateRawSync(data, { level: 9 }));
}

const refusedEdges: { name: string; stream: Uint8Array; reason: 'refused' | 'corrupt' | 'limit'; zlibAccepts: boolean }[] = [
  {
    name: 'length 258 coded as 284 with extra bits 31',
    stream: new Bits().put(1, 1).put(1, 2).code(FIXED[97]).code(FIXED[284]).put(31, 5).code(FIXED_DIST[0]).code(FIXED[256]).done(),
    reason: 'refused',
    zlibAccepts: true,
  },
  { name: 'an over-subscribed code-length code', stream: new Bits().put(1, 1).put(2, 2).put(0, 5).put(0, 5).put(0, 4).put(1, 3).put(1, 3).put(1, 3).put(1, 3).put(0, 32).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'an incomplete code-length code (one code of length 1)', stream: new Bits().put(1, 1).put(2, 2).put(0, 5).put(0, 5).put(0, 4).put(0, 3).put(0, 3).put(0, 3).put(1, 3).put(0, 32).done(), reason: 'corrupt', zlibAccepts: false },
  {
    name: 'an over-subscribed literal/length code',
    stream: dynamicHeader(new Bits(), 1, 257, 1, [[1], [1], [1], [18, 127], [18, 104], [1], [1]]).put(0, 32).done(),
    reason: 'corrupt',
    zlibAccepts: false,
  },
  { name: 'a distance past the start of the stream', stream: new Bits().put(1, 1).put(1, 2).code(FIXED[97]).code(FIXED[257]).code(FIXED_DIST[1]).code(FIXED[256]).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'block type 3', stream: Uint8Array.of(0x07, 0x00, 0x00), reason: 'corrupt', zlibAccepts: false },
  { name: 'a stored block whose NLEN is not ~LEN', stream: Uint8Array.of(0x01, 0x02, 0x00, 0xfd, 0xfe, 0x68, 0x69), reason: 'corrupt', zlibAccepts: false },
  { name: 'a fixed block using distance code 30', stream: new Bits().put(1, 1).put(1, 2).code(FIXED[97]).code(FIXED[257]).code(FIXED_DIST[30]).code(FIXED[256]).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'a fixed block using literal/length code 286', stream: new Bits().put(1, 1).put(1, 2).code(FIXED[286]).put(0, 16).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'a code-length repeat (16) with no previous length', stream: dynamicHeader(new Bits(), 1, 257, 1, [[16, 0]]).put(0, 32).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'a zero run past HLIT + HDIST', stream: dynamicHeader(new Bits(), 1, 257, 1, [[18, 127], [18, 127], [18, 0]]).put(0, 32).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'no code for end-of-block', stream: dynamicHeader(new Bits(), 1, 257, 1, [[1], [1], [18, 127], [18, 106], [1]]).put(0, 32).done(), reason: 'corrupt', zlibAccepts: false },
  { name: 'an empty stream', stream: new Uint8Array(0), reason: 'corrupt', zlibAccepts: false },
];

t.test('hand-made streams zlib rejects are corrupt; 284+31 is refused', async (t) => {
  for (const { name, stream, reason, zlibAccepts } of refusedEdges) {
    t.equal(zlibAcceptsWhole(stream), zlibAccepts, `${name}: zlib ${zlibAccepts ? 'accepts' : 'rejects'} it`);
    t.equal(outcome(() => puffDeflate(stream)), reason, `${name}: ViewError '${reason}'`);
  }
});

/** zlib inflates the stream to its end (inflateRawSync throws on a stream that ends early). */
function zlibAcceptsWhole(stream: Uint8Array): boolean {
  try {
    inflateRawSync(stream);
    return true;
  } catch {
    return false;
  }
}

t.test('a stream cut anywhere is corrupt', async (t) => {
  const stream = pythonZlibOr(syntheticText(3000, 4));
  let ok = 0;
  for (let n = 0; n < stream.length; n++) {
    try {
      puffDeflate(stream.subarray(0, n));
      t.fail(`cut at ${n} of ${stream.length} was accepted`);
    } catch (err) {
      if (err instanceof ViewError && err.reason === 'corrupt') ok++;
      else t.fail(`cut at ${n}: ${String(err)}`);
    }
  }
  t.equal(ok, stream.length, `all ${stream.length} cuts end in ViewError 'corrupt'`);
});

t.test('limits: the view size and a block structure over 1 MiB', async (t) => {
  const input = syntheticText(100_000, 5);
  const stream = pythonZlibOr(input);
  const full = puffDeflate(stream).view.length;
  t.equal(puffDeflate(stream, 0, full).view.length, full, 'a view of exactly maxView bytes is produced');
  t.equal(outcome(() => puffDeflate(stream, 0, full - 1)), 'limit', 'one byte less is a limit');
  // A fixed block of 'a' then 400,000 matches of 3 at distance 1: 3 bytes of S_b each, 1.2 MB.
  const b = new Bits().put(1, 1).put(1, 2).code(FIXED[97]);
  for (let i = 0; i < 400_000; i++) b.code(FIXED[257]).code(FIXED_DIST[0]);
  const big = b.code(FIXED[256]).done();
  t.equal(inflateRawSync(big).length, 1 + 3 * 400_000, 'zlib inflates the long block');
  t.equal(outcome(() => puffDeflate(big)), 'limit', `S_b over ${MAX_BLOCK_STRUCTURE_BYTES} bytes is a limit`);
  t.match((() => { try { puffDeflate(big); } catch (err) { return (err as Error).message; } })(), /structure/, 'and the message says so');
});

// ---- node:zlib over its parameter space -------------------------------------------

const STRATEGIES = [constants.Z_DEFAULT_STRATEGY, constants.Z_FILTERED, constants.Z_HUFFMAN_ONLY, constants.Z_RLE, constants.Z_FIXED];
const repetitive = fc.array(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 12 }).map((parts) => Uint8Array.from(Buffer.concat(parts.flatMap(([chunk, n]) => Array<Uint8Array>(n).fill(chunk)))));
const anyInput = fc.oneof(fc.uint8Array({ maxLength: 20_000 }), repetitive, fc.integer({ min: 0, max: 2 ** 31 }).map((seed) => syntheticText(10_000 + (seed % 40_000), seed)));

t.test('property: node:zlib streams of any level, strategy, window and memLevel round-trip', async (t) => {
  t.doesNotThrow(
    () =>
      fc.assert(
        fc.property(anyInput, fc.integer({ min: 0, max: 9 }), fc.constantFrom(...STRATEGIES), fc.integer({ min: 9, max: 15 }), fc.integer({ min: 1, max: 9 }), (input, level, strategy, windowBits, memLevel) => {
          const stream = Uint8Array.from(deflateRawSync(input, { level, strategy, windowBits, memLevel }));
          const { view, used } = puffDeflate(stream);
          if (used !== stream.length) throw new Error(`used ${used} of ${stream.length}`);
          if (!same(huffDeflate(view), stream)) throw new Error('huff(puff(stream)) differs');
          if (deflateViewOutputLength(view) !== input.length) throw new Error('output length differs');
          if (!same(viewContent(view).u, input)) throw new Error('U bytes differ from the input');
        }),
        { numRuns: 150 },
      ),
    '150 generated streams round-trip',
  );
});

// ---- corrupted views -------------------------------------------------------------------

t.test('corrupted views end in ViewError or an output, never another exception', async (t) => {
  const views = [syntheticText(4000, 6), Uint8Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff)].flatMap((input) => [0, 1, 6, 9].map((level) => puffDeflate(deflateRawSync(input, { level })).view));
  views.push(...acceptedEdges.map((e) => puffDeflate(e.stream).view));
  const edit = fc.oneof(
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ op: fc.constant('insert' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  );
  const endings = { error: 0, output: 0 };
  fc.assert(
    fc.property(fc.nat(views.length - 1), fc.array(edit, { minLength: 1, maxLength: 4 }), (i, edits) => {
      let v = views[i];
      for (const e of edits) {
        const at = e.at % (v.length + 1);
        if (e.op === 'truncate') v = v.subarray(0, at);
        else if (e.op === 'flip') {
          v = Uint8Array.from(v);
          if (v.length) v[at % v.length] ^= e.value;
        } else v = Uint8Array.from(Buffer.concat([v.subarray(0, at), Uint8Array.of(e.value), v.subarray(at)]));
      }
      for (const fn of [huffDeflate, deflateViewOutputLength] as const) {
        try {
          fn(v);
          endings.output++;
        } catch (err) {
          if (!(err instanceof ViewError)) throw err;
          endings.error++;
        }
      }
    }),
    { numRuns: 1500 },
  );
  t.ok(endings.error > 0 && endings.output > 0, `both endings seen: ${JSON.stringify(endings)}`);
  t.throws(() => huffDeflate(new Uint8Array(0)), ViewError, 'an empty view is corrupt');
});

// ---- malformed views, one check each ----------------------------------------------------

t.test('huff refuses each kind of malformed view', async (t) => {
  const ascii = (s: string) => [...Buffer.from(s, 'latin1')];
  /** A fixed final block: 'abc' then a match of 6 at distance 3; `tokens` and `u` replaceable. */
  const fixedView = (tokens: number[], u = ascii('abcabcabc'), tail = 0, head = 3) => Uint8Array.from([1 + tokens.length, head, ...tokens, ...u, tail]);
  const good = fixedView([3, 4, 2, 0, 0]);
  t.equal(Buffer.from(inflateRawSync(huffDeflate(good))).toString('latin1'), 'abcabcabc', 'the hand-made view huffs to a stream zlib inflates');
  t.equal(deflateViewOutputLength(good), 9, 'its output length');
  t.ok(same(puffDeflate(huffDeflate(good)).view, good), 'and puff gives the view back');
  // 3 + 3 * 8 + 7 + 5 + 7 = 46 bits: the last byte has 2 unused bits.
  t.ok(same(huffDeflate(fixedView([3, 4, 2, 0, 0], undefined, 3)).subarray(0, 5), huffDeflate(good).subarray(0, 5)), 'tail 3 fits the 2 unused bits');

  const single = acceptedEdges.find((e) => e.name === 'a single length-1 distance code')!;
  const singleView = puffDeflate(single.stream).view;
  const stored = Uint8Array.from([3, 1, 0, 2, ...ascii('hi'), 0]);
  t.equal(Buffer.from(inflateRawSync(huffDeflate(stored))).toString('latin1'), 'hi', 'a hand-made stored view huffs');

  const cases: [string, Uint8Array][] = [
    ['no tail byte', good.subarray(0, good.length - 1)],
    ['a byte after the tail', Uint8Array.from([...good, 0])],
    ['the view cut inside U_b', good.subarray(0, 8)],
    ['the view cut inside S_b', good.subarray(0, 3)],
    ['a distance past the start of the stream', fixedView([3, 4, 3, 0, 0])],
    ['a distance over 32768', fixedView([3, 4, 0x80, 0x80, 0x02, 0, 0])],
    ['a match length of 259 (L = 257)', fixedView([3, 0x81, 0x02, 2, 0, 0], ascii('abc'.repeat(87)))],
    ['literals past the end of the view', fixedView([200, 0])],
    ['a match past the end of the view', fixedView([3, 100, 2, 0, 0])],
    ['tail bits that do not fit (4 in 2 bits)', fixedView([3, 4, 2, 0, 0], undefined, 4)],
    ['BTYPE 3', fixedView([3, 4, 2, 0, 0], undefined, 0, 7)],
    ['an overlong number (litrun 3 as 83 00)', fixedView([0x83, 0x00, 4, 2, 0, 0])],
    ['a number longer than 8 bytes', fixedView([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 4, 2, 0, 0])],
    ['S_b declared longer than it is', Uint8Array.from([good[0] + 1, ...good.subarray(1)])],
    ['S_b declared shorter than it is', Uint8Array.from([good[0] - 1, ...good.subarray(1)])],
    ['S_b declared 2^40 bytes', Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x20, ...good.subarray(1)])],
    ['a stored pad that does not fit the 5 bits to the byte boundary', Uint8Array.from([3, 1, 32, 2, ...ascii('hi'), 0])],
    ['a stored block longer than the view', Uint8Array.from([5, 1, 0, 0xff, 0xff, 0x03, ...ascii('hi'), 0])],
    ['a literal with no code in the block', Uint8Array.from([...singleView.subarray(0, singleView.length - 5), ...ascii('baaa'), 0])],
    ['a code-length repeat that runs past HLIT + HDIST', Uint8Array.from(singleView.map((b, i) => (i === 25 ? 127 : b)))],
    ['HLIT - 257 of 30', Uint8Array.from(singleView.map((b, i) => (i === 2 ? 30 : b)))],
    ['an empty view', new Uint8Array(0)],
  ];
  // The offsets the two cases above edit, checked rather than assumed: s ‖ head ‖ HLIT-257 ‖ HDIST-1 ‖ HCLEN-4 ‖ 19 lengths ‖ symbols.
  t.same([...singleView.subarray(1, 5)], [5, 1, 0, 15], 'the single-distance view: head 5, HLIT-257 1, HDIST-1 0, HCLEN-4 15');
  t.same([...singleView.subarray(24, 26)], [18, 86], 'then the first code-length symbol 18 with extra 86');
  for (const [name, view] of cases) {
    t.equal(outcome(() => huffDeflate(view)), 'corrupt', `huffDeflate: ${name}`);
    t.equal(outcome(() => deflateViewOutputLength(view)), 'corrupt', `deflateViewOutputLength: ${name}`);
  }
});

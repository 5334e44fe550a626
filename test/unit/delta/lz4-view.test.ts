/**
 * src/delta/view/lz4.ts: LZ4 legacy frames decoded, and re-encoded byte for byte as lz4 1.9.4's
 * `lz4 -l -LEVEL` makes them. The committed vectors (made by the real tool, scripts/make-lz4-vectors.ts)
 * run everywhere; the comparisons with the `lz4` tool itself run where it is installed (under CI
 * its absence fails). The real kernels are measured, not tested (docs/design/lz4-legacy.md).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ViewError } from '../../../src/delta/view/errors.ts';
import { LZ4_LEGACY_BLOCK_BYTES, LZ4_LEGACY_MAGIC, compressLz4Block, decodeLz4Block, decodeLz4Legacy, encodeLz4Legacy, findLz4Level } from '../../../src/delta/view/lz4.ts';
import { ROOT, missingTools, prng, testNeeding } from '../../helpers.ts';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
const u32le = (n: number) => Uint8Array.of(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
const MAGIC = u32le(LZ4_LEGACY_MAGIC);

/** The error a call ends in (or null). */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return null;
  } catch (err) {
    return err;
  }
}
const isView = (err: unknown, reason: ViewError['reason']) => err instanceof ViewError && err.reason === reason;

/** Words, runs, copies of earlier bytes and noise, from a seed: every branch of both match finders. */
function mixed(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  const words = ['larch', 'delta', 'kernel', 'lz4', 'legacy', 'frame', '\n', '    ', 'the', 'block', 'static', 'segment'].map((w) => Buffer.from(w + ' '));
  let at = 0;
  while (at < n) {
    const pick = r();
    if (pick < 0.55) {
      const w = words[Math.floor(r() * words.length)];
      for (let i = 0; i < w.length && at < n; i++) out[at++] = w[i];
    } else if (pick < 0.7) {
      const len = 1 + Math.floor(r() * (r() < 0.05 ? 3000 : 40));
      const v = Math.floor(r() * 4);
      for (let i = 0; i < len && at < n; i++) out[at++] = v;
    } else if (pick < 0.9 && at > 64) {
      const dist = 1 + Math.floor(r() * Math.min(at, r() < 0.5 ? 70000 : 2000));
      const len = 4 + Math.floor(r() * 60);
      for (let i = 0; i < len && at < n; i++, at++) out[at] = out[at - dist];
    } else {
      out[at++] = Math.floor(r() * 256);
    }
  }
  return out;
}
/** Random bytes, a third of them copies of earlier spans and a few runs: cheap for the hash chain (short chains), for the inputs of 8 MiB and more. */
function bulky(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const pick = r();
    const len = 4 + Math.floor(r() * 200);
    if (pick < 0.3 && at > 70000) {
      const dist = 1 + Math.floor(r() * 70000);
      for (let i = 0; i < len && at < n; i++, at++) out[at] = out[at - dist];
    } else if (pick < 0.33) {
      const v = Math.floor(r() * 256);
      for (let i = 0; i < len * 8 && at < n; i++) out[at++] = v;
    } else {
      for (let i = 0; i < len && at < n; i++) out[at++] = Math.floor(r() * 256);
    }
  }
  return out;
}
function random(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * 256);
  return out;
}

// ---- the committed vectors -----------------------------------------------------

interface Vector {
  comment: string;
  valid: boolean;
  level?: number;
  input?: string;
  frame: string;
}
const vectors = JSON.parse(readFileSync(join(ROOT, 'test/vectors/delta/view/lz4.json'), 'utf8')) as { source: string; vectors: Vector[] };

t.test('vectors made by lz4 1.9.4: each input encodes to exactly its frame, and the frame decodes to the input', async (t) => {
  t.match(vectors.source, /lz4 v1\.9\.4/);
  const valid = vectors.vectors.filter((v) => v.valid);
  t.ok(valid.length >= 30 && valid.some((v) => v.level === 9) && valid.some((v) => v.level === 1), `${valid.length} valid vectors, levels 1 and 9 among them`);
  for (const v of valid) {
    const input = hex(v.input!);
    const frame = hex(v.frame);
    t.ok(same(encodeLz4Legacy(input, v.level!), frame), `encode: ${v.comment}`);
    const { data, blocks } = decodeLz4Legacy(frame);
    t.ok(same(data, input), `decode: ${v.comment}`);
    t.equal(blocks.reduce((s, b) => s + 4 + b, 4), frame.length, `block sizes cover the frame: ${v.comment}`);
    const level = findLz4Level(frame, data, blocks);
    t.ok(level !== null && same(encodeLz4Legacy(input, level), frame), `findLz4Level gives a level that rebuilds it (${level}): ${v.comment}`);
    if (v.level === 9) t.equal(level, 9, `level 9 is tried first: ${v.comment}`);
  }
});

t.test('malformed vectors: ViewError corrupt, never another exception', async (t) => {
  const invalid = vectors.vectors.filter((v) => !v.valid);
  t.ok(invalid.length >= 10, `${invalid.length} malformed frames`);
  for (const v of invalid) {
    const err = thrown(() => decodeLz4Legacy(hex(v.frame)));
    t.ok(isView(err, 'corrupt'), `${v.comment}: ${String(err)}`);
  }
});

// ---- decoding: refusals ----------------------------------------------------------

t.test('decodeLz4Block: exact size, offsets inside the output, nothing after the last literals', async (t) => {
  const abcd = hex('4061626364'); // 4 literals, last sequence
  t.ok(same(decodeLz4Block(abcd, 4), Buffer.from('abcd')), 'literals only');
  // "abcd", then a match at offset 4 of length 4 + 4, then one literal: "abcdabcdabcde"
  const withMatch = hex('44616263640400' + '1065');
  t.equal(Buffer.from(decodeLz4Block(withMatch, 13)).toString(), 'abcdabcdabcde', 'a match that copies what it writes (offset < length)');
  t.ok(isView(thrown(() => decodeLz4Block(withMatch, 12)), 'corrupt'), 'decodes to more than declared: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(withMatch, 14)), 'corrupt'), 'decodes to less than declared: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(hex('44616263640000' + '1065'), 13)), 'corrupt'), 'offset 0: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(hex('44616263640500' + '1065'), 13)), 'corrupt'), 'offset past the start: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(hex('4461626364040010'), 13)), 'corrupt'), 'truncated last literals: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(hex('44616263640400'), 8)), 'corrupt'), 'ends after a match: corrupt');
  t.ok(isView(thrown(() => decodeLz4Block(new Uint8Array(0), 0)), 'corrupt'), 'an empty block has no token: corrupt');
  t.ok(same(decodeLz4Block(hex('00'), 0), new Uint8Array(0)), 'the empty block lz4 makes of no input (one zero token)');
  t.ok(isView(thrown(() => decodeLz4Block(hex('4f616263640400ffffffffff'), 100)), 'corrupt'), 'a match length running past the block: corrupt');
  t.throws(() => decodeLz4Block(abcd, -1), RangeError, 'a negative size is a caller mistake');
});

t.test('decodeLz4Legacy: every truncation of a valid frame is refused or is a shorter valid frame', async (t) => {
  const input = mixed(11, 20000);
  const frame = encodeLz4Legacy(input, 9);
  let refused = 0;
  for (let n = 0; n < frame.length; n++) {
    const err = thrown(() => decodeLz4Legacy(frame.subarray(0, n)));
    if (err === null) t.equal(n, 4, `only the bare magic decodes (${n} bytes)`);
    else if (isView(err, 'corrupt')) refused++;
    else t.fail(`truncated to ${n}: ${String(err)}`);
  }
  t.equal(refused, frame.length - 1, 'every other truncation: ViewError corrupt');
});

t.test('decodeLz4Legacy: blocks before the last hold exactly 8 MiB; maxDecoded bounds the output before it is allocated', async (t) => {
  const block = compressLz4Block(new Uint8Array(LZ4_LEGACY_BLOCK_BYTES - 1), 1);
  const short = cat(MAGIC, u32le(block.length), block, u32le(1), Uint8Array.of(0));
  const err = thrown(() => decodeLz4Legacy(short));
  t.ok(isView(err, 'corrupt') && /decodes to 8388607 bytes but is not the last/.test((err as Error).message), `a first block of 8 MiB - 1: ${String(err)}`);
  const full = compressLz4Block(new Uint8Array(LZ4_LEGACY_BLOCK_BYTES), 1);
  const two = cat(MAGIC, u32le(full.length), full, u32le(full.length), full);
  t.equal(decodeLz4Legacy(two).data.length, 2 * LZ4_LEGACY_BLOCK_BYTES, 'two blocks of 8 MiB');
  t.ok(isView(thrown(() => decodeLz4Legacy(two, 2 * LZ4_LEGACY_BLOCK_BYTES - 1)), 'limit'), 'one byte over maxDecoded: limit');
  t.ok(isView(thrown(() => decodeLz4Block(cat(full, Uint8Array.of(0)), LZ4_LEGACY_BLOCK_BYTES)), 'corrupt'), 'a byte after the last literals of a block: corrupt');
});

// ---- encoding: levels and limits -------------------------------------------------

t.test('compressLz4Block: levels 10-12 and anything outside 1-9 refused; more than 8 MiB over the limit', async (t) => {
  for (const level of [10, 11, 12]) t.ok(isView(thrown(() => compressLz4Block(Uint8Array.of(1, 2, 3), level)), 'refused'), `level ${level}: refused (optimal parser not ported)`);
  for (const level of [0, 13, 2.5, Number.NaN]) t.ok(isView(thrown(() => encodeLz4Legacy(Uint8Array.of(1), level)), 'refused'), `level ${level}: refused`);
  t.ok(isView(thrown(() => compressLz4Block(new Uint8Array(LZ4_LEGACY_BLOCK_BYTES + 1), 9)), 'limit'), '8 MiB + 1: limit');
  for (const level of [1, 2, 3, 5, 9]) {
    const input = mixed(level, 50000);
    t.ok(same(decodeLz4Block(compressLz4Block(input, level), input.length), input), `level ${level} round-trips`);
  }
});

t.test('findLz4Level: null when a later block is not what the winner makes, or the layout is not lz4 -l\'s', async (t) => {
  // A first block of zeros (every HC level makes the same of it, so each is tried on the second block too).
  const input = cat(new Uint8Array(LZ4_LEGACY_BLOCK_BYTES), mixed(21, 5000));
  const b0 = compressLz4Block(input.subarray(0, LZ4_LEGACY_BLOCK_BYTES), 9);
  t.ok(same(compressLz4Block(input.subarray(0, LZ4_LEGACY_BLOCK_BYTES), 3), b0), 'levels 3 and 9 make the same first block');
  const b1at9 = compressLz4Block(input.subarray(LZ4_LEGACY_BLOCK_BYTES), 9);
  const b1at3 = compressLz4Block(input.subarray(LZ4_LEGACY_BLOCK_BYTES), 3);
  t.notOk(same(b1at9, b1at3), 'levels 9 and 3 differ on the second block');
  const good = cat(MAGIC, u32le(b0.length), b0, u32le(b1at9.length), b1at9);
  const d = decodeLz4Legacy(good);
  t.equal(findLz4Level(good, d.data, d.blocks), 9, 'both blocks at 9: 9');
  t.ok(same(encodeLz4Legacy(input, 9), good), 'encodeLz4Legacy makes that frame');
  const atThree = cat(MAGIC, u32le(b0.length), b0, u32le(b1at3.length), b1at3);
  const d3 = decodeLz4Legacy(atThree);
  t.equal(findLz4Level(atThree, d3.data, d3.blocks), 3, 'second block at 3: level 9 fails it, and 3, the next level that made the first block, rebuilds both');
  const b1garbled = Uint8Array.from(b1at9);
  b1garbled[b1garbled.length - 1] ^= 1; // a literal of the last run: decodes, to other bytes
  const wrong = cat(MAGIC, u32le(b0.length), b0, u32le(b1garbled.length), b1garbled);
  const w = decodeLz4Legacy(wrong);
  t.equal(findLz4Level(wrong, w.data, w.blocks), 9, 'a changed literal is still what level 9 makes of the changed bytes');
  // A frame no level makes: the second block's sequences split differently (all literals).
  const literals = cat(Uint8Array.of(0xf0), Uint8Array.from([...new Array(Math.floor((5000 - 15) / 255)).fill(255), (5000 - 15) % 255]), input.subarray(LZ4_LEGACY_BLOCK_BYTES));
  const noLevel = cat(MAGIC, u32le(b0.length), b0, u32le(literals.length), literals);
  const n = decodeLz4Legacy(noLevel);
  t.ok(same(n.data, input), 'an all-literals second block decodes to the same input');
  t.equal(findLz4Level(noLevel, n.data, n.blocks), null, 'but no level makes it: null');
  const extra = cat(good, u32le(1), Uint8Array.of(0)); // an empty last block, which lz4 never writes
  t.ok(isView(thrown(() => decodeLz4Legacy(extra)), 'corrupt'), 'after a short block, another one: corrupt');
  const zeros = encodeLz4Legacy(new Uint8Array(LZ4_LEGACY_BLOCK_BYTES), 1);
  const zerosExtra = cat(zeros, u32le(1), Uint8Array.of(0));
  const e = decodeLz4Legacy(zerosExtra);
  t.equal(e.blocks.length, 2, 'after a full block, an empty one decodes');
  t.equal(findLz4Level(zerosExtra, e.data, e.blocks), null, 'but no level writes an empty block: null');
  t.equal(findLz4Level(Uint8Array.from(MAGIC), new Uint8Array(0), []), 9, 'the bare magic (empty input): 9, as every level makes it');
});

// ---- against the lz4 tool -------------------------------------------------------

const cannot = missingTools(['lz4']).map((tool) => `${tool} is not installed`).join(', ') || false;
const lz4 = (args: string[], input: Uint8Array) => {
  const r = spawnSync('lz4', args, { input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`lz4 ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length);
};

testNeeding(t, 'byte-exact with lz4 -l -LEVEL -c (lz4 1.9.4) on text, runs, random, empty and 1-byte inputs', cannot, { timeout: 120_000 }, async (t) => {
  const version = spawnSync('lz4', ['--version'], { encoding: 'utf8' });
  t.match(version.stdout + version.stderr, /v1\.9\.4/, 'the lz4 this port follows');
  const inputs: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['one byte', Uint8Array.of(0x61)],
    ['text (the design memo)', Uint8Array.from(readFileSync(join(ROOT, 'docs/design/issue-18-compression-aware-deltas.md')))],
    ['PRNG words, runs and copies', mixed(1, 300_000)],
    ['zero runs between random bytes', cat(random(2, 1000), new Uint8Array(200_000), random(3, 70_000), new Uint8Array(70_000), random(4, 13))],
    ['incompressible random', random(5, 150_000)],
    ['64 KiB + 10: the last size on lz4\'s 16-bit table', mixed(6, 65536 + 10)],
    ['64 KiB + 11: the first on its 32-bit table', mixed(6, 65536 + 11)],
  ];
  for (const [what, input] of inputs) {
    for (const level of [1, 2, 3, 4, 6, 8, 9]) {
      const want = lz4(['-l', `-${level}`, '-c'], input);
      t.ok(same(encodeLz4Legacy(input, level), want), `${what} (${input.length} B), level ${level}: ${want.length} B`);
    }
    const want9 = lz4(['-l', '-9', '-c'], input);
    t.ok(same(decodeLz4Legacy(want9).data, input), `${what}: lz4's level 9 frame decodes to the input`);
  }
});

testNeeding(t, 'byte-exact with lz4 -l on exactly 8 MiB (one block) and 8 MiB + 300,007 (two blocks)', cannot, { timeout: 180_000 }, async (t) => {
  for (const [what, size] of [['8 MiB', LZ4_LEGACY_BLOCK_BYTES], ['8 MiB + 300,007', LZ4_LEGACY_BLOCK_BYTES + 300_007]] as const) {
    const input = bulky(7, size);
    for (const level of [1, 3, 9]) {
      const want = lz4(['-l', `-${level}`, '-c'], input);
      const got = encodeLz4Legacy(input, level);
      t.ok(same(got, want), `${what}, level ${level}: ${want.length} B`);
      const { data, blocks } = decodeLz4Legacy(want);
      t.equal(blocks.length, Math.ceil(size / LZ4_LEGACY_BLOCK_BYTES), `${what}: ${blocks.length} block(s)`);
      t.ok(same(data, input), `${what}, level ${level}: decodes to the input`);
      if (level === 9) t.equal(findLz4Level(want, data, blocks), 9, `${what}: findLz4Level confirms 9 on every block`);
    }
  }
});

testNeeding(t, 'lz4 -l -12 and -10 frames (the optimal parser): findLz4Level gives null, so the generator falls back', cannot, { timeout: 120_000 }, async (t) => {
  const input = mixed(8, 200_000);
  const nine = lz4(['-l', '-9', '-c'], input);
  for (const level of [10, 12]) {
    const frame = lz4(['-l', `-${level}`, '-c'], input);
    t.notOk(same(frame, nine), `level ${level} differs from level 9 (${frame.length} vs ${nine.length} B)`);
    const { data, blocks } = decodeLz4Legacy(frame);
    t.ok(same(data, input), `level ${level} decodes`);
    t.equal(findLz4Level(frame, data, blocks), null, `level ${level}: no level 1-9 rebuilds it`);
  }
  const { data, blocks } = decodeLz4Legacy(nine);
  t.equal(findLz4Level(nine, data, blocks), 9, 'the same input at -9: 9');
  const three = lz4(['-l', '-3', '-c'], input);
  const d3 = decodeLz4Legacy(three);
  t.equal(findLz4Level(three, d3.data, d3.blocks), 3, 'at -3: 3');
});

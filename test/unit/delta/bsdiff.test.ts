import t from 'tap';
import { prng } from '../../helpers.ts';
import { existsSync, readFileSync } from 'node:fs';
import { brotliCompressSync, constants } from 'node:zlib';
import { type ControlEntry, type Patch, bsdiff, bspatch } from '../../../src/delta/bsdiff.ts';
import { suffixArray } from '../../../src/delta/suffix-array.ts';


const randInt = (rnd: () => number, n: number) => Math.floor(rnd() * n);
const randomBytes = (rnd: () => number, n: number, k = 256) => Uint8Array.from({ length: n }, () => randInt(rnd, k));
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;

/**
 * Why a patch is not well formed, or '' when it is: stream lengths match the control sums, every diff read
 * stays inside old, and no two neighbouring entries could be one (see pushEntry).
 */
function patchProblem(old: Uint8Array, p: Patch): string {
  let diffSum = 0;
  let extraSum = 0;
  let oldPos = 0;
  for (let i = 0; i < p.control.length; i++) {
    const { diffLen, extraLen, seek } = p.control[i];
    if (diffLen > 0 && (oldPos < 0 || oldPos + diffLen > old.length)) return `entry ${i} reads [${oldPos}, ${oldPos + diffLen}) of ${old.length}`;
    if (i > 0 && diffLen === 0) return `entry ${i} has no diff bytes: it belongs in entry ${i - 1}`;
    if (diffLen === 0 && extraLen === 0 && seek === 0) return `entry ${i} is empty`;
    if (i + 1 < p.control.length && extraLen === 0 && seek === 0) return `entry ${i + 1} continues entry ${i}`;
    diffSum += diffLen;
    extraSum += extraLen;
    oldPos += diffLen + seek;
  }
  if (diffSum !== p.diff.length) return `diff stream ${p.diff.length} bytes, control sum ${diffSum}`;
  if (extraSum !== p.extra.length) return `extra stream ${p.extra.length} bytes, control sum ${extraSum}`;
  return '';
}

/** The assertions roundTrip needs, from any (sub)test. */
interface Asserts {
  equal(found: unknown, wanted: unknown, message: string): unknown;
  ok(value: unknown, message: string): unknown;
}

/** Diffs, checks the patch's shape and the round trip, and returns the patch. */
function roundTrip(t: Asserts, old: Uint8Array, neu: Uint8Array, name: string): Patch {
  const p = bsdiff(old, neu);
  t.equal(patchProblem(old, p), '', `well formed: ${name}`);
  t.ok(equalBytes(bspatch(old, p), neu), `round trip: ${name}`);
  return p;
}

/** Compressed size of the three streams, each compressed on its own as bsdiff does (control as 3 x int32). */
function compressedBytes(p: Patch): { control: number; diff: number; extra: number; total: number } {
  const c = new Int32Array(p.control.length * 3);
  p.control.forEach((e, i) => c.set([e.diffLen, e.extraLen, e.seek], i * 3));
  const z = (b: Uint8Array) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 9, [constants.BROTLI_PARAM_LGWIN]: 24 } }).length;
  const sizes = { control: z(new Uint8Array(c.buffer)), diff: z(p.diff), extra: z(p.extra) };
  return { ...sizes, total: sizes.control + sizes.diff + sizes.extra };
}

const brotliBytes = (b: Uint8Array) => compressedBytes({ control: [], diff: b, extra: new Uint8Array(0) }).total;

// A stand-in for compiled code: functions made of instruction-like byte sequences and 5-byte relative calls
// (0xE8 rel32), then a table of absolute 64-bit function addresses. Rendering an edited function list
// again moves every call displacement and table entry past the edit, as relinking a program does.
interface Fn {
  id: number;
  body: Uint8Array;
  calls: { at: number; target: number }[];
}

function makeFunctions(rnd: () => number, count: number, vocabulary: Uint8Array[], firstId = 0): Fn[] {
  const fns: Fn[] = [];
  for (let f = 0; f < count; f++) fns.push(makeFunction(rnd, firstId + f, firstId + count, vocabulary));
  return fns;
}

function makeFunction(rnd: () => number, id: number, ids: number, vocabulary: Uint8Array[]): Fn {
  const parts: Uint8Array[] = [];
  const calls: Fn['calls'] = [];
  let len = 0;
  const target = 40 + randInt(rnd, 360);
  while (len < target) {
    const r = rnd();
    const part = r < 0.08 ? Uint8Array.of(0xe8, 0, 0, 0, 0) : r < 0.15 ? randomBytes(rnd, 1 + randInt(rnd, 4)) : vocabulary[randInt(rnd, vocabulary.length)];
    if (part[0] === 0xe8 && part.length === 5) calls.push({ at: len + 1, target: randInt(rnd, ids) });
    parts.push(part);
    len += part.length;
  }
  return { id, body: concat(...parts), calls };
}

function render(fns: Fn[]): Uint8Array {
  const base = 0x400000;
  const addr = new Map<number, number>();
  let size = 0;
  for (const f of fns) {
    addr.set(f.id, size);
    size += f.body.length;
  }
  const out = new Uint8Array(size + 8 * fns.length);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const f of fns) {
    out.set(f.body, at);
    for (const c of f.calls) {
      const to = addr.get(c.target) ?? 0; // a call to a deleted function points at the start
      view.setInt32(at + c.at, to - (at + c.at + 4), true);
    }
    at += f.body.length;
  }
  for (const f of fns) {
    view.setBigUint64(at, BigInt(base + (addr.get(f.id) ?? 0)), true);
    at += 8;
  }
  return out;
}

const vocabularyOf = (rnd: () => number) => Array.from({ length: 48 }, () => randomBytes(rnd, 1 + randInt(rnd, 7)));

/** Inserts `added` new functions and deletes `deleted`, and changes a few bytes in `changed`, at random places. */
function relink(rnd: () => number, fns: Fn[], vocabulary: Uint8Array[], edits: { added: number; deleted: number; changed: number }): Fn[] {
  const out: Fn[] = fns.map((f) => ({ ...f, body: f.body.slice() }));
  for (let i = 0; i < edits.deleted; i++) out.splice(randInt(rnd, out.length), 1);
  for (let i = 0; i < edits.added; i++) {
    out.splice(randInt(rnd, out.length + 1), 0, makeFunction(rnd, fns.length + i, fns.length, vocabulary));
  }
  for (let i = 0; i < edits.changed; i++) {
    const f = out[randInt(rnd, out.length)];
    const at = randInt(rnd, f.body.length);
    if (!f.calls.some((c) => at >= c.at - 1 && at < c.at + 4)) f.body[at] ^= 1 + randInt(rnd, 255);
  }
  return out;
}

t.test('empty and identical inputs', async (t) => {
  const data = randomBytes(prng(1), 100_000);
  const empty = new Uint8Array(0);

  const none = bsdiff(empty, empty);
  t.same(none.control, [], 'both empty: no entries');
  t.equal(none.diff.length + none.extra.length, 0);
  t.equal(bspatch(empty, none).length, 0);

  const fromNothing = roundTrip(t, empty, data, 'empty old');
  t.same(fromNothing.control, [{ diffLen: 0, extraLen: data.length, seek: 0 }], 'empty old: all extra');
  t.ok(equalBytes(fromNothing.extra, data));

  const toNothing = roundTrip(t, data, empty, 'empty new');
  t.same(toNothing.control, [], 'empty new: no entries');

  const same = roundTrip(t, data, data.slice(), 'identical');
  t.same(same.control, [{ diffLen: data.length, extraLen: 0, seek: 0 }], 'identical: one diff entry');
  t.ok(same.diff.every((b) => b === 0), 'identical: diff is all zeros');

  roundTrip(t, Uint8Array.of(5), Uint8Array.of(5), 'one byte, identical');
  roundTrip(t, Uint8Array.of(5), Uint8Array.of(6), 'one byte, changed');
  roundTrip(t, new Uint8Array(1000), new Uint8Array(3000), 'zeros grow');
  roundTrip(t, new Uint8Array(3000), new Uint8Array(1000), 'zeros shrink');
});

t.test('the @example round trips, with and without a precomputed suffix array', async (t) => {
  const old = new TextEncoder().encode('the quick brown fox jumps over the lazy dog; the quick brown fox');
  const neu = new TextEncoder().encode('the quick red fox jumps over the lazy dog; the quick red fox!!');
  const patch = bsdiff(old, neu);
  t.ok(equalBytes(bspatch(old, patch), neu));
  t.same(bsdiff(old, neu, suffixArray(old)), patch, 'same patch with sa given');
  t.throws(() => bsdiff(old, neu, new Int32Array(3)), RangeError, 'suffix array of the wrong length');
});

t.test('random pairs round trip', async (t) => {
  const rnd = prng(2026);
  let bad = 0;
  for (let i = 0; i < 400; i++) {
    const k = [1, 2, 4, 256][i % 4];
    const old = randomBytes(rnd, randInt(rnd, 600), k);
    const neu = randomBytes(rnd, randInt(rnd, 600), k);
    const p = bsdiff(old, neu);
    const problem = patchProblem(old, p);
    if (problem !== '' || !equalBytes(bspatch(old, p), neu)) {
      bad++;
      t.fail(`pair ${i} (alphabet ${k}): ${problem || 'round trip differs'}`);
    }
  }
  t.equal(bad, 0, '400 unrelated pairs');
});

t.test('edits round trip', async (t) => {
  const rnd = prng(42);
  let bad = 0;
  for (let i = 0; i < 300; i++) {
    const k = [2, 4, 16, 256][i % 4];
    const old = randomBytes(rnd, randInt(rnd, 3000), k);
    let neu = old.slice();
    for (let e = randInt(rnd, 8); e > 0; e--) {
      const at = randInt(rnd, neu.length + 1);
      const op = randInt(rnd, 4);
      if (op === 0) neu = concat(neu.subarray(0, at), randomBytes(rnd, randInt(rnd, 64), k), neu.subarray(at));
      else if (op === 1) neu = concat(neu.subarray(0, at), neu.subarray(Math.min(neu.length, at + randInt(rnd, 64))));
      else if (op === 2 && neu.length > 0) neu[at % neu.length] = randInt(rnd, k);
      else {
        const from = randInt(rnd, neu.length + 1);
        const block = neu.slice(from, from + randInt(rnd, 200));
        neu = concat(neu.subarray(0, at), block, neu.subarray(at));
      }
    }
    const p = bsdiff(old, neu);
    const problem = patchProblem(old, p);
    if (problem !== '' || !equalBytes(bspatch(old, p), neu)) {
      bad++;
      t.fail(`edit case ${i} (alphabet ${k}): ${problem || 'round trip differs'}`);
    }
  }
  t.equal(bad, 0, '300 edited pairs');
});

t.test('typical edits give small patches', async (t) => {
  const rnd = prng(7);
  const old = render(makeFunctions(rnd, 600, vocabularyOf(rnd)));
  const neuBrotli = (neu: Uint8Array) => brotliBytes(neu);

  const changed = old.slice();
  for (let i = 0; i < 20; i++) changed[randInt(rnd, changed.length)] ^= 0x55;
  const pc = roundTrip(t, old, changed, '20 bytes changed');
  t.ok(pc.extra.length <= 20, `byte changes go to the diff stream (${pc.extra.length} extra bytes)`);

  const block = randomBytes(rnd, 1000);
  const inserted = concat(old.subarray(0, 50_000), block, old.subarray(50_000));
  const pi = roundTrip(t, old, inserted, 'block inserted');
  t.ok(pi.extra.length >= 1000 && pi.extra.length < 1100, `inserted block is extra (${pi.extra.length} bytes)`);
  t.ok(pi.control.length <= 3, `few entries (${pi.control.length})`);

  const deleted = concat(old.subarray(0, 30_000), old.subarray(40_000));
  const pd = roundTrip(t, old, deleted, 'block deleted');
  t.equal(pd.extra.length, 0, 'a deletion needs no extra bytes');
  t.ok(pd.control.some((e) => e.seek >= 9000), 'it seeks over the deleted block');

  const a = old.subarray(0, 20_000);
  const b = old.subarray(20_000, 60_000);
  const c = old.subarray(60_000);
  const moved = concat(b, a, c);
  const pm = roundTrip(t, old, moved, 'blocks moved');
  t.ok(pm.extra.length < 100, `moved blocks come from old (${pm.extra.length} extra bytes)`);
  t.ok(pm.control.some((e) => e.seek < 0), 'a backward seek');

  // Relinked: new functions shift every later call displacement and table entry.
  const fns = makeFunctions(prng(8), 600, vocabularyOf(prng(9)));
  const before = render(fns);
  const after = render(relink(rnd, fns, vocabularyOf(prng(9)), { added: 3, deleted: 2, changed: 10 }));
  const pr = roundTrip(t, before, after, 'relinked program');
  const size = compressedBytes(pr).total;
  t.comment(`relinked program: ${after.length} bytes, brotli ${neuBrotli(after)}, patch ${size} compressed (${pr.control.length} entries)`);
  t.ok(size * 4 < neuBrotli(after), 'patch well under a quarter of the compressed new file');
});

const ls = '/usr/bin/ls';
t.test('real binaries', { skip: existsSync(ls) ? false : `${ls} is missing` }, async (t) => {
  const old = new Uint8Array(readFileSync(ls));
  const rnd = prng(3);

  // ls with 30 bytes changed and a 4 KiB block of new code inserted in the middle (random bytes: the
  // worst case for the extra stream).
  const changed = old.slice();
  for (let i = 0; i < 30; i++) changed[randInt(rnd, changed.length)] ^= 1 + randInt(rnd, 255);
  const mid = old.length >> 1;
  const neu = concat(changed.subarray(0, mid), randomBytes(rnd, 4096), changed.subarray(mid));
  const p = roundTrip(t, old, neu, 'modified ls');
  const size = compressedBytes(p);
  const full = brotliBytes(neu);
  t.comment(`modified ls: ${neu.length} bytes, brotli ${full}; patch: ${p.control.length} entries, diff ${p.diff.length}, extra ${p.extra.length}, compressed ${JSON.stringify(size)}`);
  t.ok(size.total < 4096 + 1024, 'patch is about the inserted block');
  t.ok(size.total * 8 < full, 'patch under an eighth of the compressed file');

  // dir and vdir are ls built with another default: a real pair of different builds.
  for (const other of ['/usr/bin/dir', '/usr/bin/vdir']) {
    if (!existsSync(other)) continue;
    const b = new Uint8Array(readFileSync(other));
    const pb = roundTrip(t, old, b, `ls to ${other}`);
    const sb = compressedBytes(pb);
    t.comment(`ls to ${other}: ${b.length} bytes, brotli ${brotliBytes(b)}; patch ${pb.control.length} entries, compressed ${JSON.stringify(sb)}`);
    t.ok(sb.total * 20 < brotliBytes(b), `ls to ${other}: patch under 5% of the compressed file`);
  }
});

t.test('bspatch refuses corrupt patches', async (t) => {
  const rnd = prng(11);
  const old = randomBytes(rnd, 5000, 4);
  const neu = concat(old.subarray(0, 2000), randomBytes(rnd, 100, 4), old.subarray(2500));
  const good = bsdiff(old, neu);
  t.ok(good.diff.length > 0 && good.extra.length > 0, 'the patch uses both streams');
  const withControl = (control: ControlEntry[], diff = new Uint8Array(control.reduce((s, e) => s + Math.max(0, e.diffLen), 0))): Patch => ({
    control,
    diff,
    extra: new Uint8Array(control.reduce((s, e) => s + Math.max(0, e.extraLen), 0)),
  });
  const cases: [string, Patch][] = [
    ['diff past the end of old', withControl([{ diffLen: old.length + 1, extraLen: 0, seek: 0 }])],
    ['seek past the end, then a read', withControl([{ diffLen: 10, extraLen: 0, seek: old.length }, { diffLen: 1, extraLen: 0, seek: 0 }])],
    ['seek before the start, then a read', withControl([{ diffLen: 1, extraLen: 0, seek: -5 }, { diffLen: 1, extraLen: 0, seek: 0 }])],
    ['diff stream one byte short', { ...good, diff: good.diff.subarray(0, good.diff.length - 1) }],
    ['extra stream one byte short', { ...good, extra: good.extra.subarray(0, good.extra.length - 1) }],
    ['diff stream one byte long', { ...good, diff: concat(good.diff, Uint8Array.of(0)) }],
    ['extra stream one byte long', { ...good, extra: concat(good.extra, Uint8Array.of(0)) }],
    ['negative diff length', withControl([{ diffLen: -1, extraLen: 0, seek: 0 }])],
    ['negative extra length', withControl([{ diffLen: 0, extraLen: -1, seek: 0 }])],
    ['fractional length', withControl([{ diffLen: 1.5, extraLen: 0, seek: 0 }])],
    ['NaN seek', withControl([{ diffLen: 1, extraLen: 0, seek: Number.NaN }])],
  ];
  for (const [name, patch] of cases) t.throws(() => bspatch(old, patch), RangeError, name);
  // Seeking out of range is harmless when nothing is read afterwards.
  t.same(Array.from(bspatch(old, withControl([{ diffLen: 3, extraLen: 0, seek: -100 }]))), Array.from(old.subarray(0, 3)), 'trailing seek out of range');
  t.ok(equalBytes(bspatch(old, good), neu), 'the untouched patch still applies');
});

t.test('timing: an 8 MB relinked program', async (t) => {
  const rnd = prng(2024);
  const vocabulary = vocabularyOf(rnd);
  const fns = makeFunctions(rnd, 37_000, vocabulary);
  const old = render(fns);
  const neu = render(relink(rnd, fns, vocabulary, { added: 40, deleted: 20, changed: 200 }));
  const t0 = performance.now();
  const sa = suffixArray(old);
  const t1 = performance.now();
  const p = bsdiff(old, neu, sa);
  const t2 = performance.now();
  t.ok(equalBytes(bspatch(old, p), neu), 'round trip');
  const size = compressedBytes(p).total;
  t.comment(
    `old ${old.length} bytes, new ${neu.length}: suffix array ${(t1 - t0).toFixed(0)} ms ` +
      `(${(old.length / 1048576 / ((t1 - t0) / 1000)).toFixed(1)} MiB/s), bsdiff ${(t2 - t1).toFixed(0)} ms; ` +
      `${p.control.length} entries, extra ${p.extra.length} bytes, ${size} bytes compressed, brotli of new ${brotliBytes(neu)}`,
  );
  t.ok(t2 - t0 < 60_000, 'under 60 s');
});

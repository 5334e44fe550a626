import t from 'tap';
import { prng } from '../../helpers.ts';
import { suffixArray } from '../../../src/delta/suffix-array.ts';


/** Lexicographic comparison of the suffixes at a and b; a proper prefix sorts first. */
function compareSuffixes(d: Uint8Array, a: number, b: number): number {
  const n = d.length;
  while (a < n && b < n) {
    if (d[a] !== d[b]) return d[a] - d[b];
    a++;
    b++;
  }
  return a === n ? (b === n ? 0 : -1) : 1;
}

function naive(d: Uint8Array): number[] {
  return Array.from({ length: d.length }, (_, i) => i).sort((a, b) => compareSuffixes(d, a, b));
}

/**
 * Checks a large result in linear time: a permutation in which each suffix is smaller than the next, judged
 * by the first byte and then by the ranks of the suffixes one byte on (the empty suffix ranks lowest).
 */
function isSuffixArray(d: Uint8Array, sa: Int32Array): boolean {
  const n = d.length;
  if (sa.length !== n) return false;
  const rank = new Int32Array(n + 1).fill(-1);
  for (let i = 0; i < n; i++) {
    const p = sa[i];
    if (p < 0 || p >= n || rank[p] !== -1) return false;
    rank[p] = i;
  }
  for (let i = 1; i < n; i++) {
    const a = sa[i - 1];
    const b = sa[i];
    if (d[a] > d[b] || (d[a] === d[b] && rank[a + 1] > rank[b + 1])) return false;
  }
  return true;
}

const bytes = (s: string) => new TextEncoder().encode(s);

t.test('small vectors', async (t) => {
  t.same(Array.from(suffixArray(bytes('banana'))), [5, 3, 1, 0, 4, 2], 'banana (the @example)');
  t.same(Array.from(suffixArray(new Uint8Array(0))), [], 'empty');
  t.same(Array.from(suffixArray(Uint8Array.of(7))), [0], 'one byte');
  t.same(Array.from(suffixArray(Uint8Array.of(0, 0, 0, 0))), [3, 2, 1, 0], 'all equal: shorter suffixes first');
  t.same(Array.from(suffixArray(Uint8Array.of(1, 2, 3, 4))), [0, 1, 2, 3], 'increasing');
  t.same(Array.from(suffixArray(Uint8Array.of(4, 3, 2, 1))), [3, 2, 1, 0], 'decreasing');
  t.same(Array.from(suffixArray(Uint8Array.of(255, 0, 255, 0))), [3, 1, 2, 0], 'extreme byte values');
  t.same(Array.from(suffixArray(bytes('mississippi'))), naive(bytes('mississippi')), 'mississippi');
  t.type(suffixArray(bytes('abc')), Int32Array);
});

t.test('random inputs match a naive sort', async (t) => {
  const rnd = prng(20260101);
  let cases = 0;
  let failures = 0;
  for (const k of [1, 2, 4, 256]) {
    for (let len = 0; len <= 2000; len += len < 64 ? 1 : 37 + Math.floor(rnd() * 50)) {
      const d = new Uint8Array(len);
      for (let i = 0; i < len; i++) d[i] = Math.floor(rnd() * k) * (k === 2 ? 255 : 1);
      const got = Array.from(suffixArray(d));
      if (JSON.stringify(got) !== JSON.stringify(naive(d))) {
        failures++;
        t.fail(`alphabet ${k}, length ${len}: ${Buffer.from(d).toString('hex').slice(0, 200)}`);
      }
      cases++;
    }
  }
  t.equal(failures, 0, `${cases} random inputs`);
});

/** Structured texts that stress the recursion: periodic, Fibonacci and Thue-Morse words, runs. */
function structured(rnd: () => number): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  const fib = (n: number) => {
    let a = 'b';
    let b = 'a';
    while (b.length < n) [a, b] = [b, b + a];
    return bytes(b.slice(0, n));
  };
  const thueMorse = (n: number) => Uint8Array.from({ length: n }, (_, i) => (popcount(i) & 1) + 97);
  for (const n of [2, 3, 5, 13, 100, 987, 2000]) {
    out.push([`fibonacci ${n}`, fib(n)]);
    out.push([`thue-morse ${n}`, thueMorse(n)]);
    for (const period of [1, 2, 3, 7, 64]) {
      const unit = Uint8Array.from({ length: period }, () => Math.floor(rnd() * 4));
      out.push([`period ${period}, length ${n}`, Uint8Array.from({ length: n }, (_, i) => unit[i % period])]);
    }
    out.push([`runs, length ${n}`, Uint8Array.from({ length: n }, (_, i) => Math.floor(Math.sqrt(i)) & 1)]);
    const block = Uint8Array.from({ length: 50 }, () => Math.floor(rnd() * 256));
    out.push([`repeated random block with noise, length ${n}`, Uint8Array.from({ length: n }, (_, i) => (rnd() < 0.01 ? 0 : block[i % 50]))]);
  }
  return out;
}

function popcount(x: number): number {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
}

t.test('structured inputs match a naive sort', async (t) => {
  for (const [name, d] of structured(prng(7))) t.same(Array.from(suffixArray(d)), naive(d), name);
});

t.test('large inputs are valid suffix arrays', async (t) => {
  const rnd = prng(99);
  const n = 1 << 20;
  const random = Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256));
  t.ok(isSuffixArray(random, suffixArray(random)), '1 MiB random');
  const zeros = new Uint8Array(n);
  const saZeros = suffixArray(zeros);
  t.ok(isSuffixArray(zeros, saZeros), '1 MiB zeros');
  t.equal(saZeros[0], n - 1, '1 MiB zeros: shortest first');
  // Fibonacci words halve at every level of SA-IS's recursion: the deepest case per byte.
  let a = Uint8Array.of(98);
  let b = Uint8Array.of(97);
  while (b.length < n) {
    const c = new Uint8Array(b.length + a.length);
    c.set(b);
    c.set(a, b.length);
    [a, b] = [b, c];
  }
  t.ok(isSuffixArray(b, suffixArray(b)), `${b.length} byte Fibonacci word`);
});

t.test('the linear-time checker refuses wrong arrays', async (t) => {
  const d = bytes('abracadabra');
  const good = suffixArray(d);
  t.ok(isSuffixArray(d, good));
  const swapped = good.slice();
  [swapped[3], swapped[4]] = [swapped[4], swapped[3]];
  t.notOk(isSuffixArray(d, swapped), 'two entries swapped');
  const dup = good.slice();
  dup[0] = dup[1];
  t.notOk(isSuffixArray(d, dup), 'not a permutation');
});

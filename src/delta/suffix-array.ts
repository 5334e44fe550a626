/**
 * Suffix arrays by induced sorting (SA-IS: Nong, Zhang & Chan, "Two Efficient Algorithms for Linear Time
 * Suffix Array Construction", 2009), the index bsdiff searches old files with. Pure: bytes in, Int32Array out.
 *
 * Conventions: no sentinel byte is appended; the end of the text acts as a virtual sentinel smaller than
 * every byte, so a proper prefix sorts before the longer suffix.
 *
 * Memory: the result (4n bytes) plus a packed copy of the text (2n bytes). Each symbol is stored with its
 * L/S type in the low bit (`symbol << 1 | type`), so the induce passes take one cache miss per suffix
 * instead of two (text and type array). The reduced problems live in the tail of the result array (each
 * is at most half as long as its parent) and are packed in place, as in the paper, so recursion allocates
 * only bucket tables. Depth is one level per halving: at most about log2(n).
 */

/** A packed text: `symbol << 1 | type`. Bytes at the top level, names of LMS substrings below. */
type Packed = Uint16Array | Int32Array;

/** Type bit: an S suffix is smaller than the suffix after it; an L suffix is larger. */
const S_TYPE = 1;

/**
 * The suffix array of `data`: the start offsets 0..n-1 of its suffixes in lexicographic order.
 * Linear time. Working memory beyond the 4n-byte result: 2n bytes, plus two Int32 bucket tables per
 * reduced problem, one entry per distinct LMS substring (measured: 20 MB for 52 MB of machine code;
 * at worst 4n bytes). About 2-4 MiB/s on one core of a shared VM (measured on binaries of 8-110 MB).
 *
 * @throws RangeError when `data` is too long for Int32 offsets (2^31 - 1 bytes or more)
 * @example
 * suffixArray(new TextEncoder().encode('banana')) // Int32Array [5, 3, 1, 0, 4, 2]
 */
export function suffixArray(data: Uint8Array): Int32Array {
  const n = data.length;
  if (n >= 0x7fffffff) throw new RangeError(`Cannot build a suffix array: input of ${n} bytes exceeds 2^31 - 2`);
  const sa = new Int32Array(n);
  if (n < 2) return sa; // [] or [0]
  const p = new Uint16Array(n);
  p.set(data);
  packTypes(p, n);
  sais(p, sa, n, 256);
  return sa;
}

/**
 * Replaces each raw symbol in p[0..n) with `symbol << 1 | type`, right to left so that p[i + 1] is already
 * packed. The last suffix is L (the virtual sentinel after it is smaller).
 */
function packTypes(p: Packed, n: number): void {
  let next = p[n - 1] << 1;
  p[n - 1] = next;
  for (let i = n - 2; i >= 0; i--) {
    const c = p[i];
    const d = next >> 1;
    next = (c << 1) | (c < d || (c === d && (next & S_TYPE) !== 0) ? S_TYPE : 0);
    p[i] = next;
  }
}

/** Whether position i > 0 is leftmost-S: an S right after an L. */
function isLms(p: Packed, i: number): boolean {
  return (p[i] & S_TYPE) !== 0 && (p[i - 1] & S_TYPE) === 0;
}

/** Bucket heads (first slot of each symbol's bucket) from the symbol counts. */
function bucketHeads(counts: Int32Array, bkt: Int32Array, k: number): void {
  let sum = 0;
  for (let c = 0; c < k; c++) {
    bkt[c] = sum;
    sum += counts[c];
  }
}

/** Bucket ends (one past the last slot of each symbol's bucket) from the symbol counts. */
function bucketEnds(counts: Int32Array, bkt: Int32Array, k: number): void {
  let sum = 0;
  for (let c = 0; c < k; c++) {
    sum += counts[c];
    bkt[c] = sum;
  }
}

/**
 * Induces the order of L suffixes left to right from the LMS suffixes already in place, then of S suffixes
 * right to left. Empty slots hold -1. The virtual sentinel is the smallest suffix and is preceded by
 * position n-1 (always L), so that suffix seeds the L pass.
 *
 * With `markLms`, the S pass also flags each LMS suffix it passes by storing it as ~q: it reads the type of
 * q - 1 anyway and q's type sits next to it, which spares the caller a pass of random reads to find them.
 */
function induce(p: Packed, sa: Int32Array, n: number, k: number, counts: Int32Array, bkt: Int32Array, markLms: boolean): void {
  bucketHeads(counts, bkt, k);
  sa[bkt[p[n - 1] >> 1]++] = n - 1;
  for (let i = 0; i < n; i++) {
    const j = sa[i] - 1;
    if (j < 0) continue;
    const v = p[j];
    if ((v & S_TYPE) === 0) sa[bkt[v >> 1]++] = j;
  }
  bucketEnds(counts, bkt, k);
  for (let i = n - 1; i >= 0; i--) {
    const j = sa[i] - 1;
    if (j < 0) continue;
    const v = p[j];
    if ((v & S_TYPE) !== 0) sa[--bkt[v >> 1]] = j;
    else if (markLms && (p[j + 1] & S_TYPE) !== 0) sa[i] = ~(j + 1);
  }
}

/**
 * Sorts the suffixes of the packed text p[0..n) (symbols in [0, k), n >= 2) into sa[0..n). p may be the
 * memory right after sa (the parent's reduced text); nothing here writes past sa[n - 1].
 */
function sais(p: Packed, sa: Int32Array, n: number, k: number): void {
  const counts = new Int32Array(k);
  for (let i = 0; i < n; i++) counts[p[i] >> 1]++;
  const bkt = new Int32Array(k);

  // Stage 1: bucket the LMS positions at their bucket ends and induce: the LMS substrings come out sorted.
  sa.fill(-1, 0, n);
  bucketEnds(counts, bkt, k);
  for (let i = 1; i < n; i++) {
    if (isLms(p, i)) sa[--bkt[p[i] >> 1]] = i;
  }
  induce(p, sa, n, k, counts, bkt, true);

  // Move the sorted LMS positions (flagged as ~j by induce; every slot is filled now) to the front.
  let n1 = 0;
  for (let i = 0; i < n; i++) {
    const j = sa[i];
    if (j < 0) sa[n1++] = ~j;
  }

  // Name the LMS substrings in sorted order: equal substrings get equal names. LMS positions are at least
  // two apart and lie in [1, n - 2], so sa[n1 + (j >> 1)] is a free, collision-free slot for j's name.
  sa.fill(-1, n1, n);
  let names = 0;
  let prev = -1;
  for (let i = 0; i < n1; i++) {
    const j = sa[i];
    if (prev < 0 || !equalLms(p, n, j, prev)) names++;
    prev = j;
    sa[n1 + (j >> 1)] = names - 1;
  }
  // Gather the names in text order into the tail: the reduced text s1 = sa[n - n1, n).
  for (let i = n - 1, j = n - 1; i >= n1; i--) {
    if (sa[i] >= 0) sa[j--] = sa[i];
  }

  // Stage 2: sort the reduced problem. Its suffix order is the order of the LMS suffixes.
  const s1 = sa.subarray(n - n1, n);
  const sa1 = sa.subarray(0, n1);
  if (names < n1) {
    packTypes(s1, n1);
    sais(s1, sa1, n1, names);
  } else {
    // All names distinct: the names are the ranks.
    for (let i = 0; i < n1; i++) sa1[s1[i]] = i;
  }

  // Stage 3: turn reduced ranks back into LMS positions (reusing s1 as the position table), put them at
  // their bucket ends in sorted order, and induce the full order.
  for (let i = 1, j = 0; i < n; i++) {
    if (isLms(p, i)) s1[j++] = i;
  }
  for (let i = 0; i < n1; i++) sa1[i] = s1[sa1[i]];
  sa.fill(-1, n1, n);
  bucketEnds(counts, bkt, k);
  // Right to left: the i-th smallest LMS suffix lands at or after slot i, so nothing unread is overwritten.
  for (let i = n1 - 1; i >= 0; i--) {
    const j = sa[i];
    sa[i] = -1;
    sa[--bkt[p[j] >> 1]] = j;
  }
  induce(p, sa, n, k, counts, bkt, false);
}

/**
 * Whether the LMS substrings at a and b (distinct LMS positions) are equal: same symbols and types up to and
 * including the next LMS position. A substring that runs into the end of the text includes the virtual
 * sentinel, which is unique, so it equals no other.
 */
function equalLms(p: Packed, n: number, a: number, b: number): boolean {
  for (let d = 0; ; d++) {
    const x = a + d;
    const y = b + d;
    if (x === n || y === n || p[x] !== p[y]) return false;
    // Symbols and types agree at d and d - 1, so either both are LMS here or neither is.
    if (d > 0 && isLms(p, x)) return true;
  }
}

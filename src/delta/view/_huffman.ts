/**
 * Deflate's constant tables and canonical Huffman codes (RFC 1951 §3.2.2, §3.2.5-7), shared by the
 * puff (decode) and huff (encode) halves of the PV1 view codec. The acceptance rules follow zlib's
 * inftrees.c exactly, so the view accepts what zlib's inflate accepts and nothing else.
 */

/** Length codes 257..285: base length and extra bits. */
export const LEN_BASE = Uint16Array.of(3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258);
export const LEN_EXTRA = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0);
/** Distance codes 0..29: base distance and extra bits. */
export const DIST_BASE = Uint16Array.of(1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577);
export const DIST_EXTRA = Uint8Array.of(0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13);
/** The order in which a dynamic header sends the code-length code's lengths. */
export const CL_ORDER = Uint8Array.of(16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15);

/** For a match length 3..258, its length code minus 257 (258 is always 285: the encoder never emits 284+31). */
export const LEN_CODE = new Uint8Array(259);
for (let c = 0; c < 29; c++) for (let l = LEN_BASE[c]; l < LEN_BASE[c] + (1 << LEN_EXTRA[c]) && l <= 258; l++) LEN_CODE[l] = c;
LEN_CODE[258] = 28;
/** For a distance 1..32768 at index distance-1, its distance code (32 KiB, built once). */
export const DIST_CODE = new Uint8Array(32768);
for (let c = 0; c < 30; c++) DIST_CODE.fill(c, DIST_BASE[c] - 1, Math.min(32768, DIST_BASE[c] - 1 + (1 << DIST_EXTRA[c])));

/**
 * The fixed code's lengths (RFC 1951 §3.2.6): 288 literal/length lengths, then 32 distance lengths
 * (codes 286, 287, 30 and 31 exist in the fixed code but are invalid when used, as in zlib).
 */
export const FIXED_LENGTHS = new Uint8Array(288 + 32);
FIXED_LENGTHS.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288).fill(5, 288);

const REVERSE_BYTE = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let r = 0;
  for (let b = 0; b < 8; b++) r |= ((i >> b) & 1) << (7 - b);
  REVERSE_BYTE[i] = r;
}
/** The low `len` bits of `code`, reversed (deflate sends Huffman codes most significant bit first). */
export const reverseBits = (code: number, len: number): number => ((REVERSE_BYTE[code & 0xff] << 8) | REVERSE_BYTE[code >>> 8]) >>> (16 - len);

/**
 * zlib's test of a set of code lengths (inftrees.c): over-subscribed is always an error; incomplete
 * is an error except for a literal/length or distance code (never the code-length code) whose only
 * code has length 1; no codes at all is accepted here (zlib fails later, when a symbol is decoded or
 * end-of-block is missing). `count[len]` is the number of symbols of each length 1..15.
 * Returns null, or what is wrong.
 */
export function checkCounts(count: Uint16Array, allowSingle: boolean): string | null {
  let left = 1;
  let max = 0;
  for (let len = 1; len <= 15; len++) {
    left = (left << 1) - count[len];
    if (left < 0) return 'over-subscribed';
    if (count[len] !== 0) max = len;
  }
  if (left > 0 && max !== 0 && !(allowSingle && max === 1)) return 'incomplete';
  return null;
}

/** Counts the lengths lens[start..start+n) into count[0..15]. */
export function countLengths(lens: Uint8Array, start: number, n: number, count: Uint16Array): void {
  count.fill(0);
  for (let i = start; i < start + n; i++) count[lens[i]]++;
  count[0] = 0;
}

/**
 * A table-driven decoder: `table[bits & mask]` is `symbol << 4 | length` for codes of up to
 * rootBits bits, -1 where a longer code starts (decoded by `slow`, rare by construction: such
 * codes have frequency under 2^-rootBits), 0 for bit patterns that are no code (incomplete codes).
 */
export class HuffmanDecoder {
  readonly table: Int32Array;
  readonly mask: number;
  private readonly count = new Uint16Array(16);
  private readonly symbols = new Uint16Array(288);
  private readonly offsets = new Uint16Array(16);
  private maxLen = 0;

  constructor(private readonly rootBits: number) {
    this.table = new Int32Array(1 << rootBits);
    this.mask = (1 << rootBits) - 1;
  }

  /** Builds the code for lens[start..start+n). Returns null, or what zlib would reject. */
  build(lens: Uint8Array, start: number, n: number, allowSingle: boolean): string | null {
    const { count, symbols, offsets, table, rootBits } = this;
    countLengths(lens, start, n, count);
    const bad = checkCounts(count, allowSingle);
    if (bad !== null) return bad;
    offsets[1] = 0;
    for (let len = 1; len < 15; len++) offsets[len + 1] = offsets[len] + count[len];
    let max = 0;
    for (let s = 0; s < n; s++) {
      const len = lens[start + s];
      if (len !== 0) {
        symbols[offsets[len]++] = s;
        if (len > max) max = len;
      }
    }
    this.maxLen = max;
    table.fill(0);
    let code = 0;
    let index = 0;
    for (let len = 1; len <= max; len++) {
      for (let k = count[len]; k > 0; k--) {
        const sym = symbols[index++];
        if (len <= rootBits) {
          const entry = (sym << 4) | len;
          for (let i = reverseBits(code, len); i < table.length; i += 1 << len) table[i] = entry;
        } else {
          table[reverseBits(code >>> (len - rootBits), rootBits)] = -1;
        }
        code++;
      }
      code <<= 1;
    }
    return null;
  }

  /**
   * Decodes a code longer than rootBits from `hold` (at least 15 valid bits), canonically
   * (as zlib's puff.c does). Returns `symbol << 4 | length`, or 0 when the bits are no code.
   */
  slow(hold: number): number {
    const { count, symbols, maxLen } = this;
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len <= maxLen; len++) {
      code |= hold & 1;
      hold >>>= 1;
      const c = count[len];
      if (code - c < first) return (symbols[index + code - first] << 4) | len;
      index += c;
      first = (first + c) << 1;
      code <<= 1;
    }
    return 0;
  }
}

/**
 * Canonical codes for encoding: codes[s] (bit-reversed, ready to send LSB first) and lengths[s]
 * (0: the symbol has no code) for s < n; entries from n up are cleared. Returns null, or what
 * zlib would reject about the lengths.
 */
export function buildEncoder(lens: Uint8Array, start: number, n: number, allowSingle: boolean, codes: Uint16Array, lengths: Uint8Array, count: Uint16Array): string | null {
  countLengths(lens, start, n, count);
  const bad = checkCounts(count, allowSingle);
  if (bad !== null) return bad;
  const next = new Uint16Array(16);
  let code = 0;
  for (let len = 1; len <= 15; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
  }
  lengths.fill(0);
  for (let s = 0; s < n; s++) {
    const len = lens[start + s];
    lengths[s] = len;
    if (len !== 0) codes[s] = reverseBits(next[len]++, len);
  }
  return null;
}

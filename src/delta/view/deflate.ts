/**
 * The deflate puff view PV1 (docs/design/pv1.md): `puffDeflate` parses a raw deflate stream
 * (RFC 1951) into, per block, its structure S_b (header, code-length sequence, LZ77 tokens) and its
 * decompressed bytes U_b; `huffDeflate` re-emits the exact bits from that view with no match search,
 * whatever encoder made the stream (GNU gzip, zlib, zopfli, 7-Zip, stored blocks). Pure: bytes in,
 * bytes out. The hot loops keep the bit buffer in locals (no closures over them: V8 would move them
 * to a context object) and decode through root tables.
 */
import * as tables from './_huffman.ts';
import { FIXED_LENGTHS, HuffmanDecoder, buildEncoder } from './_huffman.ts';
import { ViewError } from './errors.ts';

/** Largest decompressed size of one stream's view the codecs produce or accept (256 MiB). */
export const MAX_VIEW_BYTES = 256 * 1024 * 1024;
/** Largest structure S_b of one block (1 MiB): the one per-block buffer the device holds. */
export const MAX_BLOCK_STRUCTURE_BYTES = 1024 * 1024;

/** Deflate's window: the farthest a distance reaches back. */
const WINDOW = 32768;
/** Root table bits: 10 covers every fixed code and nearly every dynamic literal; longer codes take `slow`. */
const LIT_ROOT = 10;
const DIST_ROOT = 8;

// Module-local copies of the tables: the hot loops must not read them through an import binding
// (a transpiler may turn those into property getters, which costs half the time under tsx).
const CL_ORDER = tables.CL_ORDER;
const LEN_BASE = tables.LEN_BASE;
const LEN_EXTRA = tables.LEN_EXTRA;
const LEN_CODE = tables.LEN_CODE;
const DIST_BASE = tables.DIST_BASE;
const DIST_EXTRA = tables.DIST_EXTRA;
const DIST_CODE = tables.DIST_CODE;

const corrupt = (message: string): never => {
  throw new ViewError('corrupt', message);
};
const truncated = (): never => corrupt('deflate stream: ends before its final block does');

let fixed: { lit: HuffmanDecoder; dist: HuffmanDecoder } | null = null;
function fixedDecoders(): { lit: HuffmanDecoder; dist: HuffmanDecoder } {
  if (fixed === null) {
    const lit = new HuffmanDecoder(LIT_ROOT);
    const dist = new HuffmanDecoder(DIST_ROOT);
    lit.build(FIXED_LENGTHS, 0, 288, false);
    dist.build(FIXED_LENGTHS, 288, 32, false);
    fixed = { lit, dist };
  }
  return fixed;
}

/** Writes v as LEB128 at buf[at]; returns the position after it. buf has room (callers reserve 8 bytes a number). */
function putLeb(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}

const lebSize = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

/** A copy of buf[0..used) in a buffer of at least `need` bytes (doubling, capped at `cap`). */
function grown(buf: Uint8Array, used: number, need: number, cap: number): Uint8Array<ArrayBuffer> {
  const bigger = new Uint8Array(Math.min(cap, Math.max(need, buf.length * 2)));
  bigger.set(buf.subarray(0, used));
  return bigger;
}

/** Where a puff error is: `at` is approximate (the bit buffer holds up to 4 bytes read ahead). */
const puffAt = (blockNo: number, at: number): string => `deflate stream: block ${blockNo} (near compressed byte ${at})`;

const overLimit = (what: string, limit: number): never => {
  throw new ViewError('limit', `deflate stream: ${what} is over the ${limit}-byte limit`);
};

/**
 * puffDeflate's working buffers, left by one call for the next (it is synchronous, so calls never
 * overlap; one that throws leaves none). A fresh 96 KiB per stream was most of the garbage of a
 * delta's part of small .gz files, and the allocator kept those pages resident for a while after
 * the collector freed them. Kept up to SPARE_MAX_BYTES each.
 */
const spare: { ubuf: Uint8Array<ArrayBuffer> | null; sbuf: Uint8Array<ArrayBuffer> | null } = { ubuf: null, sbuf: null };
const SPARE_MAX_BYTES = 1024 * 1024;

/**
 * Parses the raw deflate stream (RFC 1951) that starts at data[offset] and returns its PV1 view
 * (memo §3.3) and `used`, the number of compressed bytes the stream spans (its last byte included,
 * even when only some of its bits belong to the stream). Throws ViewError: 'corrupt' for anything
 * zlib's inflate rejects (including running out of input), 'refused' for valid streams the encoder
 * would not re-emit exactly (length 258 coded as 284+31, preset dictionary n/a here), 'limit' when
 * the view would exceed maxView or a block's S_b exceeds MAX_BLOCK_STRUCTURE_BYTES. `into`, a
 * buffer of exactly expectView bytes, receives a view of that size in place (and is returned).
 */
export function puffDeflate(data: Uint8Array, offset = 0, maxView = MAX_VIEW_BYTES, expectView?: number, into?: Uint8Array): { view: Uint8Array; used: number } {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset > data.length) throw new RangeError(`puffDeflate: offset ${offset} is outside 0..${data.length}`);
  if (!(maxView >= 0)) throw new RangeError(`puffDeflate: maxView ${maxView} is not a size`);
  const limit = Math.min(maxView, MAX_VIEW_BYTES);
  const end = data.length;
  const { lit: fixedLit, dist: fixedDist } = fixedDecoders();
  const litDec = new HuffmanDecoder(LIT_ROOT);
  const distDec = new HuffmanDecoder(DIST_ROOT);
  const clDec = new HuffmanDecoder(7);
  const clLens = new Uint8Array(19);
  const lens = new Uint8Array(286 + 30);

  // The bit buffer: `bits` valid bits in `hold`, LSB first. Past the end of data, refills feed zero
  // bytes (pos keeps counting) and throw once a consumed bit would be one of them.
  let pos = offset;
  let hold = 0;
  let bits = 0;

  // The first chunk: the view's size when the caller knows it (then the view is made in place, not
  // copied), else ~4x the compressed bytes (data may hold more than this stream), at most 1 MiB.
  // A known size is trusted up to 16x the compressed bytes: a view is rarely over 5x. `into`, the
  // caller's buffer of exactly that size, is then the first chunk: a view of that size is returned in it.
  const trusted = expectView !== undefined && expectView <= limit && expectView <= (end - offset) * 16;
  const view = new ChunkWriter(
    trusted && into !== undefined && into.length === expectView && expectView > 0 ? into : trusted ? Math.max(1, expectView) : Math.min(limit + 1, Math.max(1 << 12, Math.min((end - offset) * 4, 1 << 20))),
  );
  let vlen = 0;
  // Both working buffers are taken from the last call's, when it left them (never read before written:
  // distances are checked against what this stream produced, not against the buffer).
  let sbuf = spare.sbuf ?? new Uint8Array(4096);
  // The current block's U_b, after up to WINDOW bytes of what came before it (the matches' source).
  let ubuf = spare.ubuf ?? new Uint8Array(WINDOW + (1 << 16));
  spare.sbuf = spare.ubuf = null;
  let u = 0;
  /** Decompressed bytes of the blocks before the current one. */
  let produced = 0;
  let final = 0;
  let blockNo = 0;

  while (final === 0) {
    while (bits <= 24) {
      if (pos < end) hold |= data[pos] << bits;
      else if (bits < (pos - end) * 8) truncated();
      pos++;
      bits += 8;
    }
    final = hold & 1;
    const type = (hold >>> 1) & 3;
    hold >>>= 3;
    bits -= 3;
    sbuf[0] = final | (type << 1);
    let slen = 1;
    const blockStart = u;

    if (type === 0) {
      const k = bits & 7;
      const pad = hold & ((1 << k) - 1);
      bits -= k;
      // Hand the whole bytes still in the bit buffer back to the input: the block is byte-aligned.
      pos -= bits >>> 3;
      hold = 0;
      bits = 0;
      if (pos + 4 > end) truncated();
      const len = data[pos] | (data[pos + 1] << 8);
      const nlen = data[pos + 2] | (data[pos + 3] << 8);
      pos += 4;
      if ((len ^ 0xffff) !== nlen) corrupt(`${puffAt(blockNo, pos - offset)}: stored block LEN ${len} and NLEN ${nlen} do not match`);
      if (pos + len > end) truncated();
      sbuf[1] = pad;
      slen = putLeb(sbuf, 2, len);
      if (vlen + slen + len > limit) overLimit('view', limit);
      if (u + len > ubuf.length) ubuf = grown(ubuf, u, u + len, Infinity);
      ubuf.set(data.subarray(pos, pos + len), u);
      u += len;
      pos += len;
    } else if (type === 3) {
      corrupt(`${puffAt(blockNo, pos - offset)}: block type 3 is reserved`);
    } else {
      let L = fixedLit;
      let D = fixedDist;
      if (type === 2) {
        while (bits <= 24) {
          if (pos < end) hold |= data[pos] << bits;
          else if (bits < (pos - end) * 8) truncated();
          pos++;
          bits += 8;
        }
        const hlit = (hold & 31) + 257;
        const hdist = ((hold >>> 5) & 31) + 1;
        const hclen = ((hold >>> 10) & 15) + 4;
        hold >>>= 14;
        bits -= 14;
        if (hlit > 286 || hdist > 30) corrupt(`${puffAt(blockNo, pos - offset)}: ${hlit} literal/length or ${hdist} distance codes, over 286 or 30`);
        sbuf[1] = hlit - 257;
        sbuf[2] = hdist - 1;
        sbuf[3] = hclen - 4;
        slen = 4;
        clLens.fill(0);
        for (let i = 0; i < hclen; i++) {
          if (bits < 3) {
            while (bits <= 24) {
              if (pos < end) hold |= data[pos] << bits;
              else if (bits < (pos - end) * 8) truncated();
              pos++;
              bits += 8;
            }
          }
          const v = hold & 7;
          hold >>>= 3;
          bits -= 3;
          clLens[CL_ORDER[i]] = v;
          sbuf[slen++] = v;
        }
        const clBad = clDec.build(clLens, 0, 19, false);
        if (clBad !== null) corrupt(`${puffAt(blockNo, pos - offset)}: ${clBad} code-length code`);
        const total = hlit + hdist;
        const clt = clDec.table;
        let have = 0;
        while (have < total) {
          if (bits < 14) {
            while (bits <= 24) {
              if (pos < end) hold |= data[pos] << bits;
              else if (bits < (pos - end) * 8) truncated();
              pos++;
              bits += 8;
            }
          }
          const e = clt[hold & 127];
          if (e === 0) corrupt(`${puffAt(blockNo, pos - offset)}: invalid code-length code`);
          const sym = e >>> 4;
          hold >>>= e & 15;
          bits -= e & 15;
          sbuf[slen++] = sym;
          if (sym < 16) {
            lens[have++] = sym;
            continue;
          }
          let rep: number;
          let x: number;
          let val = 0;
          if (sym === 16) {
            if (have === 0) corrupt(`${puffAt(blockNo, pos - offset)}: code-length repeat with no previous length`);
            val = lens[have - 1];
            x = hold & 3;
            rep = 3 + x;
            hold >>>= 2;
            bits -= 2;
          } else if (sym === 17) {
            x = hold & 7;
            rep = 3 + x;
            hold >>>= 3;
            bits -= 3;
          } else {
            x = hold & 127;
            rep = 11 + x;
            hold >>>= 7;
            bits -= 7;
          }
          sbuf[slen++] = x;
          if (have + rep > total) corrupt(`${puffAt(blockNo, pos - offset)}: code-length repeat runs past ${total} lengths`);
          lens.fill(val, have, have + rep);
          have += rep;
        }
        if (lens[256] === 0) corrupt(`${puffAt(blockNo, pos - offset)}: no code for end-of-block`);
        const litBad = litDec.build(lens, 0, hlit, true);
        if (litBad !== null) corrupt(`${puffAt(blockNo, pos - offset)}: ${litBad} literal/length code`);
        const distBad = distDec.build(lens, hlit, hdist, true);
        if (distBad !== null) corrupt(`${puffAt(blockNo, pos - offset)}: ${distBad} distance code`);
        L = litDec;
        D = distDec;
      }

      const lt = L.table;
      const lm = L.mask;
      const dt = D.table;
      const dm = D.mask;
      let litrun = 0;
      // Checked at the loop's top: room for one more match in ubuf, and the view still under the limit.
      let uStop = Math.min(ubuf.length - 259, blockStart + limit - vlen);
      let sStop = sbuf.length - 32;
      for (;;) {
        if (u > uStop) {
          if (u - blockStart > limit - vlen - slen) overLimit('view', limit);
          if (u > ubuf.length - 259) ubuf = grown(ubuf, u, u + 259, limit + 2 * WINDOW + 1024);
          uStop = Math.min(ubuf.length - 259, blockStart + limit - vlen);
        }
        // 20 bits: a literal/length code (up to 15) and its extra bits (up to 5).
        if (bits < 20) {
          while (bits <= 24) {
            if (pos < end) hold |= data[pos] << bits;
            else if (bits < (pos - end) * 8) truncated();
            pos++;
            bits += 8;
          }
        }
        let e = lt[hold & lm];
        if (e <= 0) {
          if (e === 0 || (e = L.slow(hold)) === 0) corrupt(`${puffAt(blockNo, pos - offset)}: invalid literal/length code`);
        }
        hold >>>= e & 15;
        bits -= e & 15;
        let sym = e >>> 4;
        if (sym < 256) {
          ubuf[u++] = sym;
          litrun++;
          continue;
        }
        if (slen > sStop) {
          if (slen > MAX_BLOCK_STRUCTURE_BYTES) overLimit(`block ${blockNo}'s structure`, MAX_BLOCK_STRUCTURE_BYTES);
          sbuf = grown(sbuf, slen, slen + 64, MAX_BLOCK_STRUCTURE_BYTES + 64);
          sStop = sbuf.length - 32;
        }
        if (sym === 256) {
          slen = putLeb(sbuf, slen, litrun);
          sbuf[slen++] = 0;
          break;
        }
        sym -= 257;
        if (sym >= 29) corrupt(`${puffAt(blockNo, pos - offset)}: invalid literal/length code ${sym + 257}`);
        let length = LEN_BASE[sym];
        const lx = LEN_EXTRA[sym];
        if (lx !== 0) {
          length += hold & ((1 << lx) - 1);
          hold >>>= lx;
          bits -= lx;
          if (length === 258) throw new ViewError('refused', `${puffAt(blockNo, pos - offset)}: length 258 coded as 284 with extra bits 31 (an encoder re-emits it as 285)`);
        }
        if (bits < 15) {
          while (bits <= 24) {
            if (pos < end) hold |= data[pos] << bits;
            else if (bits < (pos - end) * 8) truncated();
            pos++;
            bits += 8;
          }
        }
        e = dt[hold & dm];
        if (e <= 0) {
          if (e === 0 || (e = D.slow(hold)) === 0) corrupt(`${puffAt(blockNo, pos - offset)}: invalid distance code`);
        }
        hold >>>= e & 15;
        bits -= e & 15;
        const dsym = e >>> 4;
        if (dsym >= 30) corrupt(`${puffAt(blockNo, pos - offset)}: invalid distance code ${dsym}`);
        let dist = DIST_BASE[dsym];
        const dx = DIST_EXTRA[dsym];
        if (dx !== 0) {
          if (bits < dx) {
            while (bits <= 24) {
              if (pos < end) hold |= data[pos] << bits;
              else if (bits < (pos - end) * 8) truncated();
              pos++;
              bits += 8;
            }
          }
          dist += hold & ((1 << dx) - 1);
          hold >>>= dx;
          bits -= dx;
        }
        if (dist > produced + (u - blockStart)) corrupt(`${puffAt(blockNo, pos - offset)}: distance ${dist} reaches before the start of the stream`);
        if (litrun < 0x80) sbuf[slen++] = litrun;
        else slen = putLeb(sbuf, slen, litrun);
        litrun = 0;
        sbuf[slen++] = length - 2; // 1..256: one byte, or two for 128..256
        if (length - 2 >= 0x80) {
          sbuf[slen - 1] = ((length - 2) & 0x7f) | 0x80;
          sbuf[slen++] = (length - 2) >>> 7;
        }
        slen = putLeb(sbuf, slen, dist - 1);
        let from = u - dist;
        if (length >= 32 && dist >= length) {
          // Long and not overlapping: a native copy beats the byte loop.
          ubuf.copyWithin(u, from, from + length);
          u += length;
        } else {
          for (const stop = u + length; u < stop; ) ubuf[u++] = ubuf[from++];
        }
      }
    }

    if (slen > MAX_BLOCK_STRUCTURE_BYTES) overLimit(`block ${blockNo}'s structure`, MAX_BLOCK_STRUCTURE_BYTES);
    const ulen = u - blockStart;
    const need = vlen + lebSize(slen) + slen + ulen + final;
    if (need > limit) overLimit('view', limit);
    view.leb(slen);
    view.write(sbuf.subarray(0, slen));
    view.write(ubuf.subarray(blockStart, u));
    vlen = need - final;
    produced += ulen;
    // Keep only the window before the next block.
    if (u > 2 * WINDOW) {
      ubuf.copyWithin(0, u - WINDOW, u);
      u = WINDOW;
    }
    blockNo++;
  }

  const k = bits & 7;
  const tail = hold & ((1 << k) - 1);
  bits -= k;
  const stop = pos - (bits >>> 3);
  if (stop > end) truncated();
  view.write(Uint8Array.of(tail));
  if (ubuf.length <= SPARE_MAX_BYTES) spare.ubuf = ubuf;
  if (sbuf.length <= SPARE_MAX_BYTES) spare.sbuf = sbuf;
  return { view: view.finish(), used: stop - offset };
}

/**
 * The view as it is written: a list of chunks (1-16 MiB; the first one smaller), joined once at the
 * end into a buffer of the exact size. A single buffer grown by doubling would copy the view once
 * more on average, and once again to hand back a right-sized one.
 */
class ChunkWriter {
  private readonly chunks: Uint8Array[] = [];
  private cur: Uint8Array;
  private fill = 0;
  private total = 0;

  /** `first`: the first chunk's size, or the chunk itself (a caller's buffer the view starts in). */
  constructor(first: number | Uint8Array) {
    this.cur = typeof first === 'number' ? new Uint8Array(first) : first;
  }

  write(src: Uint8Array): void {
    let at = 0;
    while (at < src.length) {
      if (this.fill === this.cur.length) {
        this.chunks.push(this.cur);
        this.cur = new Uint8Array(Math.max(1 << 20, Math.min(src.length - at, 1 << 24)));
        this.fill = 0;
      }
      const n = Math.min(src.length - at, this.cur.length - this.fill);
      this.cur.set(src.subarray(at, at + n), this.fill);
      this.fill += n;
      at += n;
    }
    this.total += src.length;
  }

  leb(v: number): void {
    const b = new Uint8Array(8);
    this.write(b.subarray(0, putLeb(b, 0, v)));
  }

  finish(): Uint8Array {
    if (this.chunks.length === 0) return this.fill === this.cur.length ? this.cur : this.cur.slice(0, this.fill);
    const out = new Uint8Array(this.total);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    out.set(this.cur.subarray(0, this.fill), at);
    return out;
  }
}

/** Reads the view: LEB128 numbers (at most 8 bytes, minimal, safe integers) within a bound. */
class ViewReader {
  p = 0;
  constructor(readonly view: Uint8Array) {}

  leb(bound: number): number {
    const { view } = this;
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.p >= bound) return corrupt(`deflate view: ends inside a number at byte ${this.p}`);
      const b = view[this.p++];
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (b === 0 && i > 0) corrupt(`deflate view: overlong number at byte ${this.p - 1}`);
        if (!Number.isSafeInteger(v)) corrupt(`deflate view: number too large at byte ${this.p - 1}`);
        return v;
      }
      scale *= 0x80;
    }
    return corrupt(`deflate view: number longer than 8 bytes at byte ${this.p}`);
  }

  byte(bound: number): number {
    if (this.p >= bound) return corrupt(`deflate view: block structure ends early at byte ${this.p}`);
    return this.view[this.p++];
  }
}

/** Literal bytes emitted between two output-room checks (at most 15 bits each). */
const LIT_CHUNK = 8192;
/**
 * Spare room after an output of known size: more than what a block header (1024) and a match (64)
 * ask for before they write, so neither grows the buffer; a run of over ~1000 literals at the very
 * end still may (a copy, rare). 2 KiB, not the 16 KiB a LIT_CHUNK run asks for: the many small
 * .gz files of an update would each carry that.
 */
const OUT_HEADROOM = 2048;

/**
 * A caller's output buffer for huffDeflate, kept between calls: the many small .gz files of an
 * update are then re-encoded into one buffer instead of one each (view.ts, ViewBuffers). Taken when it is large enough; replaced when it is not and the
 * output is at most SPARE_MAX_BYTES.
 */
export interface HuffScratch {
  deflateOut?: Uint8Array;
}

/**
 * huff: re-emits the deflate bits of a PV1 view. With `count` only the decompressed length is
 * wanted: the same checks run, and the output goes to a small buffer that is overwritten.
 */
function foldView(view: Uint8Array, count: boolean, expectBytes?: number, scratch?: HuffScratch): { out: Uint8Array; outputLength: number } {
  if (view.length > MAX_VIEW_BYTES + 1) throw new ViewError('limit', `deflate view: ${view.length} bytes, over the ${MAX_VIEW_BYTES}-byte limit`);
  const r = new ViewReader(view);
  const vend = view.length;
  // The output's size when the caller knows it, plus OUT_HEADROOM, so it rarely grows and is not
  // copied at the end; trusted up to the view's own size plus deflate's overhead. Else half the
  // view, grown as needed.
  const first = expectBytes !== undefined ? Math.min(expectBytes, vend + 1024) + OUT_HEADROOM : Math.max(1024, Math.min(vend >>> 1, 1 << 24));
  const kept = scratch?.deflateOut;
  let out = count ? new Uint8Array(1 << 16) : kept !== undefined && kept.length >= first ? kept : new Uint8Array(first);
  if (scratch !== undefined && !count && out !== kept && first <= SPARE_MAX_BYTES) scratch.deflateOut = out;
  let o = 0;
  let acc = 0;
  let n = 0;
  const clLens = new Uint8Array(19);
  const lens = new Uint8Array(286 + 30);
  const tmpCount = new Uint16Array(16);
  const clCodes = new Uint16Array(19);
  const clLengths = new Uint8Array(19);
  const dynLitCodes = new Uint16Array(288);
  const dynLitLengths = new Uint8Array(288);
  const dynDistCodes = new Uint16Array(32);
  const dynDistLengths = new Uint8Array(32);
  const fixLitCodes = new Uint16Array(288);
  const fixLitLengths = new Uint8Array(288);
  const fixDistCodes = new Uint16Array(32);
  const fixDistLengths = new Uint8Array(32);
  buildEncoder(FIXED_LENGTHS, 0, 288, false, fixLitCodes, fixLitLengths, tmpCount);
  buildEncoder(FIXED_LENGTHS, 288, 32, false, fixDistCodes, fixDistLengths, tmpCount);

  let produced = 0;
  let final = 0;
  let blockNo = 0;
  while (final === 0) {
    const s = r.leb(vend);
    const where = () => `deflate view: block ${blockNo} (at view byte ${r.p})`;
    if (s > MAX_BLOCK_STRUCTURE_BYTES) corrupt(`${where()}: structure of ${s} bytes, over ${MAX_BLOCK_STRUCTURE_BYTES}`);
    if (s > vend - r.p) corrupt(`${where()}: structure of ${s} bytes runs past the view's end`);
    const sEnd = r.p + s;
    const head = r.byte(sEnd);
    if (head > 5) corrupt(`${where()}: head ${head} is not BFINAL | BTYPE << 1 with BTYPE 0..2`);
    final = head & 1;
    const type = head >>> 1;
    if (o > out.length - 1024) {
      if (count) o = 0;
      else out = grown(out, o, o + 1024, Infinity);
    }
    acc |= head << n;
    n += 3;
    if (n >= 16) {
      out[o++] = acc;
      out[o++] = acc >>> 8;
      acc >>>= 16;
      n -= 16;
    }
    let u = sEnd;

    if (type === 0) {
      const pad = r.byte(sEnd);
      const k = (8 - (n & 7)) & 7;
      if (pad >>> k !== 0) corrupt(`${where()}: pad ${pad} does not fit the ${k} bits to the byte boundary`);
      acc |= pad << n;
      n += k;
      while (n > 0) {
        out[o++] = acc;
        acc >>>= 8;
        n -= 8;
      }
      acc = 0;
      n = 0;
      const len = r.leb(sEnd);
      if (len > 0xffff) corrupt(`${where()}: stored block of ${len} bytes, over 65535`);
      if (r.p !== sEnd) corrupt(`${where()}: stored block structure has trailing bytes`);
      if (len > vend - u) corrupt(`${where()}: stored block's ${len} bytes run past the view's end`);
      if (o + 4 + len > out.length) {
        if (count) o = 0;
        if (o + 4 + len > out.length) out = grown(out, o, o + 4 + len, Infinity);
      }
      out[o++] = len;
      out[o++] = len >>> 8;
      out[o++] = ~len;
      out[o++] = ~len >>> 8;
      out.set(view.subarray(u, u + len), o);
      o += len;
      u += len;
    } else {
      let litCodes = fixLitCodes;
      let litLengths = fixLitLengths;
      let distCodes = fixDistCodes;
      let distLengths = fixDistLengths;
      if (type === 2) {
        const hlitM = r.byte(sEnd);
        const hdistM = r.byte(sEnd);
        const hclenM = r.byte(sEnd);
        if (hlitM > 29 || hdistM > 29 || hclenM > 15) corrupt(`${where()}: HLIT-257 ${hlitM}, HDIST-1 ${hdistM} or HCLEN-4 ${hclenM} out of range`);
        acc |= (hlitM | (hdistM << 5) | (hclenM << 10)) << n;
        n += 14;
        if (n >= 16) {
          out[o++] = acc;
          out[o++] = acc >>> 8;
          acc >>>= 16;
          n -= 16;
        }
        const hlit = hlitM + 257;
        const hdist = hdistM + 1;
        clLens.fill(0);
        for (let i = 0; i < hclenM + 4; i++) {
          const v = r.byte(sEnd);
          if (v > 7) corrupt(`${where()}: code-length code length ${v} over 7`);
          clLens[CL_ORDER[i]] = v;
          acc |= v << n;
          n += 3;
          if (n >= 16) {
            out[o++] = acc;
            out[o++] = acc >>> 8;
            acc >>>= 16;
            n -= 16;
          }
        }
        const clBad = buildEncoder(clLens, 0, 19, false, clCodes, clLengths, tmpCount);
        if (clBad !== null) corrupt(`${where()}: ${clBad} code-length code`);
        // The header is at most 4 + 19 * 3 + 316 * 14 bits: room for it once.
        if (o > out.length - 1024) {
          if (count) o = 0;
          else out = grown(out, o, o + 1024, Infinity);
        }
        const total = hlit + hdist;
        let have = 0;
        while (have < total) {
          const sym = r.byte(sEnd);
          if (sym > 18 || clLengths[sym] === 0) corrupt(`${where()}: code-length symbol ${sym} has no code`);
          acc |= clCodes[sym] << n;
          n += clLengths[sym];
          if (sym < 16) {
            lens[have++] = sym;
          } else {
            const x = r.byte(sEnd);
            let rep: number;
            let val = 0;
            if (sym === 16) {
              if (have === 0) corrupt(`${where()}: code-length repeat with no previous length`);
              if (x > 3) corrupt(`${where()}: repeat extra ${x} over 3`);
              val = lens[have - 1];
              rep = 3 + x;
              acc |= x << n;
              n += 2;
            } else if (sym === 17) {
              if (x > 7) corrupt(`${where()}: repeat extra ${x} over 7`);
              rep = 3 + x;
              acc |= x << n;
              n += 3;
            } else {
              if (x > 127) corrupt(`${where()}: repeat extra ${x} over 127`);
              rep = 11 + x;
              acc |= x << n;
              n += 7;
            }
            if (have + rep > total) corrupt(`${where()}: code-length repeat runs past ${total} lengths`);
            lens.fill(val, have, have + rep);
            have += rep;
          }
          if (n >= 16) {
            out[o++] = acc;
            out[o++] = acc >>> 8;
            acc >>>= 16;
            n -= 16;
          }
        }
        if (lens[256] === 0) corrupt(`${where()}: no code for end-of-block`);
        const litBad = buildEncoder(lens, 0, hlit, true, dynLitCodes, dynLitLengths, tmpCount);
        if (litBad !== null) corrupt(`${where()}: ${litBad} literal/length code`);
        const distBad = buildEncoder(lens, hlit, hdist, true, dynDistCodes, dynDistLengths, tmpCount);
        if (distBad !== null) corrupt(`${where()}: ${distBad} distance code`);
        litCodes = dynLitCodes;
        litLengths = dynLitLengths;
        distCodes = dynDistCodes;
        distLengths = dynDistLengths;
      }

      for (;;) {
        let litrun = r.leb(sEnd);
        const L = r.leb(sEnd);
        if (litrun > vend - u) corrupt(`${where()}: ${litrun} literals run past the view's end`);
        while (litrun > 0) {
          const chunk = litrun < LIT_CHUNK ? litrun : LIT_CHUNK;
          if (o + 2 * chunk + 64 > out.length) {
            if (count) o = 0;
            else out = grown(out, o, o + 2 * chunk + 64, Infinity);
          }
          for (const stop = u + chunk; u < stop; u++) {
            const b = view[u];
            const l = litLengths[b];
            if (l === 0) corrupt(`${where()}: literal ${b} has no code`);
            acc |= litCodes[b] << n;
            n += l;
            if (n >= 16) {
              out[o++] = acc;
              out[o++] = acc >>> 8;
              acc >>>= 16;
              n -= 16;
            }
          }
          litrun -= chunk;
        }
        if (o > out.length - 64) {
          if (count) o = 0;
          else out = grown(out, o, o + 64, Infinity);
        }
        if (L === 0) {
          acc |= litCodes[256] << n;
          n += litLengths[256];
          if (n >= 16) {
            out[o++] = acc;
            out[o++] = acc >>> 8;
            acc >>>= 16;
            n -= 16;
          }
          break;
        }
        if (L > 256) corrupt(`${where()}: match length ${L + 2} over 258`);
        const dist = r.leb(sEnd) + 1;
        if (dist > WINDOW) corrupt(`${where()}: distance ${dist} over ${WINDOW}`);
        if (dist > produced + (u - sEnd)) corrupt(`${where()}: distance ${dist} reaches before the start of the stream`);
        const length = L + 2;
        if (length > vend - u) corrupt(`${where()}: match of ${length} bytes runs past the view's end`);
        const lc = LEN_CODE[length];
        const ls = 257 + lc;
        if (litLengths[ls] === 0) corrupt(`${where()}: length code ${ls} has no code`);
        acc |= litCodes[ls] << n;
        n += litLengths[ls];
        if (n >= 16) {
          out[o++] = acc;
          out[o++] = acc >>> 8;
          acc >>>= 16;
          n -= 16;
        }
        acc |= (length - LEN_BASE[lc]) << n;
        n += LEN_EXTRA[lc];
        if (n >= 16) {
          out[o++] = acc;
          out[o++] = acc >>> 8;
          acc >>>= 16;
          n -= 16;
        }
        const dc = DIST_CODE[dist - 1];
        if (distLengths[dc] === 0) corrupt(`${where()}: distance code ${dc} has no code`);
        acc |= distCodes[dc] << n;
        n += distLengths[dc];
        if (n >= 16) {
          out[o++] = acc;
          out[o++] = acc >>> 8;
          acc >>>= 16;
          n -= 16;
        }
        acc |= (dist - DIST_BASE[dc]) << n;
        n += DIST_EXTRA[dc];
        if (n >= 16) {
          out[o++] = acc;
          out[o++] = acc >>> 8;
          acc >>>= 16;
          n -= 16;
        }
        u += length;
      }
      if (r.p !== sEnd) corrupt(`${where()}: block structure has ${sEnd - r.p} bytes after end-of-block`);
    }
    produced += u - sEnd;
    r.p = u;
    blockNo++;
  }

  if (r.p >= vend) corrupt('deflate view: ends before its tail byte');
  const tail = view[r.p++];
  const k = (8 - (n & 7)) & 7;
  if (tail >>> k !== 0) corrupt(`deflate view: tail ${tail} does not fit the ${k} unused bits of the last byte`);
  if (r.p !== vend) corrupt(`deflate view: ${vend - r.p} trailing bytes after the tail byte`);
  acc |= tail << n;
  n += k;
  if (o > out.length - 4) {
    if (count) o = 0;
    else out = grown(out, o, o + 4, Infinity);
  }
  while (n > 0) {
    out[o++] = acc;
    acc >>>= 8;
    n -= 8;
  }
  // A view of the buffer when it was sized for this output or is the caller's (either copies or
  // writes it at once), or when little of it is spare.
  return { out: count ? out.subarray(0, 0) : expectBytes !== undefined || scratch !== undefined || out.length - o < out.length >>> 3 ? out.subarray(0, o) : out.slice(0, o), outputLength: produced };
}

/**
 * Rebuilds the exact deflate bytes from a PV1 view. Throws ViewError('corrupt') on any malformed
 * view: truncated, a symbol with no code, a distance past the start of the stream's output or > 32768,
 * a length outside 3..258, trailing bytes, code-length sequences that overrun HLIT+HDIST, etc.
 * Never allocates by a size the view declares without checking it against the view's own length.
 * With `scratch` the bytes may be in the caller's kept buffer (HuffScratch): valid until the next
 * call with the same scratch.
 */
export function huffDeflate(view: Uint8Array, expectBytes?: number, scratch?: HuffScratch): Uint8Array {
  return foldView(view, false, expectBytes, scratch).out;
}

/** The decompressed length of a PV1 view's stream (sum of the U_b), without rebuilding it; throws like huffDeflate on a malformed view. */
export function deflateViewOutputLength(view: Uint8Array): number {
  return foldView(view, true).outputLength;
}

/**
 * LZ4 legacy frames (the x86 kernel's bzImage payload, `lz4 -l -9`), decoded, and re-encoded byte
 * for byte as lz4 1.9.4's command line tool makes them. Pure: bytes in, bytes out.
 *
 * The encoders (`_lz4-compress.ts`) are ports of lz4 1.9.4 read from its sources: levels 1-2 are
 * `LZ4_compress_fast(acceleration 1)` (what programs/lz4io.c's legacy mode calls below level 3),
 * levels 3-9 `LZ4HC_compress_hashChain` with 2^(level-1) attempts and, at level 9, its
 * repeated-pattern analysis. Levels 10-12 (the optimal parser) are refused.
 * docs/design/lz4-legacy.md says what each step must do for the bytes to be exact, and how that
 * was checked (against the `lz4` tool, and on two Debian kernels).
 */
import { ViewError } from './errors.ts';
import { compressFast, compressHashChain, lz4CompressBound } from './_lz4-compress.ts';

export { lz4CompressBound };

export const LZ4_LEGACY_MAGIC = 0x184c2102; // bytes 02 21 4c 18
export const LZ4_LEGACY_BLOCK_BYTES = 8 * 1024 * 1024;

/** Default bound of decodeLz4Legacy's output: far above any kernel (53 MB), far below a typed array's limit. */
const DEFAULT_MAX_DECODED = 1024 * 1024 * 1024;

const MINMATCH = 4;

/** lz4io's decoder stops at a block size over this (it takes it for the next frame's magic). */
const MAX_BLOCK_COMPRESSED = lz4CompressBound(LZ4_LEGACY_BLOCK_BYTES);

const corrupt = (message: string) => new ViewError('corrupt', message);

// ---- decoding ---------------------------------------------------------------

/**
 * Walks the sequences of the block `src[start, end)` without writing: the decoded size, or
 * ViewError('corrupt') if the block is malformed or decodes to more than `cap` bytes. This pass is
 * what lets decodeLz4Legacy allocate exactly the decoded size, never a size the frame declares.
 */
function measureBlock(src: Uint8Array, start: number, end: number, cap: number, what: string): number {
  let ip = start;
  let op = 0;
  for (;;) {
    if (ip >= end) throw corrupt(`${what}: ends without its last literals`);
    const token = src[ip++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b = 255;
      while (b === 255) {
        if (ip >= end) throw corrupt(`${what}: truncated in a literal length`);
        b = src[ip++];
        lit += b;
      }
    }
    if (lit > end - ip) throw corrupt(`${what}: ${lit} literals run past the block's end at byte ${ip - start}`);
    ip += lit;
    op += lit;
    if (op > cap) throw corrupt(`${what}: decodes to more than ${cap} bytes`);
    if (ip === end) return op; // the last sequence is literals only
    if (end - ip < 2) throw corrupt(`${what}: truncated in an offset`);
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    if (offset === 0) throw corrupt(`${what}: match offset 0 at byte ${ip - 2 - start}`);
    if (offset > op) throw corrupt(`${what}: match offset ${offset} reaches before the block's start (at output byte ${op})`);
    let ml = token & 15;
    if (ml === 15) {
      let b = 255;
      while (b === 255) {
        if (ip >= end) throw corrupt(`${what}: truncated in a match length`);
        b = src[ip++];
        ml += b;
      }
    }
    op += ml + MINMATCH;
    if (op > cap) throw corrupt(`${what}: decodes to more than ${cap} bytes`);
  }
}

/** Decodes the block `src[start, end)` into `out` from `outStart`; the block was measured (measureBlock) to fit. Returns the end in `out`. */
function decodeMeasured(src: Uint8Array, start: number, end: number, out: Uint8Array, outStart: number): number {
  let ip = start;
  let op = outStart;
  for (;;) {
    const token = src[ip++];
    let lit = token >>> 4;
    if (lit === 15) {
      let b = 255;
      while (b === 255) {
        b = src[ip++];
        lit += b;
      }
    }
    if (lit < 32) {
      for (let i = 0; i < lit; i++) out[op + i] = src[ip + i];
    } else {
      out.set(src.subarray(ip, ip + lit), op);
    }
    ip += lit;
    op += lit;
    if (ip === end) return op;
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    let ml = token & 15;
    if (ml === 15) {
      let b = 255;
      while (b === 255) {
        b = src[ip++];
        ml += b;
      }
    }
    ml += MINMATCH;
    let m = op - offset;
    if (ml < 32) {
      // Short: byte by byte, which is also right when the match overlaps what it writes.
      const stop = op + ml;
      while (op < stop) out[op++] = out[m++];
    } else if (offset >= ml) {
      out.copyWithin(op, m, m + ml);
      op += ml;
    } else if (offset === 1) {
      out.fill(out[m], op, op + ml); // a run (the kernel's zero padding)
      op += ml;
    } else {
      // Overlapping: the output repeats its last `offset` bytes; copy one period, then double.
      out.copyWithin(op, m, m + offset);
      let done = offset;
      while (done < ml) {
        const n = Math.min(done, ml - done);
        out.copyWithin(op + done, op, op + n);
        done += n;
      }
      op += ml;
    }
  }
}

/**
 * Decodes ONE lz4 block (raw LZ4 block format) whose decoded size must be exactly `decodedSize`;
 * 'corrupt' otherwise (offset 0 or past the start, overrun, trailing bytes). Into `into` when
 * given (at least decodedSize bytes; the result is a view of it), so a caller decoding block after
 * block reuses one buffer.
 */
export function decodeLz4Block(block: Uint8Array, decodedSize: number, into?: Uint8Array): Uint8Array {
  if (!Number.isSafeInteger(decodedSize) || decodedSize < 0) throw new RangeError(`decodeLz4Block: decodedSize ${decodedSize} is not a size`);
  if (into !== undefined && into.length < decodedSize) throw new RangeError(`decodeLz4Block: a ${into.length}-byte buffer cannot hold ${decodedSize} bytes`);
  const n = measureBlock(block, 0, block.length, decodedSize, 'lz4 block');
  if (n !== decodedSize) throw corrupt(`lz4 block: decodes to ${n} bytes, expected ${decodedSize}`);
  const out = into === undefined ? new Uint8Array(decodedSize) : into.subarray(0, decodedSize);
  decodeMeasured(block, 0, block.length, out, 0);
  return out;
}

/**
 * Decodes a whole legacy frame occupying exactly `frame` (magic + blocks, each u32le size + block,
 * nothing after the last block). Every block but the last must decode to exactly 8 MiB; `maxDecoded`
 * bounds the total. Returns the decoded bytes and the compressed size of each block (without its 4-byte prefix). ViewError 'corrupt'/'limit'.
 */
export function decodeLz4Legacy(frame: Uint8Array, maxDecoded: number = DEFAULT_MAX_DECODED): { data: Uint8Array; blocks: number[] } {
  if (frame.length < 4) throw corrupt(`lz4 legacy frame: ${frame.length} bytes, shorter than its magic`);
  const magic = (frame[0] | (frame[1] << 8) | (frame[2] << 16) | (frame[3] << 24)) >>> 0;
  if (magic !== LZ4_LEGACY_MAGIC) throw corrupt(`lz4 legacy frame: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x184c2102`);
  // Pass 1: the block sizes and each block's decoded size, checked before anything is allocated.
  const blocks: number[] = [];
  let total = 0;
  let lastDecoded = LZ4_LEGACY_BLOCK_BYTES;
  let pos = 4;
  while (pos < frame.length) {
    const what = `lz4 legacy frame: block ${blocks.length} at byte ${pos}`;
    if (lastDecoded !== LZ4_LEGACY_BLOCK_BYTES) throw corrupt(`lz4 legacy frame: block ${blocks.length - 1} decodes to ${lastDecoded} bytes but is not the last (every block but the last holds ${LZ4_LEGACY_BLOCK_BYTES})`);
    if (frame.length - pos < 4) throw corrupt(`${what}: truncated in its size`);
    const size = (frame[pos] | (frame[pos + 1] << 8) | (frame[pos + 2] << 16) | (frame[pos + 3] << 24)) >>> 0;
    pos += 4;
    if (size === 0 || size > MAX_BLOCK_COMPRESSED) throw corrupt(`${what}: size ${size} outside 1..${MAX_BLOCK_COMPRESSED}`);
    if (size > frame.length - pos) throw corrupt(`${what}: size ${size} runs past the frame's end (${frame.length - pos} bytes left)`);
    lastDecoded = measureBlock(frame, pos, pos + size, LZ4_LEGACY_BLOCK_BYTES, what);
    total += lastDecoded;
    if (total > maxDecoded) throw new ViewError('limit', `lz4 legacy frame: decodes to more than ${maxDecoded} bytes`);
    blocks.push(size);
    pos += size;
  }
  // Pass 2: the bytes.
  const data = new Uint8Array(total);
  let op = 0;
  pos = 4;
  for (const size of blocks) {
    op = decodeMeasured(frame, pos + 4, pos + 4 + size, data, op);
    pos += 4 + size;
  }
  return { data, blocks };
}

// ---- blocks and frames --------------------------------------------------------

function checkLevel(level: number): void {
  if (level >= 10 && level <= 12 && Number.isInteger(level)) throw new ViewError('refused', `lz4 level ${level} uses LZ4HC's optimal parser, which is not ported (levels 1-9 are)`);
  if (!Number.isInteger(level) || level < 1 || level > 9) throw new ViewError('refused', `lz4 level ${level}: the view rebuilds levels 1-9 only`);
}

/** Compresses `src` (≤ 8 MiB, checked by the caller) into `out` (≥ lz4CompressBound) at a checked level; returns the length. */
function compressInto(src: Uint8Array, level: number, out: Uint8Array): number {
  return level < 3 ? compressFast(src, out) : compressHashChain(src, out, 1 << (level - 1));
}

/** Refuses a level the encoders do not rebuild, and a block over the legacy block size. */
function checkBlock(src: Uint8Array, level: number): void {
  checkLevel(level);
  if (src.length > LZ4_LEGACY_BLOCK_BYTES) throw new ViewError('limit', `lz4 block: ${src.length} bytes, over the legacy block size ${LZ4_LEGACY_BLOCK_BYTES}`);
}

/**
 * Compresses one block (≤ 8 MiB) exactly as lz4 1.9.4's legacy mode does at `level` (1-9:
 * LZ4_compress_fast for levels < 3 as lz4io does, LZ4HC hash chain for 3-9 incl. level 9's
 * pattern analysis). Levels 10-12: ViewError('refused') (optimal parser not ported).
 */
export function compressLz4Block(src: Uint8Array, level: number): Uint8Array {
  checkBlock(src, level);
  const out = new Uint8Array(lz4CompressBound(src.length));
  // A copy of the length it took: the bound's buffer is ~n + 0.4% + 16 bytes.
  return out.slice(0, compressInto(src, level, out));
}

/**
 * One block (≤ 8 MiB) compressed at `level` into `out`, which must come to exactly `size` bytes
 * (the size the new file's frame records): the view of `out` it fills, or ViewError('corrupt').
 * `out` needs only `size` bytes, not the bound: the device folding a kernel holds the block's
 * recorded size (~2 MB) instead of the bound of 8 MiB. An encoder that runs past `out` is caught
 * either way: its byte writes are dropped and its count goes past `size`, or its copies throw.
 */
export function compressLz4BlockExactly(src: Uint8Array, level: number, size: number, out: Uint8Array): Uint8Array {
  checkBlock(src, level);
  if (out.length < size) throw new RangeError(`compressLz4BlockExactly: a ${out.length}-byte buffer cannot hold ${size} bytes`);
  let n: number;
  try {
    n = compressInto(src, level, out.length === size ? out : out.subarray(0, size));
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    n = Infinity;
  }
  // Compared before any subarray: subarray clamps, so an overrun would pass as `size` bytes.
  if (n !== size) throw corrupt(`an lz4 block compresses to ${Number.isFinite(n) ? n : `more than ${size}`} bytes at level ${level}, not ${size}`);
  return out.subarray(0, size);
}

/** A whole legacy frame: magic ‖ for each 8 MiB block: u32le size ‖ compressLz4Block(block, level). Must equal `lz4 -l -LEVEL` output byte for byte for levels 1-9. */
export function encodeLz4Legacy(data: Uint8Array, level: number): Uint8Array {
  checkLevel(level);
  const scratch = new Uint8Array(lz4CompressBound(Math.min(data.length, LZ4_LEGACY_BLOCK_BYTES)));
  const parts: Uint8Array[] = [];
  let total = 4;
  for (let at = 0; at < data.length; at += LZ4_LEGACY_BLOCK_BYTES) {
    const n = compressInto(data.subarray(at, Math.min(at + LZ4_LEGACY_BLOCK_BYTES, data.length)), level, scratch);
    parts.push(scratch.slice(0, n));
    total += 4 + n;
  }
  const frame = new Uint8Array(total);
  writeU32le(frame, 0, LZ4_LEGACY_MAGIC);
  let pos = 4;
  for (const part of parts) {
    writeU32le(frame, pos, part.length);
    frame.set(part, pos + 4);
    pos += 4 + part.length;
  }
  return frame;
}

function writeU32le(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = v >>> 24;
}

/** Whether compressing `decoded`'s block `i` at `level` gives the frame's block `i`, at `framePos` (its size prefix). */
function blockMatches(frame: Uint8Array, framePos: number, size: number, decoded: Uint8Array, i: number, level: number, scratch: Uint8Array): boolean {
  const src = decoded.subarray(i * LZ4_LEGACY_BLOCK_BYTES, Math.min((i + 1) * LZ4_LEGACY_BLOCK_BYTES, decoded.length));
  const n = compressInto(src, level, scratch);
  if (n !== size) return false;
  const want = frame.subarray(framePos + 4, framePos + 4 + size);
  for (let k = 0; k < n; k++) if (scratch[k] !== want[k]) return false;
  return true;
}

/** Levels in the order findLz4Level tries them: the kernel's first. */
const LEVEL_ORDER = [9, 1, 2, 3, 4, 5, 6, 7, 8];

/**
 * The level that rebuilds this frame exactly, or null: tries level 9 first (the kernel's), then the
 * others 1..9, on the first block only, then confirms every block with the winner. `decoded`/`blocks`
 * from decodeLz4Legacy.
 */
export function findLz4Level(frame: Uint8Array, decoded: Uint8Array, blocks: number[]): number | null {
  // The layout encodeLz4Legacy makes: 8 MiB blocks, no empty one, nothing around them.
  if (blocks.length !== Math.ceil(decoded.length / LZ4_LEGACY_BLOCK_BYTES)) return null;
  if (frame.length !== blocks.reduce((sum, b) => sum + 4 + b, 4)) return null;
  if (blocks.length === 0) return LEVEL_ORDER[0];
  const scratch = new Uint8Array(lz4CompressBound(Math.min(decoded.length, LZ4_LEGACY_BLOCK_BYTES)));
  // Several levels can make the same first block (short or incompressible data): a level that
  // fails a later block hands over to the next one that made the first.
  candidates: for (const level of LEVEL_ORDER) {
    if (!blockMatches(frame, 4, blocks[0], decoded, 0, level, scratch)) continue;
    let pos = 4 + 4 + blocks[0];
    for (let i = 1; i < blocks.length; i++) {
      if (!blockMatches(frame, pos, blocks[i], decoded, i, level, scratch)) continue candidates;
      pos += 4 + blocks[i];
    }
    return level;
  }
  return null;
}

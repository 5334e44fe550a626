/**
 * The zero-run coding of a part's diff bytes (delta format 3, docs/formats.md §8.3). bsdiff's
 * diff bytes are new minus old where two files nearly agree, so they are mostly zero: 57 of the
 * kernel's 60 MB, 35.4 of 36.3 MB in another part of the corpus delta. Format 3 sends them as two
 * streams: `runs`, pairs of LEB128 varints (z, n), and `diff`, the n bytes that follow each run of
 * z zeros. brotli at quality 11 takes 3-11x less time on the coded streams than on the zeros,
 * and the result is -6.8% to +2.6% of the raw stream's size (docs/design/issue-18-…, stage 3);
 * the device skips the zeros instead of decoding and adding them.
 */
import { type ByteReader, StreamEndedError } from './byte-reader.ts';

/** Malformed runs: the caller reports it as a corrupt part. */
export class ZeroRunError extends Error {
  override name = 'ZeroRunError';
}

/**
 * The encoder's choice (any split decodes the same): a run of other bytes ends at this many zeros
 * in a row. 2 was the best of 1-16 on the corpus delta's diff streams (measured).
 */
export const RUN_END_ZEROS = 2;

/** A varint's most bytes: 5 hold any u32, and a run is never longer than a part. */
const MAX_VARINT_BYTES = 5;

/** Codes `diff` as runs and bytes. Pure; the inverse of ZeroRunReader. */
export function encodeZeroRuns(diff: Uint8Array, endZeros = RUN_END_ZEROS): { runs: Uint8Array; bytes: Uint8Array } {
  const runs: number[] = [];
  const bytes = new Uint8Array(diff.length);
  let nBytes = 0;
  const varint = (v: number) => {
    while (v >= 0x80) {
      runs.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 0x80);
    }
    runs.push(v);
  };
  let i = 0;
  while (i < diff.length) {
    let z = i;
    while (z < diff.length && diff[z] === 0) z++;
    // The bytes after the zeros run until endZeros zeros in a row, or the end.
    let e = z;
    while (e < diff.length) {
      let k = 0;
      while (k < endZeros && e + k < diff.length && diff[e + k] === 0) k++;
      if (k === endZeros || e + k === diff.length) break;
      e += k + 1;
    }
    varint(z - i);
    varint(e - z);
    bytes.set(diff.subarray(z, e), nBytes);
    nBytes += e - z;
    i = e;
  }
  return { runs: Uint8Array.from(runs), bytes: bytes.slice(0, nBytes) };
}

/** The logical diff bytes of a format-3 part, read from its runs and diff streams. */
export class ZeroRunReader {
  private zerosLeft = 0;
  private bytesLeft = 0;

  constructor(
    private readonly runs: ByteReader,
    private readonly bytes: ByteReader,
  ) {}

  /**
   * Adds the next n diff bytes into out[at..at+n) (byte by byte modulo 256): a run of zeros leaves
   * the bytes there as they are. Synchronous, returning undefined, while the streams' current
   * chunks last, so the kernel's 1.3 million pairs cost no promise each; a promise only when a
   * stream must be read on. @throws ZeroRunError, StreamEndedError
   */
  addInto(out: Uint8Array, at: number, n: number): Promise<void> | undefined {
    while (n > 0) {
      if (this.zerosLeft === 0 && this.bytesLeft === 0 && !this.nextPairSync()) return this.addReadingOn(out, at, n);
      if (this.zerosLeft > 0) {
        const take = this.skipZeros(n);
        at += take;
        n -= take;
      } else {
        const take = Math.min(n, this.bytesLeft);
        // Nothing is taken when the bytes are not all in the diff stream's current chunk.
        if (!this.bytes.addSync(out, at, take)) return this.addReadingOn(out, at, n);
        this.bytesLeft -= take;
        at += take;
        n -= take;
      }
    }
    return undefined;
  }

  /** Takes up to n zeros of the current run (they leave the output as it is); returns how many. */
  private skipZeros(n: number): number {
    const take = Math.min(n, this.zerosLeft);
    this.zerosLeft -= take;
    return take;
  }

  /** addInto's path when a stream's next chunk is needed. */
  private async addReadingOn(out: Uint8Array, at: number, n: number): Promise<void> {
    while (n > 0) {
      if (this.zerosLeft === 0 && this.bytesLeft === 0 && !this.nextPairSync()) await this.nextPair();
      if (this.zerosLeft > 0) {
        const take = this.skipZeros(n);
        at += take;
        n -= take;
      } else {
        const take = Math.min(n, this.bytesLeft);
        this.bytesLeft -= take;
        await this.bytes.addInto(out, at, take);
        at += take;
        n -= take;
      }
    }
  }

  /** True when every pair is used up and both streams are at their end. */
  async atEnd(): Promise<boolean> {
    return this.zerosLeft === 0 && this.bytesLeft === 0 && (await this.runs.atEnd()) && (await this.bytes.atEnd());
  }

  async close(): Promise<void> {
    await Promise.all([this.runs.close(), this.bytes.close()]);
  }

  /** Reads the next pair when both varints lie in the runs stream's current chunk. */
  private nextPairSync(): boolean {
    if (this.runs.available() < 2 * MAX_VARINT_BYTES) return false;
    this.zerosLeft = this.varintSync();
    this.bytesLeft = this.varintSync();
    if (this.zerosLeft === 0 && this.bytesLeft === 0) throw new ZeroRunError(`${this.runs.name} stream holds an empty run (0 zeros, 0 bytes)`);
    return true;
  }

  private varintSync(): number {
    let value = 0;
    for (let i = 0, scale = 1; i < MAX_VARINT_BYTES; i++, scale *= 0x80) {
      const b = this.runs.byteSync()!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (i > 0 && b === 0) throw new ZeroRunError(`${this.runs.name} stream holds a varint with a redundant last byte`);
        return value;
      }
    }
    throw new ZeroRunError(`${this.runs.name} stream holds a varint longer than ${MAX_VARINT_BYTES} bytes`);
  }

  private async nextPair(): Promise<void> {
    if (await this.runs.atEnd()) throw new StreamEndedError(`${this.runs.name} stream ended before the diff bytes it describes`);
    this.zerosLeft = await this.varint();
    this.bytesLeft = await this.varint();
    if (this.zerosLeft === 0 && this.bytesLeft === 0) throw new ZeroRunError(`${this.runs.name} stream holds an empty run (0 zeros, 0 bytes)`);
  }

  private async varint(): Promise<number> {
    let value = 0;
    for (let i = 0, scale = 1; i < MAX_VARINT_BYTES; i++, scale *= 0x80) {
      const b = this.runs.byteSync() ?? (await this.runs.byte());
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (i > 0 && b === 0) throw new ZeroRunError(`${this.runs.name} stream holds a varint with a redundant last byte`);
        return value;
      }
    }
    throw new ZeroRunError(`${this.runs.name} stream holds a varint longer than ${MAX_VARINT_BYTES} bytes`);
  }
}

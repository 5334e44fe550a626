/**
 * The codec of delta parts: brotli (RFC 7932) from node:zlib, built into Node and Bun.
 * Measured on 20 MB of Debian files: brotli q11/24-bit window 6.55 MB, xz -9 6.44 MB,
 * fflate/deflate -9 9.37 MB; brotli is within 2% of xz and needs no dependency.
 */
import { promisify } from 'node:util';
import { brotliCompress, brotliCompressSync, constants, createBrotliDecompress } from 'node:zlib';

const compressAsync = promisify(brotliCompress);

/**
 * 20-bit window (1 MiB): what a decoder must hold, so it bounds apply memory per stream; a part's
 * four streams decode at once. 24 bits cost up to 48 MiB for three decoders, 22 bits ~6.5 MiB per
 * decoder (measured alone). Against 22 bits, 20 bits made the corpus delta 3,021 B larger
 * (+0.03%) and the server pair's 12,337 B (+0.05%), and the apply's stretch through the kernel's
 * patch and fold 5.8 MiB lower (bench/README.md, issue 18, "the peak by phase"). The decoder takes
 * the window from the stream, so deltas made with another keep applying.
 */
export const WINDOW_BITS = 20;

const params = (data: Uint8Array, quality: number) => ({
  params: {
    [constants.BROTLI_PARAM_QUALITY]: quality,
    [constants.BROTLI_PARAM_LGWIN]: WINDOW_BITS,
    [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
  },
});

/** On the thread pool: a part's streams, compressed while the generator builds the next part. */
export function compress(data: Uint8Array, quality: number): Promise<Buffer> {
  return compressAsync(data, params(data, quality));
}

/**
 * The compressed size, computed on the calling thread: the generator's per-object estimates
 * (quality 5). On the thread pool they queued behind the parts' quality-11 jobs, and the
 * generator waited for them with nothing else to do (bench/README.md, issue 18, generation).
 */
export function compressedSize(data: Uint8Array, quality: number): number {
  return brotliCompressSync(data, params(data, quality)).length;
}

/** 64 KiB output chunks (the default is 16 KiB): fewer hops through the reader, little memory. */
export function createDecompressor() {
  return createBrotliDecompress({ chunkSize: 64 * 1024 });
}

/**
 * The codec of delta parts: brotli (RFC 7932) from node:zlib, built into Node and Bun.
 * Measured on 20 MB of Debian files: brotli q11/24-bit window 6.55 MB, xz -9 6.44 MB,
 * fflate/deflate -9 9.37 MB; brotli is within 2% of xz and needs no dependency.
 */
import { promisify } from 'node:util';
import { brotliCompress, constants, createBrotliDecompress } from 'node:zlib';

const compressAsync = promisify(brotliCompress);

/**
 * 22-bit window (4 MiB): what a decoder must hold, so it bounds apply memory per stream; three
 * streams decode at once. Measured by re-compressing the streams of the corpus delta's parts 0,
 * 3 and 5 at quality 11 (bench/README.md, issue 18): against a 24-bit window, the kernel's
 * 60 MB diff stream -0.06%, its part's literal stream +0.02%, a 36 MB diff stream +3.0%, the
 * control streams equal; the three decoders' resident memory drops from up to 48 MiB to 12 MiB.
 */
export const WINDOW_BITS = 22;

export function compress(data: Uint8Array, quality: number): Promise<Buffer> {
  return compressAsync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: quality,
      [constants.BROTLI_PARAM_LGWIN]: WINDOW_BITS,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
}

/** 64 KiB output chunks (the default is 16 KiB): fewer hops through the reader, little memory. */
export function createDecompressor() {
  return createBrotliDecompress({ chunkSize: 64 * 1024 });
}

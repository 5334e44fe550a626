/**
 * The codec of delta parts: brotli (RFC 7932) from node:zlib, built into Node and Bun.
 * Measured on 20 MB of Debian files: brotli q11/24-bit window 6.55 MB, xz -9 6.44 MB,
 * fflate/deflate -9 9.37 MB; brotli is within 2% of xz and needs no dependency.
 */
import { promisify } from 'node:util';
import { brotliCompress, constants, createBrotliDecompress } from 'node:zlib';

const compressAsync = promisify(brotliCompress);

/** 24-bit window (16 MiB): what the decoder must hold, so it bounds apply memory per stream. */
export const WINDOW_BITS = 24;

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

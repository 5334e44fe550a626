/**
 * The plain tar of a compressed layer, as a stream, with bombs stopped on the way
 * (docs/design/issue-21-oci.md §4.3, §4.8): gzip through node:zlib; zstd through node:zlib where
 * the runtime has it (Bun), else Debian's `zstd -d -c` (Node 20 has none), so no decompressor is
 * written here. Both are exact, so the path taken never changes a commit id. The first bytes must
 * be the magic of the compression the media type names. Caps: the plain bytes in all
 * (--max-unpacked-size), and past 64 MiB of plain bytes a ratio of 1100 to 1: deflate cannot pass
 * 1032:1, so only a zstd bomb ever meets it.
 */
import { spawn } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { spawnFailure, stderrTail } from '../_run.ts';
import { LarchError } from '../errors.ts';
import type { Compression } from './manifest.ts';

export const RATIO_AFTER_BYTES = 64 * 1024 * 1024;
export const MAX_RATIO = 1100;

/** The first bytes of each compression's stream. */
export const MAGIC: Record<Exclude<Compression, 'none'>, number[]> = { gzip: [0x1f, 0x8b], zstd: [0x28, 0xb5, 0x2f, 0xfd] };

export interface DecompressOptions {
  /** The most plain bytes this stream may give (what --max-unpacked-size has left). */
  maxBytes: number;
  /** Names the layer in messages ("layer 2/4 (sha256:3f1a…)"). */
  where: string;
  /** Tests: take `zstd -d -c` even where the runtime decompresses zstd itself. */
  zstdTool?: boolean;
}

function bad(reason: string, message: string, data: Record<string, unknown> = {}): LarchError {
  return new LarchError('INVALID_INPUT', message, { data: { reason, ...data } });
}

/** The plain bytes of `input`, compressed as `compression` says. @throws INVALID_INPUT compression-mismatch, unpacked-size, ratio, not-a-tar; TOOL_MISSING (zstd) */
export async function* decompress(input: AsyncIterable<Uint8Array>, compression: Compression, opts: DecompressOptions): AsyncGenerator<Uint8Array> {
  let packed = 0;
  let plain = 0;
  let checked = compression === 'none';
  const counted = async function* (): AsyncGenerator<Uint8Array> {
    for await (const chunk of input) {
      if (!checked && compression !== 'none') {
        const magic = MAGIC[compression];
        // The magic fits in the first chunk of any reader larch uses (1 MiB reads); a shorter first chunk is a short stream.
        if (chunk.length < magic.length || !magic.every((b, i) => chunk[i] === b)) throw bad('compression-mismatch', `${opts.where}: its media type says ${compression}, and its bytes do not start as ${compression} does`, { compression });
        checked = true;
      }
      packed += chunk.length;
      yield chunk;
    }
  };
  const out = compression === 'none' ? Readable.from(counted()) : compression === 'gzip' ? through(counted(), zlib.createGunzip()) : zstd(counted(), opts);
  try {
    for await (const chunk of out as AsyncIterable<Buffer>) {
      plain += chunk.length;
      if (plain > opts.maxBytes) throw bad('unpacked-size', `${opts.where}: the image unpacks to more than ${opts.maxBytes} bytes (--max-unpacked-size)`, { max_bytes: opts.maxBytes });
      if (plain > RATIO_AFTER_BYTES && plain > packed * MAX_RATIO) throw bad('ratio', `${opts.where}: a compression bomb: ${plain} bytes from ${packed}`, { plain_bytes: plain, packed_bytes: packed });
      yield chunk;
    }
  } catch (err) {
    if (err instanceof LarchError) throw err;
    throw bad('not-a-tar', `${opts.where}: the ${compression} stream is damaged: ${(err as Error).message}`, { compression });
  } finally {
    (out as Readable).destroy();
  }
}

/** input through a transform (node:zlib's), errors of either side ending the output. */
function through(input: AsyncIterable<Uint8Array>, transform: NodeJS.ReadWriteStream & { destroy(err?: Error): void }): Readable {
  const src = Readable.from(input);
  src.on('error', (err) => transform.destroy(err));
  return src.pipe(transform as unknown as NodeJS.WritableStream) as unknown as Readable;
}

function zstd(input: AsyncIterable<Uint8Array>, opts: DecompressOptions): Readable {
  const create = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream & { destroy(err?: Error): void } }).createZstdDecompress;
  if (typeof create === 'function' && !opts.zstdTool) return through(input, create());
  const out = new PassThrough();
  const child = spawn('zstd', ['-d', '-c', '-q', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.on('error', (err: NodeJS.ErrnoException) => out.destroy(spawnFailure('zstd', err, { purpose: 'to read a zstd layer (Node has no zstd; Bun reads it itself)' })));
  child.stdout.pipe(out, { end: false });
  let exited = false;
  child.on('close', (code) => {
    exited = true;
    if (code === 0) out.end();
    else out.destroy(new Error(stderrTail(stderr) || `zstd exited ${code}`));
  });
  const feed = Readable.from(input);
  feed.on('error', (err) => {
    out.destroy(err);
    child.kill();
  });
  child.stdin.on('error', () => {}); // zstd stopped reading (a damaged stream): its exit code tells
  feed.pipe(child.stdin);
  // Stopped early (a cap, the consumer gone): the child goes too.
  out.on('close', () => {
    if (!exited) child.kill();
  });
  return out;
}

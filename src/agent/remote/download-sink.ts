/**
 * Where a download's bytes go, for both transports (HTTP ranges in http-fetch.ts, MQTT chunks in
 * mqtt-fetch.ts): a file that a later run resumes from its length, or memory for small files.
 *
 * write is synchronous on purpose: chunks are taken from 'data' events as they come, because a
 * paused or async-iterated HTTP response that aborts discards the chunks it had buffered (Node 20:
 * 262,144 of 300,000 flushed bytes kept, measured), and every lost byte would be sent again on
 * resume.
 */
import { writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { fromSystemError } from '../../errors.ts';
import { collectGarbage } from '../../_gc.ts';

export interface Sink {
  /** Bytes held: where the next request starts. */
  size(): number;
  /** Drop everything (the server's file changed, or it is longer than it may be). */
  truncate(): Promise<void>;
  write(chunk: Uint8Array): void;
  /** The response says the file holds this many bytes in all (already capped): room for them may be made at once. */
  expect?(total: number): void;
}

export interface FileDownload {
  /** Bytes in the file when it is whole. */
  bytes: number;
  /** Bytes that were already there when the download started. */
  resumedFromBytes: number;
  requests: number;
}

/**
 * Runs transfer with a sink appending to dest (opened 'a+': appends at the end whatever the
 * position, which is what a resume needs), then fsyncs it, so the bytes counted are on disk.
 * @throws IO or NO_SPACE naming dest
 */
export async function intoFile(dest: string, transfer: (sink: Sink) => Promise<number>): Promise<FileDownload> {
  const fh = await open(dest, 'a+', 0o644).catch((err) => Promise.reject(fromSystemError(err, 'open download', dest)));
  try {
    let size = (await fh.stat()).size;
    const resumedFromBytes = size;
    const sink: Sink = {
      size: () => size,
      async truncate() {
        await fh.truncate(0);
        size = 0;
      },
      write(chunk) {
        for (let at = 0; at < chunk.length; ) at += writeSync(fh.fd, chunk, at, chunk.length - at);
        size += chunk.length;
      },
    };
    const requests = await transfer(sink).catch((err) => Promise.reject(fromSystemError(err, 'write download', dest)));
    await fh.sync().catch((err) => Promise.reject(fromSystemError(err, 'write download', dest)));
    return { bytes: size, resumedFromBytes, requests };
  } finally {
    await fh.close();
  }
}

/**
 * Runs transfer with a sink in memory; returns the bytes. One buffer, sized at once when the
 * response tells its length (expect) and else doubled as bytes come, so a capped download holds
 * about twice its cap at most, not every chunk plus their concatenation (a list of chunk copies
 * and a concat took a 63 MiB body to 1.4 GiB under Bun, measured).
 *
 * A full collection at each 4 MiB boundary the bytes cross: the chunks already copied are
 * garbage the collector was slow to take back. A 16 MiB body from a loopback server, Bun
 * `--smol`: peak RSS 85 MiB without, 65.5 with (three runs each). Small files never cross one.
 */
const COLLECT_EVERY_BYTES = 4 * 1024 * 1024;

export async function intoMemory(transfer: (sink: Sink) => Promise<unknown>): Promise<Uint8Array> {
  let buffer = new Uint8Array(0);
  let size = 0;
  const room = (n: number) => {
    if (n <= buffer.length) return;
    const grown = new Uint8Array(n);
    grown.set(buffer.subarray(0, size));
    buffer = grown;
  };
  await transfer({
    size: () => size,
    async truncate() {
      buffer = new Uint8Array(0);
      size = 0;
    },
    expect: (total) => room(total),
    write(chunk) {
      // A copy (the transport may reuse the chunk's buffer) into the one buffer.
      if (size + chunk.length > buffer.length) room(Math.max(size + chunk.length, buffer.length * 2, 64 * 1024));
      buffer.set(chunk, size);
      size += chunk.length;
      if (Math.floor((size - chunk.length) / COLLECT_EVERY_BYTES) !== Math.floor(size / COLLECT_EVERY_BYTES)) collectGarbage();
    },
  });
  return buffer.length === size ? buffer : buffer.slice(0, size);
}

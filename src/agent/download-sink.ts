/**
 * Where a download's bytes go, for both transports (HTTP ranges in http-fetch.ts, MQTT chunks in
 * remote-mqtt.ts): a file that a later run resumes from its length, or memory for small files.
 *
 * write is synchronous on purpose: chunks are taken from 'data' events as they come, because a
 * paused or async-iterated HTTP response that aborts discards the chunks it had buffered (Node 20:
 * 262,144 of 300,000 flushed bytes kept, measured), and every lost byte would be sent again on
 * resume.
 */
import { writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { fromSystemError } from '../errors.ts';

export interface Sink {
  /** Bytes held: where the next request starts. */
  size(): number;
  /** Drop everything (the server's file changed, or it is longer than it may be). */
  truncate(): Promise<void>;
  write(chunk: Uint8Array): void;
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

/** Runs transfer with a sink in memory; returns the bytes. */
export async function intoMemory(transfer: (sink: Sink) => Promise<unknown>): Promise<Uint8Array> {
  let chunks: Uint8Array[] = [];
  let size = 0;
  await transfer({
    size: () => size,
    async truncate() {
      chunks = [];
      size = 0;
    },
    write(chunk) {
      // A copy: the transport may reuse the chunk's buffer.
      chunks.push(Uint8Array.from(chunk));
      size += chunk.length;
    },
  });
  return Uint8Array.from(Buffer.concat(chunks));
}

/**
 * The bundle fetcher: a bundle file (`.larchb`, src/protocol/bundle.ts) read as a repo, so an
 * air-gapped device upgrades through the same Remote, checks and staging as over HTTP. Each
 * member is copied into the destination the caller gives (the device's download directory) and
 * checked there against the index's SHA-256, so what is applied is the device's verified copy,
 * never bytes read again from a stick that may have changed since (RAUC's CVE-2020-25860). The
 * index only maps names to bytes: trust comes from summary.sig and what the summary names,
 * checked by pull.ts as for every remote.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, truncate } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LarchError, fromSystemError } from '../../errors.ts';
import { BUNDLE_HEADER_BYTES, type BundleFile, bundleIndexLength, decodeBundleIndex } from '../../protocol/bundle.ts';
import { type Sink, intoFile, intoMemory } from './download-sink.ts';
import type { DownloadProgress, FileFetcher } from './fetcher.ts';

const READ_BYTES = 256 * 1024;

/**
 * A fetcher over the bundle at `path`: its header and index are read and checked here.
 * @throws INVALID_INPUT (data.reason as decodeBundleIndex's), NOT_FOUND (no such file), IO
 */
export async function bundleFetcher(path: string): Promise<FileFetcher> {
  const file = resolve(path);
  const fh = await open(file, 'r').catch((err) => Promise.reject(err.code === 'ENOENT' ? new LarchError('NOT_FOUND', `bundle '${file}': no such file`, { data: { path: file } }) : fromSystemError(err, 'open', file)));
  let members: Map<string, BundleFile>;
  let dataOffset: number;
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(BUNDLE_HEADER_BYTES);
    await fh.read(head, 0, Math.min(size, BUNDLE_HEADER_BYTES), 0);
    const n = bundleIndexLength(head.subarray(0, Math.min(size, BUNDLE_HEADER_BYTES)));
    const whole = Buffer.alloc(Math.min(size, BUNDLE_HEADER_BYTES + n));
    await fh.read(whole, 0, whole.length, 0);
    const index = decodeBundleIndex(whole, size);
    members = new Map(index.files.map((f) => [f.path, f]));
    dataOffset = index.dataOffset;
  } catch (err) {
    throw err instanceof LarchError ? withFile(err, file) : fromSystemError(err, 'read', file);
  } finally {
    await fh.close();
  }
  const where = (p: string) => `${pathToFileURL(file).href}#${p}`;
  const member = (p: string, o: { maxBytes: number; expectedSize?: number }): BundleFile => {
    const m = members.get(p);
    if (!m) throw new LarchError('NOT_FOUND', `bundle '${file}' has no '${p}'`, { hint: 'the bundle was made for other releases: make one from the release this device runs (larch bundle create --from)', data: { url: where(p) } });
    if (m.size > o.maxBytes) throw new LarchError('INVALID_INPUT', `'${where(p)}' is ${m.size} bytes, more than the ${o.maxBytes} accepted`, { data: { url: where(p), max_bytes: o.maxBytes, reason: 'too-large' } });
    if (o.expectedSize !== undefined && m.size !== o.expectedSize) throw new LarchError('INVALID_INPUT', `'${where(p)}' is ${m.size} bytes, not the ${o.expectedSize} the signed metadata says`, { data: { url: where(p), expected: o.expectedSize, actual: m.size } });
    return m;
  };
  const fetcher: FileFetcher = {
    url: file,
    where,
    async fetchBytes(p, o) {
      const m = member(p, o);
      const bytes = await intoMemory((sink) => copy(file, dataOffset, m, sink, where(p)));
      checkHash(m, createHash('sha256').update(bytes).digest('hex'), where(p));
      return bytes;
    },
    async downloadFile(p, dest, o) {
      const m = member(p, o);
      const result = await intoFile(dest, (sink) => copy(file, dataOffset, m, sink, where(p), o.onProgress));
      // The copy on the device is what the hash is taken of: it is what will be applied. A
      // damaged copy is dropped, so the next run (from a good stick) does not resume after it.
      const actual = await fileSha256(dest);
      if (actual !== m.sha256) await truncate(dest, 0).catch((err) => Promise.reject(fromSystemError(err, 'truncate', dest)));
      checkHash(m, actual, where(p), dest);
      return result;
    },
    exchange: (signal, fn) => fn(signal ? bounded(fetcher, signal) : fetcher),
  };
  return fetcher;
}

/** SHA-256 (hex) of a file, read in a stream (a delta part can be tens of MiB). @throws IO */
async function fileSha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  } catch (err) {
    throw fromSystemError(err, 'read', path);
  }
  return hash.digest('hex');
}

function withFile(err: LarchError, file: string): LarchError {
  return new LarchError(err.code, `'${file}': ${err.message}`, { hint: err.hint ?? undefined, data: { ...err.data, path: file } });
}

/** @throws INVALID_INPUT (data.reason 'bundle-member') when a member's bytes are not the index's */
function checkHash(m: BundleFile, actual: string, url: string, dest?: string): void {
  if (actual === m.sha256) return;
  throw new LarchError('INVALID_INPUT', `'${url}' is damaged: its SHA-256 is ${actual}, the bundle's index says ${m.sha256}`, {
    hint: 'copy the bundle again (the stick or the copy is damaged); nothing was staged',
    data: { url, reason: 'bundle-member', expected: m.sha256, actual, ...(dest ? { dest } : {}) },
  });
}

/** The fetcher with every read refused once signal has aborted (its reason is thrown). */
function bounded(f: FileFetcher, signal: AbortSignal): FileFetcher {
  return {
    ...f,
    fetchBytes: async (p, o) => (signal.throwIfAborted(), f.fetchBytes(p, o)),
    downloadFile: async (p, dest, o) => (signal.throwIfAborted(), f.downloadFile(p, dest, o)),
  };
}

/** Appends the member to the sink from the length it holds (a resume). Returns 1 ("one request"). */
async function copy(file: string, dataOffset: number, m: BundleFile, sink: Sink, url: string, onProgress?: (p: DownloadProgress) => void): Promise<number> {
  if (sink.size() > m.size) await sink.truncate();
  sink.expect?.(m.size);
  const fh = await open(file, 'r').catch((err) => Promise.reject(fromSystemError(err, 'open', file)));
  try {
    const buf = new Uint8Array(Math.min(READ_BYTES, Math.max(1, m.size)));
    while (sink.size() < m.size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, m.size - sink.size()), dataOffset + m.offset + sink.size());
      if (bytesRead === 0) throw new LarchError('IO', `'${url}' ended at ${sink.size()} of ${m.size} bytes while being read (was the bundle cut?)`, { hint: 'copy the bundle again, then run the command again: it resumes', data: { url } });
      sink.write(buf.subarray(0, bytesRead));
      onProgress?.({ url, receivedBytes: sink.size(), totalBytes: m.size });
    }
    return 1;
  } finally {
    await fh.close();
  }
}

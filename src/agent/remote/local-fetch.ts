/**
 * The local fetcher: an archive repo in a directory of this machine (a plain path or a
 * `file://` URL: a mounted USB stick, an NFS share, the vendor repo on a build host). Its files
 * are read as they are; what arrives is checked by the same code as over HTTP and MQTT (pull.ts),
 * so a local repo is trusted no more than a server. Sizes are bounded as the other fetchers bound
 * them (maxBytes, expectedSize) before a byte is read.
 */
import { open } from 'node:fs/promises';
import { isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { LarchError, fromSystemError } from '../../errors.ts';
import { type Sink, intoFile, intoMemory } from './download-sink.ts';
import type { DownloadProgress, DownloadResult, FileFetcher } from './fetcher.ts';

/** Bytes read at once. */
const READ_BYTES = 256 * 1024;

/** Whether a remote names a local directory: a `file:` URL, or no URL scheme at all (a path). */
export function isLocalRemote(url: string): boolean {
  return url.startsWith('file:') || !/^[a-z][a-z0-9+.-]*:\/\//i.test(url);
}

/** The directory of a local remote (a `file:` URL or a path, relative to the working directory). */
export function localRemoteDir(url: string): string {
  if (!url.startsWith('file:')) return resolve(url);
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw new LarchError('USAGE', `remote '${url}': ${(err as Error).message}`, { hint: 'give file:///ABSOLUTE/PATH or a directory path', data: { url } });
  }
}

/** @param url a directory path or a `file://` URL of an archive repo */
export function localFetcher(url: string): FileFetcher {
  const root = localRemoteDir(url);
  const fetcher: FileFetcher = {
    url,
    where: (path) => pathToFileURL(join(root, path)).href + (path === '' ? '/' : ''),
    fetchBytes: (path, o) => intoMemory((sink) => copy(root, path, sink, o, fetcher.where(path))),
    downloadFile: (path, dest, o) => intoFile(dest, (sink) => copy(root, path, sink, o, fetcher.where(path))),
    exchange: (signal, fn) => fn(signal ? bounded(fetcher, signal) : fetcher),
  };
  return fetcher;
}

/** The fetcher with every file read refused once signal has aborted (its reason is thrown). */
function bounded(f: FileFetcher, signal: AbortSignal): FileFetcher {
  const check = () => signal.throwIfAborted();
  return {
    ...f,
    fetchBytes: async (path, o) => (check(), f.fetchBytes(path, o)),
    downloadFile: async (path, dest, o) => (check(), f.downloadFile(path, dest, o)),
  };
}

/**
 * Appends ROOT/PATH to the sink from the length the sink holds (a resume), after checking its
 * size against the caps. Returns 1 (one "request", as the other fetchers count them).
 * @throws NOT_FOUND, INVALID_INPUT (too large: data.reason 'too-large'; another size than expected), IO
 */
async function copy(root: string, path: string, sink: Sink, o: { maxBytes: number; expectedSize?: number; onProgress?: (p: DownloadProgress) => void }, where: string): Promise<number> {
  const rel = normalize(path);
  if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) throw new LarchError('INVALID_INPUT', `'${path}' is not a path inside the repo '${root}'`, { data: { url: where } });
  const file = join(root, rel);
  const fh = await open(file, 'r').catch((err) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new LarchError('NOT_FOUND', `'${where}': no such file`, { hint: 'check the remote path; the vendor may not have published this file', data: { url: where } });
    throw fromSystemError(err, 'open', file);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new LarchError('NOT_FOUND', `'${where}' is not a file`, { data: { url: where } });
    if (st.size > o.maxBytes) throw new LarchError('INVALID_INPUT', `'${where}' is ${st.size} bytes, more than the ${o.maxBytes} accepted`, { hint: 'the repo holds other data than its metadata says; nothing of it was kept', data: { url: where, max_bytes: o.maxBytes, reason: 'too-large' } });
    if (o.expectedSize !== undefined && st.size !== o.expectedSize) throw new LarchError('INVALID_INPUT', `'${where}' is ${st.size} bytes, not the ${o.expectedSize} the signed metadata says`, { data: { url: where, expected: o.expectedSize, actual: st.size } });
    if (sink.size() > st.size) await sink.truncate(); // what is held is not a prefix of this file
    sink.expect?.(st.size);
    const buf = new Uint8Array(Math.min(READ_BYTES, Math.max(1, st.size)));
    while (sink.size() < st.size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, st.size - sink.size()), sink.size());
      // Shorter than stat said: the file was cut while being read; what was read is kept for a resume.
      if (bytesRead === 0) throw new LarchError('IO', `'${where}' ended at ${sink.size()} of ${st.size} bytes while being read`, { hint: 'run the command again: it resumes', data: { url: where } });
      sink.write(buf.subarray(0, bytesRead));
      o.onProgress?.({ url: where, receivedBytes: sink.size(), totalBytes: st.size });
    }
    return 1;
  } catch (err) {
    throw err instanceof LarchError ? err : fromSystemError(err, 'read', file);
  } finally {
    await fh.close();
  }
}

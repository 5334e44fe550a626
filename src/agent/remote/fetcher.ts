/**
 * Where the files of an archive repo come from, by repo-relative path ('summary',
 * 'deltas/FROM-TO/part-0', 'objects/XX/REST.filez'). One Remote (remote.ts) runs over any of
 * them: HTTP (http-fetch.ts), MQTT chunk requests (mqtt-fetch.ts), a local directory
 * (local-fetch.ts). Every fetcher resumes a download from the length dest already holds, refuses
 * more than maxBytes (data.reason 'too-large') and another size than expectedSize, and throws
 * NOT_FOUND for a file the repo does not have; what arrives is checked (signatures, checksums)
 * once for every transport, by pull.ts.
 */
import type { FileDownload } from './download-sink.ts';

export interface DownloadProgress {
  /** Where the file is (fetcher.where(path)). */
  url: string;
  /** Bytes of the file held so far, including what an earlier run left. */
  receivedBytes: number;
  /** Size of the whole file when known. */
  totalBytes: number | null;
}

export type DownloadResult = FileDownload;

export interface FileFetcher {
  /** The remote as given (a URL or a path), for messages and `describe()`. */
  readonly url: string;
  /** Where a path is, for messages and error data (a URL, with no credentials). */
  where(path: string): string;
  fetchBytes(path: string, opts: { maxBytes: number; expectedSize?: number }): Promise<Uint8Array>;
  downloadFile(path: string, dest: string, opts: { maxBytes: number; expectedSize?: number; onProgress?: (p: DownloadProgress) => void }): Promise<DownloadResult>;
  /**
   * Runs one exchange (a summary check, a pull, a history walk) with the fetcher it should use,
   * ended early when signal aborts: HTTP gives every request the signal, MQTT connects for the
   * exchange and ends the connection with it, the local fetcher checks it between files.
   */
  exchange<T>(signal: AbortSignal | undefined, fn: (f: FileFetcher) => Promise<T>): Promise<T>;
}

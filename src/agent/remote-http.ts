/** The HTTP remote: an archive repo served as static files (larch serve, nginx, a CDN). */
import { LarchError } from '../errors.ts';
import { decodeCommit, metadataId, type ObjectId } from '../store/object.ts';
import { type FetchOptions, fetchBytes, withDeadline } from './http-fetch.ts';
import { fetchCommitObject, fetchSummary, httpFetcher, pullCommitWithFallback, remoteUrl } from './pull-http.ts';
import type { Remote } from './update.ts';

/** Largest commit object read while walking history (commits are small: metadata only). */
const MAX_COMMIT_BYTES = 1024 * 1024;

/**
 * opts.timeoutMs bounds each exchange in all (a check's summary, a whole download, a history
 * walk); opts.minSpeed is the minimum-speed rule of every request (--min-speed, --min-speed-time;
 * its window is also the stall timeout); opts.cancel gives, at the start of each exchange, a
 * signal that ends it early (the daemon's, for a command that must not wait behind it).
 */
export function httpRemote(baseUrl: string, opts: { timeoutMs?: number; minSpeed?: { bytesPerSecond: number; windowMs: number }; cancel?: () => AbortSignal | undefined } = {}): Remote {
  const bounded = <T>(fn: (signal: AbortSignal | undefined) => Promise<T>) => withDeadline(opts.timeoutMs, baseUrl, fn, opts.cancel?.());
  const fetch = (signal: AbortSignal | undefined): FetchOptions => (opts.minSpeed ? { signal, lowSpeed: opts.minSpeed, stallTimeoutMs: opts.minSpeed.windowMs } : { signal });
  return {
    describe: () => baseUrl,
    fetchSummary: (o) => bounded((signal) => fetchSummary(baseUrl, { ...o, fetch: fetch(signal) })),
    pull: (repo, to, o) => bounded((signal) => pullCommitWithFallback(repo, to, { ...o, fetcher: httpFetcher(baseUrl, fetch(signal)) })),
    fetchCommit: (id, { trusted }) => bounded((signal) => fetchCommitObject(httpFetcher(baseUrl, fetch(signal)), id, { trusted })),
    history: (_repo, from, limit) => bounded((signal) => history(baseUrl, from, limit, fetch(signal))),
  };
}

/** A commit's parent chain from the remote, newest first, at most `limit` (deploy VERSION). */
async function history(baseUrl: string, from: ObjectId, limit: number, fetch: FetchOptions): Promise<{ commit: ObjectId; version: string }[]> {
  const out: { commit: ObjectId; version: string }[] = [];
  let id: ObjectId | null = from;
  while (id !== null && out.length < limit) {
    const url = remoteUrl(baseUrl, `objects/${id.slice(0, 2)}/${id.slice(2)}.commit`);
    const bytes = await fetchBytes(url, { ...fetch, maxBytes: MAX_COMMIT_BYTES });
    if (metadataId(bytes) !== id) throw new LarchError('OBJECT_CORRUPT', `commit ${id} from '${url}' does not match its id`, { data: { id, url } });
    let commit;
    try {
      commit = decodeCommit(bytes);
    } catch (err) {
      throw new LarchError('OBJECT_CORRUPT', `commit ${id} from '${url}' is malformed: ${(err as Error).message}`, { data: { id, url } });
    }
    out.push({ commit: id, version: commit.version });
    id = commit.parent;
  }
  return out;
}

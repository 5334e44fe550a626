/**
 * The one Remote: where updates come from, over any FileFetcher (HTTP, MQTT chunks, a local
 * directory). The signed summary, the delta-or-objects pull, one commit for `check`, and the
 * history walk of `deploy VERSION` are written here once; the fetcher only moves bytes.
 */
import { LarchError } from '../../errors.ts';
import type { Summary, SummaryDelta } from '../../protocol/summary.ts';
import { MAX_TRUST_BYTES, trustFilePath } from '../../protocol/trust.ts';
import { type Commit, decodeCommit, metadataId, type ObjectId } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import type { FileFetcher } from './fetcher.ts';
import { type DeltaFallback, MAX_PULLED_METADATA_BYTES, fetchCommitObject, fetchSummary, objectPath, pullCommitWithFallback } from './pull.ts';

/** Where updates come from, as the update verbs (update.ts), provision and the daemon need it. */
export interface Remote {
  describe(): string;
  /** The verified summary. @throws SIGNATURE_MISSING, SIGNATURE_INVALID (expired, rollback, ...) */
  fetchSummary(opts: { trusted: Uint8Array[]; lastSerial?: number; now: number; threshold?: number }): Promise<Summary>;
  /** Brings commit `to` into repo: through `delta` when given, else object by object. */
  /** A delta that fails (unsigned, missing, damaged) falls back to the objects: onFallback says why, the result keeps it. */
  pull(repo: Repo, to: ObjectId, opts: { delta: SummaryDelta | null; trusted: Uint8Array[]; downloadDir: string; progress?: (done: number, total: number | null) => void; onFallback?: (f: DeltaFallback, err: LarchError) => Promise<void> }): Promise<{ via: 'delta' | 'objects'; bytes: number; fallback?: DeltaFallback }>;
  /** One commit object, its id and signatures checked, not stored (check's package diff). */
  fetchCommit(id: ObjectId, opts: { trusted: Uint8Array[] }): Promise<Commit>;
  /** R/trust/VERSION.cbor, the signed trust document of that version (unchecked), or null when the remote has none. */
  fetchTrust?(version: number): Promise<Uint8Array | null>;
  /** A commit's parent chain, for `deploy VERSION` (newest first, at most `limit`; it stops after the first entry `until` accepts). */
  history?(repo: Repo, from: ObjectId, limit: number, until?: (h: { commit: ObjectId; version: string }) => boolean): Promise<{ commit: ObjectId; version: string }[]>;
}

export interface RemoteOptions {
  /** The bound of each exchange in all (a check's summary, a whole download, a history walk). */
  timeoutMs?: number;
  /** Gives, at the start of each exchange, a signal that ends it early (the daemon's, for a command that must not wait behind it). */
  cancel?: () => AbortSignal | undefined;
}

/**
 * The Remote over a fetcher. Each call is one exchange (FileFetcher.exchange: one MQTT
 * connection, one abort signal for every HTTP request), bounded by opts.timeoutMs.
 */
export function remoteOver(fetcher: FileFetcher, opts: RemoteOptions = {}): Remote {
  const exchange = <T>(fn: (f: FileFetcher) => Promise<T>) => withDeadline(opts.timeoutMs, fetcher.where(''), (signal) => fetcher.exchange(signal, fn), opts.cancel?.());
  return {
    describe: () => fetcher.url,
    fetchSummary: (o) => exchange((f) => fetchSummary(f, o)),
    pull: (repo, to, o) => exchange((f) => pullCommitWithFallback(repo, to, { ...o, fetcher: f })),
    fetchCommit: (id, { trusted }) => exchange((f) => fetchCommitObject(f, id, { trusted })),
    history: (_repo, from, limit, until) => exchange((f) => history(f, from, limit, until)),
    fetchTrust: (version) => exchange((f) => f.fetchBytes(trustFilePath(version), { maxBytes: MAX_TRUST_BYTES }).catch((err) => (err instanceof LarchError && err.code === 'NOT_FOUND' ? null : Promise.reject(err)))),
  };
}

/**
 * A commit's parent chain from the remote, newest first, at most `limit` (deploy VERSION). Each
 * commit is checked against its id; its signatures are not read (the one deployed is pulled,
 * and checked, as any other).
 * @throws OBJECT_MISSING, OBJECT_CORRUPT, NOT_FOUND, IO
 */
async function history(f: FileFetcher, from: ObjectId, limit: number, until?: (h: { commit: ObjectId; version: string }) => boolean): Promise<{ commit: ObjectId; version: string }[]> {
  const out: { commit: ObjectId; version: string }[] = [];
  let id: ObjectId | null = from;
  while (id !== null && out.length < limit) {
    const url = f.where(objectPath(id, 'commit'));
    const bytes = await f.fetchBytes(objectPath(id, 'commit'), { maxBytes: MAX_PULLED_METADATA_BYTES.commit });
    if (metadataId(bytes) !== id) throw new LarchError('OBJECT_CORRUPT', `commit ${id} from '${url}' does not match its id`, { data: { id, url } });
    let commit;
    try {
      commit = decodeCommit(bytes);
    } catch (err) {
      throw new LarchError('OBJECT_CORRUPT', `commit ${id} from '${url}' is malformed: ${(err as Error).message}`, { data: { id, url } });
    }
    out.push({ commit: id, version: commit.version });
    if (until?.(out[out.length - 1]!)) break;
    id = commit.parent;
  }
  return out;
}

/**
 * Runs fn with an AbortSignal that fires after timeoutMs (none when timeoutMs is undefined or
 * 0): the total bound of one check or download (`--timeout`, daemon.conf `timeout_s`),
 * whatever the retries and stall timeouts inside would allow. The signal's reason, which the
 * aborted operation throws, is an IO error naming the server and the limit.
 * @throws IO (data.reason 'timeout', data.url, data.timeout_s), and what fn throws
 */
export async function withDeadline<T>(timeoutMs: number | undefined, server: string, fn: (signal: AbortSignal | undefined) => Promise<T>, cancel?: AbortSignal): Promise<T> {
  if (!timeoutMs && !cancel) return fn(undefined);
  if (cancel?.aborted) throw cancel.reason;
  const ac = new AbortController();
  // The caller's cancel (the daemon ending a transfer for a command) ends it too, with its reason.
  const onCancel = () => ac.abort(cancel!.reason);
  cancel?.addEventListener('abort', onCancel, { once: true });
  const seconds = Math.round((timeoutMs ?? 0) / 100) / 10;
  const timer = timeoutMs ? setTimeout(() => {
    ac.abort(
      new LarchError('IO', `${server}: no complete answer within ${seconds} s (the --timeout limit); gave up`, {
        hint: 'check that the server is up and answers; raise --timeout (daemon.conf timeout_s) for a slow link; a download resumes where it stopped',
        data: { url: server, reason: 'timeout', timeout_s: seconds },
      }),
    );
  }, timeoutMs) : undefined;
  try {
    return await fn(ac.signal);
  } catch (err) {
    // An operation that noticed the abort by another error (a socket reset) still reports the deadline.
    throw ac.signal.aborted ? ac.signal.reason : err;
  } finally {
    clearTimeout(timer);
    cancel?.removeEventListener('abort', onCancel);
  }
}


/** The HTTP remote: an archive repo served as static files (larch serve, nginx, a CDN). */
import { LarchError } from '../errors.ts';
import { decodeCommit, metadataId, type ObjectId } from '../store/object.ts';
import { fetchBytes } from './http-fetch.ts';
import { fetchCommitObject, fetchSummary, httpFetcher, pullCommitWithFallback, remoteUrl } from './pull-http.ts';
import type { Remote } from './update.ts';

/** Largest commit object read while walking history (commits are small: metadata only). */
const MAX_COMMIT_BYTES = 1024 * 1024;

export function httpRemote(baseUrl: string): Remote {
  return {
    describe: () => baseUrl,
    fetchSummary: (opts) => fetchSummary(baseUrl, opts),
    pull: (repo, to, opts) => pullCommitWithFallback(repo, to, { ...opts, fetcher: httpFetcher(baseUrl) }),
    fetchCommit: (id, { trusted }) => fetchCommitObject(httpFetcher(baseUrl), id, { trusted }),
    async history(_repo, from, limit) {
      const out: { commit: ObjectId; version: string }[] = [];
      let id: ObjectId | null = from;
      while (id !== null && out.length < limit) {
        const url = remoteUrl(baseUrl, `objects/${id.slice(0, 2)}/${id.slice(2)}.commit`);
        const bytes = await fetchBytes(url, { maxBytes: MAX_COMMIT_BYTES });
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
    },
  };
}

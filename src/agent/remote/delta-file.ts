/**
 * A one-file static delta (`LARCHDLT`, docs/formats.md §8.1) as an update source, for
 * `upgrade --from-file` with no summary at all: the delta's envelope signature and its commit's
 * signatures (the commit role) are the trust, checked by the delta reader (delta/apply.ts) before
 * anything is stored; every target check of upgrade runs on the commit the superblock carries.
 * No expiry or serial: a file the operator brought cannot freeze the device, and the release
 * floor and the downgrade check still stop an older release.
 */
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { LarchError, fromSystemError } from '../../errors.ts';
import { applyDelta, openDelta } from '../../delta/apply.ts';
import { DELTA_MAGIC } from '../../delta/format.ts';
import { openDeltaFile } from '../../delta/source.ts';
import { type ObjectId, decodeCommit } from '../../store/object.ts';
import type { Remote } from './remote.ts';

/** Does this file start as a one-file delta? */
export async function isDeltaFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch((err) => Promise.reject(fromSystemError(err, 'open', path)));
  try {
    const head = Buffer.alloc(DELTA_MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(DELTA_MAGIC);
  } finally {
    await fh.close();
  }
}

/** What the delta brings, read from its superblock with its signatures checked. */
export interface DeltaFileTarget {
  path: string;
  from: ObjectId | null;
  commit: ObjectId;
  version: string;
  timestamp: number;
}

/**
 * The delta's target, its envelope and commit signatures checked against `trusted` (the commit
 * role). @throws DELTA_CORRUPT, DELTA_UNSUPPORTED, SIGNATURE_MISSING, SIGNATURE_INVALID, NOT_FOUND
 */
export async function readDeltaFileTarget(path: string, trusted: Uint8Array[]): Promise<DeltaFileTarget> {
  const file = resolve(path);
  const sb = await openDelta(await openDeltaFile(file), { trusted });
  const c = decodeCommit(sb.commit);
  return { path: file, from: sb.from, commit: sb.to, version: c.version, timestamp: c.timestamp };
}

/**
 * The delta file as the Remote the update verbs use: `pull` applies it, `fetchCommit` reads the
 * commit from its superblock. There is no summary to fetch.
 */
export function deltaFileRemote(path: string): Remote {
  const file = resolve(path);
  return {
    describe: () => file,
    fetchSummary: async () => {
      throw new LarchError('USAGE', `'${file}' is a one-file delta: it has no summary`, { data: { path: file } });
    },
    async pull(repo, to, o) {
      const source = await openDeltaFile(file);
      const r = await applyDelta(repo, source, { trusted: o.trusted });
      if (r.to !== to) throw new LarchError('DELTA_CORRUPT', `'${file}' brings commit ${r.to}, not ${to}`, { data: { path: file } });
      const bytes = await stat(file).then((s) => s.size, (err) => Promise.reject(fromSystemError(err, 'stat', file)));
      return { via: 'delta', bytes };
    },
    async fetchCommit(id, o) {
      const t = await readDeltaFileTarget(file, o.trusted);
      if (t.commit !== id) throw new LarchError('NOT_FOUND', `'${file}' carries commit ${t.commit}, not ${id}`, { data: { path: file, id } });
      return decodeCommit((await openDelta(await openDeltaFile(file), { trusted: o.trusted })).commit);
    },
  };
}

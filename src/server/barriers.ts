/**
 * Barrier releases (Fedora CoreOS style), as state of the vendor repo: R/barriers.json
 * (docs/formats.md §10.5, docs/fleet.md). A barrier is a release every device must boot before
 * it goes further (one that ships a newer agent, new keys, a data migration): `larch publish`
 * lists each ref's barriers in the signed summary, and a device whose booted commit is older
 * than one is offered that barrier instead of the head (src/agent/barriers.ts).
 *
 *   {"format": 1, "refs": {"os/stable": [{"commit": HEX64, "version": "2", "added": ISO 8601}]}}
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';
import type { SummaryBarrier } from '../protocol/summary.ts';
import type { ObjectId } from '../store/object.ts';
import type { Repo } from '../store/repo.ts';

export const BARRIERS_FILE = 'barriers.json';
export const BARRIERS_FORMAT = 1;
/** How far back `barrier add` looks for a version in the ref's history. */
const HISTORY_LIMIT = 10_000;

export interface BarrierEntry {
  commit: ObjectId;
  version: string;
  /** When it was declared (ISO 8601). */
  added: string;
}

export type BarrierState = Record<string, BarrierEntry[]>;

const path = (repo: Repo) => join(repo.path, BARRIERS_FILE);

/** The declared barriers of every ref, {} when the file does not exist. @throws INVALID_INPUT (not the format), IO */
export async function readBarriers(repo: Repo): Promise<BarrierState> {
  const file = path(repo);
  const text = await readFile(file, 'utf8').catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', file))));
  if (text === null) return {};
  let parsed: { format?: unknown; refs?: unknown };
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw badFile(file, (err as Error).message);
  }
  if (parsed?.format !== BARRIERS_FORMAT) throw badFile(file, `"format" is not ${BARRIERS_FORMAT}`);
  const refs = parsed.refs;
  if (typeof refs !== 'object' || refs === null || Array.isArray(refs)) throw badFile(file, 'no "refs" object');
  for (const [ref, list] of Object.entries(refs)) {
    const ok = Array.isArray(list) && list.every((b) => typeof b?.commit === 'string' && /^[0-9a-f]{64}$/.test(b.commit) && typeof b.version === 'string' && typeof b.added === 'string');
    if (!ok) throw badFile(file, `ref '${quash(ref)}': not a list of {"commit", "version", "added"}`);
  }
  return refs as BarrierState;
}

/**
 * The commit of `ref` that `what` names: a commit id or rev (resolved in R), or a version of a
 * commit in the ref's history. @throws NOT_FOUND naming the ref
 */
export async function resolveBarrier(repo: Repo, ref: string, what: string): Promise<{ commit: ObjectId; version: string }> {
  let id: ObjectId | null = (await repo.readRef(ref)) ?? null;
  if (id === null) throw new LarchError('NOT_FOUND', `${repo.path} has no branch '${quash(ref)}'`, { hint: `'larch refs --repo ${repo.path}' lists the branches`, data: { ref } });
  for (let n = 0; id !== null && n < HISTORY_LIMIT; n++) {
    const c = await repo.readCommit(id);
    if (c.version === what || id === what || (what.length >= 8 && /^[0-9a-f]+$/.test(what) && id.startsWith(what))) return { commit: id, version: c.version };
    id = c.parent;
  }
  throw new LarchError('NOT_FOUND', `no commit of ${ref} has the version or id '${quash(what)}'`, { hint: `'larch log --repo ${repo.path} ${ref}' lists its history; a barrier must be a release of the ref`, data: { ref, barrier: what } });
}

/**
 * Adds (or, with remove, drops) the barrier `what` of `ref`, durably (atomic replace, fsync'd),
 * under the repo's writer lock. Returns the ref's barriers after the change, oldest first.
 * @throws NOT_FOUND (no such release; remove: not a barrier), LOCKED, IO, NO_SPACE
 */
export async function changeBarriers(repo: Repo, ref: string, what: string, op: 'add' | 'remove', now = new Date()): Promise<BarrierEntry[]> {
  const lock = await repo.lock();
  try {
    const state = await readBarriers(repo);
    const list = state[ref] ?? [];
    if (op === 'add') {
      const found = await resolveBarrier(repo, ref, what);
      if (!list.some((b) => b.commit === found.commit)) list.push({ ...found, added: now.toISOString() });
    } else {
      const i = list.findIndex((b) => b.version === what || b.commit === what || (what.length >= 8 && b.commit.startsWith(what)));
      if (i < 0) throw new LarchError('NOT_FOUND', `'${quash(what)}' is not a barrier of ${ref}`, { hint: `'larch barrier list --repo ${repo.path}' lists them`, data: { ref, barrier: what } });
      list.splice(i, 1);
    }
    if (list.length > 0) state[ref] = list;
    else delete state[ref];
    await writeFileAtomic(path(repo), JSON.stringify({ format: BARRIERS_FORMAT, refs: state }, null, 2) + '\n');
    return list;
  } finally {
    await lock.release();
  }
}

/**
 * What the summary lists for `ref`: each declared barrier with its commit's version, timestamp and
 * `larch.release` (when it has one), oldest first. A barrier whose commit is gone from R (pruned)
 * cannot be offered, so publish refuses rather than list it.
 */
export async function summaryBarriers(repo: Repo, state: BarrierState, ref: string): Promise<SummaryBarrier[]> {
  const out: SummaryBarrier[] = [];
  for (const b of state[ref] ?? []) {
    if (!(await repo.hasObject('commit', b.commit))) {
      throw new LarchError('NOT_FOUND', `barrier ${b.version} of ${ref} (commit ${b.commit}) is not in ${repo.path}`, { hint: `remove it with 'larch barrier remove --repo ${repo.path} --ref ${ref} ${b.version}', or bring the commit back`, data: { ref, commit: b.commit, path: path(repo) } });
    }
    const c = await repo.readCommit(b.commit);
    const release = c.metadata.get('larch.release');
    out.push({ commit: b.commit, version: c.version, timestamp: c.timestamp, ...(typeof release === 'number' && Number.isSafeInteger(release) && release >= 0 ? { release } : {}) });
  }
  return out.sort((a, b) => (a.release !== undefined && b.release !== undefined ? a.release - b.release : a.timestamp - b.timestamp));
}

function badFile(file: string, why: string): LarchError {
  return new LarchError('INVALID_INPUT', `${file}: not a larch barriers file: ${why}`, {
    hint: "declare the barriers again with 'larch barrier add' after moving the file away",
    data: { path: file },
  });
}

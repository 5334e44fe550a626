/**
 * Removes what no ref needs: leftover staging directories of dead processes, commits beyond
 * --keep on each branch, and every object no kept commit reaches. Holds the writer lock, so
 * no transaction can be relying on an object while it is deleted.
 *
 * Commit objects go first, then their signatures, then trees and files: a prune killed at any
 * unlink leaves every commit still in the repo whole (the ones it was removing are gone, what is
 * left of them is unreachable garbage the next prune removes), so a reader never meets a commit
 * whose trees are missing, and a later pull of that commit fetches it again. The filesystem is
 * synced between the commit unlinks and the rest, so a power cut cannot reorder them either.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { failpoint } from '../failpoint.ts';
import { syncFilesystem } from '../_durable.ts';
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';

export interface PruneOptions {
  /** Keep at most this many commits of history per branch (the head counts); default: all. */
  keep?: number;
  dryRun?: boolean;
}
export interface PruneResult {
  commits_kept: number;
  objects_deleted: number;
  bytes_freed: number;
  temp_entries_removed: number;
}

async function listDirs(dir: string): Promise<string[]> {
  const out = [dir];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) out.push(...(await listDirs(join(dir, e.name))));
  }
  return out;
}

const SIDECARS: Record<string, string> = { commit: 'sig', file: 'filemeta' };
/** Deletion order by extension: commits, their signatures, then everything they reached. */
const DELETE_RANK: Record<string, number> = { commit: 0, sig: 1, other: 2 };

/**
 * Deletes objects that are known bad (a corrupt file found by a verifying checkout), with their
 * sidecars, under the writer lock, so the next pull of their commit fetches them again.
 */
export async function dropObjects(repo: Repo, kind: 'file' | 'dirtree' | 'dirmeta', ids: ObjectId[]): Promise<void> {
  const lock = await repo.lock();
  try {
    for (const id of ids) {
      for (const k of kind === 'file' ? (['file', 'filemeta', 'xattrs'] as const) : [kind]) await rm(repo.objectPath(k, id), { force: true });
    }
  } finally {
    await lock.release();
  }
}

export async function prune(repo: Repo, opts: PruneOptions = {}): Promise<PruneResult> {
  const lock = await repo.lock();
  try {
    const result: PruneResult = { commits_kept: 0, objects_deleted: 0, bytes_freed: 0, temp_entries_removed: 0 };
    // Every writer holds the lock, so whatever is in tmp/ now belongs to a process that died.
    for (const e of await readdir(join(repo.path, 'tmp')).catch(() => [])) {
      result.temp_entries_removed++;
      if (!opts.dryRun) await rm(join(repo.path, 'tmp', e), { recursive: true, force: true });
    }
    // Interrupted atomic writes (refs, config) leave .tmp-* files beside their target.
    for (const d of [repo.path, join(repo.path, 'keys', 'trusted'), ...(await listDirs(join(repo.path, 'refs')))]) {
      for (const e of await readdir(d).catch(() => [])) {
        if (!e.startsWith('.tmp-')) continue;
        result.temp_entries_removed++;
        if (!opts.dryRun) await rm(join(d, e), { force: true });
      }
    }
    if (!opts.dryRun) failpoint('prune::after-temp-cleanup');

    const reachable = new Set<string>();
    const markTree = async (tree: ObjectId, meta: ObjectId) => {
      reachable.add(`dirmeta:${meta}`);
      if (reachable.has(`dirtree:${tree}`)) return;
      reachable.add(`dirtree:${tree}`);
      const dt = await repo.readDirTree(tree);
      for (const f of dt.files) reachable.add(`file:${f.file}`);
      for (const d of dt.dirs) await markTree(d.tree, d.meta);
    };
    // Each branch keeps its own N newest commits, even where branches share history.
    for (const { commit } of await repo.listRefs()) {
      let id: ObjectId | null = commit;
      for (let depth = 0; id && (opts.keep === undefined || depth < opts.keep); depth++) {
        if (!(await repo.hasObject('commit', id))) break;
        if (reachable.has(`commit:${id}`)) {
          if (opts.keep === undefined) break; // the rest of this history is already kept
          id = (await repo.readCommit(id)).parent;
          continue;
        }
        reachable.add(`commit:${id}`);
        result.commits_kept++;
        const c = await repo.readCommit(id);
        await markTree(c.root.tree, c.root.meta);
        id = c.parent;
      }
    }

    const doomed: { path: string; rank: number }[] = [];
    for (let i = 0; i < 256; i++) {
      const sub = i.toString(16).padStart(2, '0');
      const dir = join(repo.path, 'objects', sub);
      for (const name of await readdir(dir).catch(() => [])) {
        const dot = name.indexOf('.');
        const id = sub + name.slice(0, dot);
        const ext = name.slice(dot + 1);
        let kind = ext;
        if (kind === 'filez' || kind === 'xattrs') kind = 'file';
        const owner = Object.entries(SIDECARS).find(([, e]) => e === kind)?.[0];
        if (reachable.has(`${owner ?? kind}:${id}`)) continue;
        doomed.push({ path: join(dir, name), rank: DELETE_RANK[ext] ?? DELETE_RANK.other! });
      }
    }
    // Stable: within a rank, objects/00..ff order.
    doomed.sort((a, b) => a.rank - b.rank);
    const commitDirs = new Set<string>();
    for (const { path, rank } of doomed) {
      const size = await stat(path).then((s) => s.size, () => 0);
      if (!opts.dryRun && rank > DELETE_RANK.commit! && commitDirs.size > 0) {
        // A power cut may keep later unlinks and lose earlier ones: the commits' removal is made
        // durable before any tree goes, or a commit could come back without its trees.
        await syncFilesystem(repo.path, [...commitDirs]);
        commitDirs.clear();
      }
      if (!opts.dryRun) {
        if (rank === DELETE_RANK.commit) commitDirs.add(dirname(path));
        await rm(path, { force: true });
        failpoint(rank === DELETE_RANK.commit ? 'prune::after-commit-unlink' : 'prune::after-object-unlink');
      }
      result.objects_deleted++;
      result.bytes_freed += size;
    }
    return result;
  } finally {
    await lock.release();
  }
}

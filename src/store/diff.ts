/** Compares two commits' trees: added, removed and modified paths, skipping identical subtrees by id. */
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';
import { childPath } from './walk.ts';

export interface TreeDiff {
  added: string[];
  removed: string[];
  modified: string[];
}

const text = (p: Buffer) => '/' + p.toString('utf8');
const key = (n: Uint8Array) => Buffer.from(n).toString('latin1');

export async function diffCommits(repo: Repo, from: ObjectId, to: ObjectId): Promise<TreeDiff> {
  const [a, b] = await Promise.all([repo.readCommit(from), repo.readCommit(to)]);
  const out: TreeDiff = { added: [], removed: [], modified: [] };

  const listAll = async (tree: ObjectId, path: Buffer, into: string[]) => {
    const dt = await repo.readDirTree(tree);
    for (const f of dt.files) into.push(text(childPath(path, f.name)));
    for (const d of dt.dirs) {
      into.push(text(childPath(path, d.name)) + '/');
      await listAll(d.tree, childPath(path, d.name), into);
    }
  };

  const walk = async (ta: ObjectId, tb: ObjectId, path: Buffer) => {
    if (ta === tb) return;
    const [da, db] = await Promise.all([repo.readDirTree(ta), repo.readDirTree(tb)]);
    const filesA = new Map(da.files.map((f) => [key(f.name), f]));
    const filesB = new Map(db.files.map((f) => [key(f.name), f]));
    const dirsA = new Map(da.dirs.map((d) => [key(d.name), d]));
    const dirsB = new Map(db.dirs.map((d) => [key(d.name), d]));
    for (const [k, f] of filesA) {
      const p = text(childPath(path, f.name));
      const other = filesB.get(k);
      if (!other) {
        out.removed.push(p);
        if (dirsB.has(k)) out.added.push(p + '/'), await listAll(dirsB.get(k)!.tree, childPath(path, f.name), out.added);
      } else if (other.file !== f.file) out.modified.push(p);
    }
    for (const [k, f] of filesB) {
      if (!filesA.has(k)) {
        out.added.push(text(childPath(path, f.name)));
        if (dirsA.has(k)) out.removed.push(text(childPath(path, f.name)) + '/'), await listAll(dirsA.get(k)!.tree, childPath(path, f.name), out.removed);
      }
    }
    for (const [k, d] of dirsA) {
      const other = dirsB.get(k);
      if (other) {
        if (other.meta !== d.meta) out.modified.push(text(childPath(path, d.name)) + '/');
        await walk(d.tree, other.tree, childPath(path, d.name));
      } else if (!filesB.has(k)) {
        out.removed.push(text(childPath(path, d.name)) + '/');
        await listAll(d.tree, childPath(path, d.name), out.removed);
      }
    }
    for (const [k, d] of dirsB) {
      if (!dirsA.has(k) && !filesA.has(k)) {
        out.added.push(text(childPath(path, d.name)) + '/');
        await listAll(d.tree, childPath(path, d.name), out.added);
      }
    }
  };
  if (a.root.meta !== b.root.meta) out.modified.push('/');
  await walk(a.root.tree, b.root.tree, Buffer.alloc(0));
  for (const list of [out.added, out.removed, out.modified]) list.sort();
  return out;
}

/**
 * One file of a commit's tree by its path, read without a checkout (`db list` reads a tree's
 * dpkg status file this way). Follows no symlink: a path through one is not found.
 */
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';

/**
 * The content of the regular file at `path` (relative, '/'-separated) in the tree rooted at
 * `root`, or null when there is no regular file there. Content is not verified against its id.
 * @throws OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function readTreeFile(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, path: string): Promise<Buffer | null> {
  const parts = path.split('/').filter(Boolean);
  const name = parts.pop();
  if (name === undefined) return null;
  let tree = root.tree;
  for (const part of parts) {
    const dir = (await repo.readDirTree(tree)).dirs.find((d) => Buffer.from(d.name).toString('utf8') === part);
    if (!dir) return null;
    tree = dir.tree;
  }
  const file = (await repo.readDirTree(tree)).files.find((f) => Buffer.from(f.name).toString('utf8') === name);
  if (!file) return null;
  const stored = await repo.readFile(file.file);
  if (stored.header.type !== 'reg') return null;
  const chunks: Buffer[] = [];
  for await (const chunk of stored.content()) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

/**
 * The regular files directly in the directory at `path` of the tree, name and content, in byte
 * order of name; [] when there is no such directory. Anything else there (a symlink, a
 * subdirectory) is listed in `skipped`, for the caller to refuse or ignore.
 * @throws OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function readTreeDir(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, path: string): Promise<{ files: { name: string; content: Buffer }[]; skipped: string[] }> {
  let tree = root.tree;
  for (const part of path.split('/').filter(Boolean)) {
    const dir = (await repo.readDirTree(tree)).dirs.find((d) => Buffer.from(d.name).toString('utf8') === part);
    if (!dir) return { files: [], skipped: [] };
    tree = dir.tree;
  }
  const dt = await repo.readDirTree(tree);
  const files: { name: string; content: Buffer }[] = [];
  const skipped = dt.dirs.map((d) => Buffer.from(d.name).toString('utf8'));
  for (const f of dt.files) {
    const name = Buffer.from(f.name).toString('utf8');
    const stored = await repo.readFile(f.file);
    if (stored.header.type !== 'reg') {
      skipped.push(name);
      continue;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of stored.content()) chunks.push(Buffer.from(chunk));
    files.push({ name, content: Buffer.concat(chunks) });
  }
  files.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  return { files, skipped: skipped.sort() };
}

/**
 * Files of a commit's tree by path, read without a checkout (`db list` reads a tree's dpkg status
 * file this way, a deployment its kargs.d). Follows no symlink: a path through one is not found.
 */
import type { ObjectId } from './object.ts';
import type { Repo } from './repo.ts';

const nameOf = (n: Uint8Array) => Buffer.from(n).toString('utf8');

/**
 * The content of the regular file at `path` (relative, '/'-separated) in the tree rooted at
 * `root`, or null when there is no regular file there. Content is not verified against its id.
 * @throws OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function readTreeFile(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, path: string): Promise<Buffer | null> {
  const parts = path.split('/').filter(Boolean);
  const name = parts.pop();
  const tree = name === undefined ? null : await dirAt(repo, root.tree, parts);
  if (tree === null) return null;
  const file = (await repo.readDirTree(tree)).files.find((f) => nameOf(f.name) === name);
  return file ? regularContent(repo, file.file) : null;
}

/**
 * The regular files directly in the directory at `path` of the tree, name and content, in byte
 * order of name; [] when there is no such directory. Anything else there (a symlink, a
 * subdirectory) is listed in `skipped`, for the caller to refuse or ignore.
 * @throws OBJECT_MISSING, OBJECT_CORRUPT
 */
export async function readTreeDir(repo: Repo, root: { tree: ObjectId; meta: ObjectId }, path: string): Promise<{ files: { name: string; content: Buffer }[]; skipped: string[] }> {
  const tree = await dirAt(repo, root.tree, path.split('/').filter(Boolean));
  if (tree === null) return { files: [], skipped: [] };
  const dt = await repo.readDirTree(tree);
  const files: { name: string; content: Buffer }[] = [];
  const skipped = dt.dirs.map((d) => nameOf(d.name));
  for (const f of dt.files) {
    const content = await regularContent(repo, f.file);
    if (content === null) skipped.push(nameOf(f.name));
    else files.push({ name: nameOf(f.name), content });
  }
  files.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  return { files, skipped: skipped.sort() };
}

/** The dirtree at `parts` below `tree`, or null when one of them is not a directory there. */
async function dirAt(repo: Repo, tree: ObjectId, parts: readonly string[]): Promise<ObjectId | null> {
  for (const part of parts) {
    const dir = (await repo.readDirTree(tree)).dirs.find((d) => nameOf(d.name) === part);
    if (!dir) return null;
    tree = dir.tree;
  }
  return tree;
}

/** A file object's content when it is a regular file, else null. */
async function regularContent(repo: Repo, id: ObjectId): Promise<Buffer | null> {
  const stored = await repo.readFile(id);
  if (stored.header.type !== 'reg') return null;
  const chunks: Buffer[] = [];
  for await (const chunk of stored.content()) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

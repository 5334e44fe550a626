/**
 * A mutable in-memory tree built while importing a directory or a tar, then written
 * bottom-up as dirtree and dirmeta objects. Names are raw bytes (Linux names need not be UTF-8).
 */
import { LarchError, quash } from '../errors.ts';
import { type DirMeta, type ObjectId, badNameReason, dirMetaProblem, encodeDirMeta, encodeDirTree } from './object.ts';
import type { Transaction } from './transaction.ts';
import { MAX_TREE_DEPTH } from './walk.ts';

export interface MDir {
  meta: DirMeta;
  /** size: the content length (0 for a symlink or FIFO), written in a format-2 dirtree. */
  files: Map<string, { name: Uint8Array; id: ObjectId; size: number }>;
  dirs: Map<string, { name: Uint8Array; dir: MDir }>;
}

const key = (name: Uint8Array) => Buffer.from(name).toString('latin1');

export function newDir(meta: DirMeta): MDir {
  return { meta, files: new Map(), dirs: new Map() };
}

function checkName(name: Uint8Array, where: string): void {
  const reason = badNameReason(name);
  if (reason) throw new LarchError('INVALID_INPUT', `${where}: ${reason}`, { data: { name: quash(Buffer.from(name).toString('latin1')) } });
}

export function addFile(dir: MDir, name: Uint8Array, id: ObjectId, size: number, where: string): void {
  checkName(name, where);
  dir.dirs.delete(key(name));
  dir.files.set(key(name), { name, id, size });
}

/** Returns the child directory, creating it with meta (or replacing a file of the same name). */
export function ensureDir(dir: MDir, name: Uint8Array, meta: DirMeta, where: string): MDir {
  checkName(name, where);
  const existing = dir.dirs.get(key(name));
  if (existing) return existing.dir;
  dir.files.delete(key(name));
  const child = newDir(meta);
  dir.dirs.set(key(name), { name, dir: child });
  return child;
}

/** Writes the tree bottom-up, in the repo's dirtree format; returns the root's dirtree and dirmeta ids. */
export async function writeMTree(txn: Transaction, dir: MDir, depth = 0, path = '/'): Promise<{ tree: ObjectId; meta: ObjectId }> {
  // Readers refuse trees deeper than this (walk.ts) and metadata they cannot decode; never write either.
  if (depth > MAX_TREE_DEPTH) throw new LarchError('INVALID_INPUT', `the tree is deeper than ${MAX_TREE_DEPTH} directory levels at '${quash(path, 200)}'`, { data: { path, max_depth: MAX_TREE_DEPTH } });
  const problem = dirMetaProblem(dir.meta);
  if (problem) throw new LarchError('INVALID_INPUT', `directory '${quash(path, 200)}': ${problem}`, { data: { path: quash(path, 200) } });
  const dirs = [];
  for (const { name, dir: child } of dir.dirs.values()) {
    const ids = await writeMTree(txn, child, depth + 1, `${path}${Buffer.from(name).toString('utf8')}/`);
    dirs.push({ name, tree: ids.tree, meta: ids.meta });
  }
  const sized = txn.repo.dirtreeFormat === 2;
  const files = [...dir.files.values()].map(({ name, id, size }) => (sized ? { name, file: id, size } : { name, file: id }));
  const tree = await txn.writeMetadata('dirtree', encodeDirTree({ files, dirs }));
  const meta = await txn.writeMetadata('dirmeta', encodeDirMeta(dir.meta));
  return { tree, meta };
}

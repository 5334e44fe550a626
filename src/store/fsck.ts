/**
 * Checks a repo: every ref names a commit; every object reachable from a ref or stored as a
 * commit is present, decodes, and hashes to its id; dirtree names are safe; a file's size in a
 * format-2 dirtree is its content length; signatures are
 * well-formed and valid for the keys they name. It reports every problem (not just the first),
 * naming the object and a path that uses it.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { LarchError } from '../errors.ts';
import { makePool } from '../_pool.ts';
import { sha256Stream } from '../_hash.ts';
import { type ObjectId, type ObjectKind, encodeFileHeader, validateDirTree } from './object.ts';
import type { Repo } from './repo.ts';
import { decodeSignatures, keyId, verifyCommitSignatures } from './sign.ts';
import { childPath, pathText } from './walk.ts';

export interface FsckProblem {
  kind: ObjectKind | 'ref' | 'sig';
  id: string;
  problem: string;
  /** A path in a commit that uses the object, when there is one. */
  path?: string;
  commit?: ObjectId;
  code: 'OBJECT_MISSING' | 'OBJECT_CORRUPT' | 'HOSTILE_TREE' | 'SIGNATURE_INVALID' | 'REPO_CORRUPT';
}

export interface FsckResult {
  commits: number;
  objects: number;
  problems: FsckProblem[];
}

export async function fsck(repo: Repo): Promise<FsckResult> {
  const problems: FsckProblem[] = [];
  const seen = new Set<string>();
  const pool = makePool(4);
  const fileChecks: Promise<void>[] = [];
  /** The content length of each file checked, null when the object is missing or corrupt. */
  const fileSizes = new Map<ObjectId, Promise<number | null>>();
  let objects = 0;

  const report = (p: FsckProblem) => problems.push(p);
  // Problems already name kind and id; messages from the readers start with them too.
  const describe = (err: unknown): { code: FsckProblem['code']; message: string } => {
    const message = String((err as Error).message).replace(/^(file|dirtree|dirmeta|commit) [0-9a-f]{64}(: | (?=is ))/, '');
    if (err instanceof LarchError && (err.code === 'OBJECT_MISSING' || err.code === 'OBJECT_CORRUPT')) return { code: err.code, message };
    return { code: 'OBJECT_CORRUPT', message };
  };

  /** Checks a file object; resolves to its content length, or null when it is missing or corrupt. */
  const checkFile = (id: ObjectId, path: string, commit: ObjectId) =>
    pool(async (): Promise<number | null> => {
      try {
        const stored = await repo.readFile(id);
        const h = stored.header;
        const hash = sha256Stream().update(encodeFileHeader(h));
        const size = h.type === 'reg' ? h.size : 0;
        let count = 0;
        await pipeline(
          stored.content(),
          new Transform({
            transform(chunk: Buffer, _e, cb) {
              count += chunk.length;
              // Stop at once when the content runs past its declared size: never read or hold more.
              if (count > size) return cb(new Error(`content is longer than its declared ${size} bytes`));
              hash.update(chunk);
              cb();
            },
          }),
          new Writable({ write: (_c, _e, cb) => cb() }),
        );
        if (count !== size) throw new Error(`declared size ${size} bytes, content is ${count} bytes`);
        const actual = hash.digest('hex');
        if (actual !== id) throw new Error(`checksum mismatch: expected ${id}, got ${actual}`);
        return count;
      } catch (err) {
        const d = describe(err);
        report({ kind: 'file', id, problem: d.message, path, commit, code: d.code });
        return null;
      }
    });

  const checkTree = async (tree: ObjectId, meta: ObjectId, path: Buffer, commit: ObjectId, depth: number): Promise<void> => {
    if (!seen.has(`dirmeta:${meta}`)) {
      seen.add(`dirmeta:${meta}`);
      objects++;
      await repo.readDirMeta(meta).catch((err) => {
        const d = describe(err);
        report({ kind: 'dirmeta', id: meta, problem: d.message, path: pathText(path), commit, code: d.code });
      });
    }
    if (seen.has(`dirtree:${tree}`)) return;
    seen.add(`dirtree:${tree}`);
    objects++;
    if (depth > 256) {
      report({ kind: 'dirtree', id: tree, problem: 'tree deeper than 256 levels', path: pathText(path), commit, code: 'HOSTILE_TREE' });
      return;
    }
    let dt;
    try {
      dt = await repo.readDirTree(tree);
    } catch (err) {
      const d = describe(err);
      report({ kind: 'dirtree', id: tree, problem: d.message, path: pathText(path), commit, code: d.code });
      return;
    }
    for (const p of validateDirTree(dt)) {
      report({ kind: 'dirtree', id: tree, problem: `unsafe entry: ${p.problem}`, path: pathText(childPath(path, p.name)), commit, code: 'HOSTILE_TREE' });
    }
    for (const f of dt.files) {
      if (!seen.has(`file:${f.file}`)) {
        seen.add(`file:${f.file}`);
        objects++;
        fileSizes.set(f.file, checkFile(f.file, pathText(childPath(path, f.name)), commit));
      }
      if (f.size === undefined) continue;
      // The signed size is what a device's pull stops at: a tree listing another length is corrupt.
      const { file, size } = f;
      const at = pathText(childPath(path, f.name));
      fileChecks.push(
        fileSizes.get(file)!.then((actual) => {
          if (actual !== null && actual !== size) report({ kind: 'dirtree', id: tree, problem: `lists file ${file} with size ${size} bytes, its content is ${actual} bytes`, path: at, commit, code: 'OBJECT_CORRUPT' });
        }),
      );
    }
    for (const d of dt.dirs) await checkTree(d.tree, d.meta, childPath(path, d.name), commit, depth + 1);
  };

  const checkCommit = async (id: ObjectId, via: string): Promise<void> => {
    if (seen.has(`commit:${id}`)) return;
    seen.add(`commit:${id}`);
    objects++;
    let commit;
    try {
      commit = await repo.readCommit(id);
    } catch (err) {
      const d = describe(err);
      report({ kind: 'commit', id, problem: `${d.message} (${via})`, code: d.code });
      return;
    }
    const sigBytes = await repo.readSignatures(id);
    if (sigBytes) {
      const sigs = decodeSignatures(sigBytes);
      if (!sigs) report({ kind: 'sig', id, problem: 'signature file is malformed', commit: id, code: 'SIGNATURE_INVALID' });
      else {
        for (const s of sigs) {
          if (!(await verifyCommitSignatures(id, [s], [s.key]))) {
            report({ kind: 'sig', id, problem: `signature by key ${keyId(s.key)} does not match the commit`, commit: id, code: 'SIGNATURE_INVALID' });
          }
        }
      }
    }
    await checkTree(commit.root.tree, commit.root.meta, Buffer.alloc(0), id, 0);
    // History that was pruned (--keep) is absent on purpose: a missing parent is not a problem.
    if (commit.parent && (await repo.hasObject('commit', commit.parent))) await checkCommit(commit.parent, `parent of ${id}`);
  };

  const refsDir = join(repo.path, 'refs', 'heads');
  const refNames: string[] = [];
  const listRefs = async (dir: string, prefix: string) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const name = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) await listRefs(join(dir, e.name), name);
      else if (!e.name.startsWith('.tmp-')) refNames.push(name);
    }
  };
  await listRefs(refsDir, '');
  for (const name of refNames.sort()) {
    let id: ObjectId | null = null;
    try {
      id = await repo.readRef(name);
    } catch {
      report({ kind: 'ref', id: name, problem: 'ref file does not hold a commit id', code: 'REPO_CORRUPT' });
      continue;
    }
    if (!id) continue;
    if (!(await repo.hasObject('commit', id))) {
      report({ kind: 'ref', id: name, problem: `ref names commit ${id}, which is missing`, commit: id, code: 'OBJECT_MISSING' });
      continue;
    }
    await checkCommit(id, `ref ${name}`);
  }
  // Commits no ref reaches (kept by pull-local, or left by a partial prune) are checked too.
  for (let i = 0; i < 256; i++) {
    const sub = i.toString(16).padStart(2, '0');
    for (const n of await readdir(join(repo.path, 'objects', sub)).catch(() => [])) {
      if (n.endsWith('.commit')) await checkCommit(sub + n.slice(0, 62), 'stored commit');
    }
  }
  await Promise.all(fileChecks);
  const commits = [...seen].filter((k) => k.startsWith('commit:')).length;
  return { commits, objects, problems };
}

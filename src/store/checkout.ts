/**
 * Checks a commit out into a new directory: hardlinks from a bare repo (the objects carry
 * their real metadata), copies otherwise. The whole tree's metadata is read and validated
 * first, so a hostile commit is refused before anything is written; every entry is created
 * exactly once, in directories this code just made, so nothing is ever written through a symlink.
 */
import { chmod, chown, lchown, link, lstat, mkdir, readdir, rm, symlink } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LarchError, fromSystemError } from '../errors.ts';
import { makePool } from '../_pool.ts';
import { sha256Stream } from '../_hash.ts';
import { createExclusiveWriteStream } from './_fs.ts';
import { join } from 'node:path';
import { type FileHeader, type ObjectId, encodeFileHeader } from './object.ts';
import type { Repo } from './repo.ts';
import { makeFifo } from './transaction.ts';
import { type TreePlan, childPath, pathText, readTreePlan } from './walk.ts';
import { writeXattrs } from './xattrs.ts';

export interface CheckoutOptions {
  /** Copy even from a bare repo (a checkout that may be edited without touching the objects). */
  copy?: boolean;
  /** Keep owners as they are in the commit (default: when running as root). */
  owners?: boolean;
  /**
   * Hash every object before it is hardlinked (copies are always checked): a deployment must not
   * take a flipped bit from the repo. Corrupt objects are all named in one OBJECT_CORRUPT
   * (data.ids), so the caller can fetch them again at once.
   */
  verify?: boolean;
}

export interface CheckoutResult {
  commit: ObjectId;
  dest: string;
  files: number;
  dirs: number;
  hardlinked: number;
  copied: number;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** @throws NOT_FOUND, EXISTS, HOSTILE_TREE, OBJECT_MISSING, OBJECT_CORRUPT, NO_SPACE */
export async function checkout(repo: Repo, commitId: ObjectId, dest: string, opts: CheckoutOptions = {}): Promise<CheckoutResult> {
  const commit = await repo.readCommit(commitId);
  const plan = await readTreePlan(repo, commit.root);
  const entries = await readdir(dest).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', dest))));
  if (entries !== null && entries.length > 0) throw new LarchError('EXISTS', `checkout destination '${dest}' exists and is not empty`, { data: { dest } });
  const owners = opts.owners ?? isRoot();
  const result: CheckoutResult = { commit: commitId, dest, files: plan.files.length, dirs: plan.dirs.length, hardlinked: 0, copied: 0 };
  try {
    await writeTree(repo, plan, Buffer.from(dest), { copy: opts.copy ?? repo.mode === 'archive', owners, verify: opts.verify === true }, result);
  } catch (err) {
    // Leave nothing half-written behind: a partial checkout would look like a good one. DEST
    // was empty (or absent) before, so everything in it is ours.
    if (entries === null) await rm(dest, { recursive: true, force: true }).catch(() => {});
    else for (const e of await readdir(dest).catch(() => [])) await rm(join(dest, e), { recursive: true, force: true }).catch(() => {});
    throw fromSystemError(err, 'checkout to', dest);
  }
  return result;
}

async function writeTree(repo: Repo, plan: TreePlan, dest: Buffer, opts: { copy: boolean; owners: boolean; verify: boolean }, result: CheckoutResult): Promise<void> {
  const abs = (p: Buffer) => childPath(dest, p);
  // Directories start private and writable; their real mode is set last, deepest first.
  for (const d of plan.dirs) await mkdir(d.path.length === 0 ? dest : abs(d.path), { mode: 0o700 }).catch((err) => (d.path.length === 0 && err.code === 'EEXIST' ? undefined : Promise.reject(err)));
  const xattrJobs: { path: Buffer; xattrs: FileHeader['xattrs'] }[] = [];
  const pool = makePool(8);
  let canLink = !opts.copy;
  const corrupt = new Map<ObjectId, string>();
  await Promise.all(
    plan.files.map((f) =>
      pool(async () => {
        const target = abs(f.path);
        const stored = await repo.readFile(f.id);
        const h = stored.header;
        // A format-2 tree signs each file's length; a stored object of another length is not that file.
        const length = h.type === 'reg' ? h.size : 0;
        if (f.size !== undefined && f.size !== length) {
          throw new LarchError('OBJECT_CORRUPT', `file ${f.id} at '${pathText(f.path)}' is ${length} bytes, its tree says ${f.size}`, {
            hint: "fetch the commit again (larch upgrade or deploy does it by itself); 'larch fsck' lists every damaged object",
            data: { kind: 'file', id: f.id, path: pathText(f.path), size: length, expected_size: f.size },
          });
        }
        if (canLink && (await linkable(repo, f.id, h, opts.owners))) {
          if (opts.verify && (await storedId(h, stored.content())) !== f.id) return void corrupt.set(f.id, pathText(f.path));
          try {
            await link(repo.objectPath('file', f.id), target);
            result.hardlinked++;
            return;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
            canLink = false; // another filesystem: copy from now on
          }
        }
        await copyObject(f.id, stored.header, stored.content(), target, f.path);
        if (opts.owners) await (h.type === 'lnk' ? lchown : chown)(target, h.uid, h.gid);
        if (h.type !== 'lnk') await chmod(target, h.mode);
        const xattrs = settableXattrs(h.xattrs, opts.owners);
        if (xattrs.length > 0) xattrJobs.push({ path: target, xattrs });
        result.copied++;
      }),
    ),
  );
  if (corrupt.size > 0) {
    const [[id, path]] = [...corrupt];
    throw new LarchError('OBJECT_CORRUPT', `${corrupt.size} stored file object(s) do not match their ids, e.g. ${id} at '${path}' (a flipped bit on disk, or a deployed file edited in place)`, {
      hint: "fetch the commit again (larch upgrade or deploy does it by itself); 'larch fsck' lists every damaged object",
      data: { kind: 'file', id, ids: [...corrupt.keys()], path },
    });
  }
  for (const d of [...plan.dirs].reverse()) {
    const p = d.path.length === 0 ? dest : abs(d.path);
    if (opts.owners) await chown(p, d.meta.uid, d.meta.gid);
    await chmod(p, d.meta.mode);
    const xattrs = settableXattrs(d.meta.xattrs, opts.owners);
    if (xattrs.length > 0) xattrJobs.push({ path: p, xattrs });
  }
  await writeXattrs(xattrJobs);
}

/** Without owners (an unprivileged checkout) only user.* xattrs can be set; the rest need root. */
function settableXattrs(xattrs: FileHeader['xattrs'], owners: boolean): FileHeader['xattrs'] {
  return owners ? xattrs : xattrs.filter(([name]) => Buffer.from(name).toString('latin1').startsWith('user.'));
}

/** A hardlink is faithful when the object on disk already has the owner and xattrs the header names. */
async function linkable(repo: Repo, id: ObjectId, h: FileHeader, owners: boolean): Promise<boolean> {
  if (repo.mode === 'archive') return false;
  if (repo.mode === 'bare') return true;
  // bare-user: the object file carries the content and, when it can, the mode; owners and
  // xattrs may live only in its sidecar, and then only a copy reproduces them.
  if (h.xattrs.length > 0) return false;
  const st = await lstat(repo.objectPath('file', id));
  if (h.type !== 'lnk' && (st.mode & 0o7777) !== h.mode) return false;
  return !owners || (st.uid === h.uid && st.gid === h.gid);
}

/** The id of a stored object as its header and content hash now (the content is read whole). */
async function storedId(h: FileHeader, content: AsyncIterable<Uint8Array>): Promise<string> {
  const hash = sha256Stream().update(encodeFileHeader(h));
  let count = 0;
  for await (const chunk of content) {
    count += chunk.length;
    if (h.type === 'reg' && count > h.size) return 'longer than its header says';
    hash.update(chunk);
  }
  return hash.digest('hex');
}

/** Writes an object's content to a new file, checking it against its id on the way. */
async function copyObject(id: ObjectId, h: FileHeader, content: AsyncIterable<Uint8Array>, target: Buffer, path: Buffer): Promise<void> {
  if (h.type === 'lnk') return void (await symlink(Buffer.from(h.target), target));
  if (h.type === 'fifo') return makeFifo(target.toString(), h.mode);
  const hash = sha256Stream().update(encodeFileHeader(h));
  let count = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      count += chunk.length;
      if (count > h.size) return cb(new LarchError('OBJECT_CORRUPT', `file ${id} at '${pathText(path)}' has more content than its declared ${h.size} bytes`, { data: { id, path: pathText(path) } }));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(content, tap, await createExclusiveWriteStream(target));
  } catch (err) {
    await rm(target, { force: true });
    throw err;
  }
  const actual = hash.digest('hex');
  if (count !== h.size || actual !== id) {
    await rm(target, { force: true });
    throw new LarchError('OBJECT_CORRUPT', `file ${id} at '${pathText(path)}': checksum mismatch: expected ${id}, got ${actual} (${count} of ${h.size} bytes)`, { data: { kind: 'file', id, path: pathText(path), actual } });
  }
}

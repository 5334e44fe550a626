/**
 * The resolved-tree cache: mmdebstrap's tar kept under CACHE/trees/KEY.tar, KEY the SHA-256 of
 * every input that decides it (tree-key.ts), so a compose whose mmdebstrap inputs are the same
 * takes the tar instead of running mmdebstrap again (~3.5 min for images/qemu-x86_64-grub.toml).
 *
 * Layout of CACHE/trees/ (docs/images.md, "The tree cache"):
 *   KEY.tar                  a finished tree, written as .tmp-KEY-… then renamed (a reader never
 *                            sees a half-written tar); its mtime is when it was last used
 *   KEY.lock                 flock(2) lock of that key (store/lock.ts): one build per key at a time
 *   .tmp-KEY-PID-RAND.tar    a build under way (or left by a killed one: removed by the next
 *                            build of KEY, or by eviction when nobody holds KEY's lock)
 * The TREE_CACHE_KEEP most recently used trees are kept; older ones are removed after a build.
 */
import { createReadStream } from 'node:fs';
import { constants, copyFile, link, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { sha256Stream } from '../_hash.ts';
import { fsyncPath } from '../_durable.ts';
import { LarchError, fromSystemError } from '../errors.ts';
import { type Lock, acquireLock } from '../store/lock.ts';
import type { HashedFile } from './tree-key.ts';

/** hit: the cached tar was used; miss: built and stored; off: built and stored, the cache not read (--no-tree-cache). */
export type TreeCacheUse = 'hit' | 'miss' | 'off';

/** Trees kept (the most recently used): one per board's definition and a spare, a few hundred MB each. */
export const TREE_CACHE_KEEP = 4;

/** A build of the same key by another compose is waited for this long (a cold build takes minutes). */
const LOCK_WAIT_MS = 60 * 60_000;

/** The SHA-256 (hex) of a file's content, streamed. @throws IO, NOT_FOUND */
export async function hashFile(path: string): Promise<string> {
  const hash = sha256Stream();
  await pipeline(createReadStream(path), hash).catch((err) => {
    throw fromSystemError(err, 'read', path);
  });
  return hash.digest('hex');
}

/**
 * Every regular file under dir (recursively) with its content hash, paths relative to dir,
 * sorted; `skip` names entries (relative paths) left out. A missing dir gives [].
 */
export async function hashDirectory(dir: string, skip: ReadonlySet<string> = new Set()): Promise<HashedFile[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw fromSystemError(err, 'list', dir);
  });
  const out: HashedFile[] = [];
  for (const e of entries) {
    if (!e.isFile()) continue;
    // parentPath (Node 20.12+, Bun); `path` before it.
    const parent = (e as { parentPath?: string }).parentPath ?? e.path;
    const rel = join(parent, e.name).slice(dir.length).replace(/^\/+/, '');
    if ([...skip].some((s) => rel === s || rel.startsWith(`${s}/`))) continue;
    out.push({ path: rel, sha256: await hashFile(join(dir, rel)) });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Puts the cached tar at `out`: a hard link (no copy; the caller only reads `out` and then
 * removes it, and a rebuild renames a new file over the entry, so the link never sees a change),
 * or a copy (reflink where the filesystem can) when `out` is on another filesystem. Marks the
 * entry used now. false when there is no entry.
 */
async function take(entry: string, out: string): Promise<boolean> {
  try {
    await link(entry, out);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK') throw fromSystemError(err, 'link the cached tree', entry);
    try {
      await copyFile(entry, out, constants.COPYFILE_FICLONE);
    } catch (copyErr) {
      if ((copyErr as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromSystemError(copyErr, 'copy the cached tree', entry);
    }
  }
  const now = new Date();
  // Most recently used first for eviction; a failed touch only makes it look older.
  await utimes(entry, now, now).catch(() => {});
  return true;
}

/** Runs fn holding `path`'s lock when it is free now; undefined when another process holds it. */
async function ifUnlocked(path: string, fn: () => Promise<void>): Promise<void> {
  const lock = await acquireLock(path, 0).catch((err) => {
    if (err instanceof LarchError && err.code === 'LOCKED') return undefined;
    throw err;
  });
  if (!lock) return;
  try {
    await fn();
  } finally {
    await lock.release();
  }
}

/**
 * Keeps the `keep` most recently used trees: removes the older ones and builds left by killed
 * composes, each only when its key's lock is free (a compose building or reading that key
 * holds it). Removing a lock file another process is about to open costs at worst a second
 * build of that key, never a half-read tar (the tar is only ever renamed into place).
 */
export async function evictTrees(dir: string, keep = TREE_CACHE_KEEP): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const trees = await Promise.all(
    names
      .filter((n) => /^[0-9a-f]{64}\.tar$/.test(n))
      .map(async (n) => ({ key: n.slice(0, 64), mtimeMs: (await stat(join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })),
  );
  trees.sort((a, b) => b.mtimeMs - a.mtimeMs);
  const evicted: string[] = [];
  for (const { key } of trees.slice(keep)) {
    await ifUnlocked(join(dir, `${key}.lock`), async () => {
      await rm(join(dir, `${key}.tar`), { force: true });
      await rm(join(dir, `${key}.lock`), { force: true });
      evicted.push(key);
    });
  }
  const leftovers = new Set(names.map((n) => /^\.tmp-([0-9a-f]{64})-/.exec(n)?.[1]).filter((k): k is string => k !== undefined));
  for (const key of leftovers) await ifUnlocked(join(dir, `${key}.lock`), () => removeLeftovers(dir, key));
  return evicted;
}

/** Removes the partial builds of key (call holding its lock: none is under way). */
async function removeLeftovers(dir: string, key: string): Promise<void> {
  for (const n of await readdir(dir).catch(() => [] as string[])) if (n.startsWith(`.tmp-${key}-`)) await rm(join(dir, n), { force: true });
}

export interface CachedTreeOptions {
  /** The compose cache directory; trees live in its `trees/`. */
  cacheDir: string;
  /** treeCacheKey of the build's inputs. */
  key: string;
  /** Where the tree goes (read, then removed, by the caller). */
  out: string;
  /** Do not read the cache: build, and replace the entry (--no-tree-cache). */
  refresh: boolean;
  /** Builds the tree as a tar at the path given. */
  build: (to: string) => Promise<void>;
  /** Called when another compose holds the key's lock (building it), before waiting for it. */
  onWait?: () => void;
}

/** The key's lock: at once when free, else after onWait, waiting up to LOCK_WAIT_MS. */
async function lockKey(path: string, onWait?: () => void): Promise<Lock> {
  try {
    return await acquireLock(path, 0);
  } catch (err) {
    if (!(err instanceof LarchError && err.code === 'LOCKED')) throw err;
  }
  onWait?.();
  return acquireLock(path, LOCK_WAIT_MS);
}

/**
 * The tree for `key` at `out`: the cached tar when there is one, else built by `build` and stored
 * for the next compose. One build per key at a time: a compose that finds another building the
 * same key waits for it and takes its tar.
 * @throws whatever build throws; LOCKED (another build of the key took over an hour), IO
 */
export async function cachedTree(opts: CachedTreeOptions): Promise<TreeCacheUse> {
  const dir = join(opts.cacheDir, 'trees');
  await mkdir(dir, { recursive: true }).catch((err) => {
    throw fromSystemError(err, 'create cache directory', dir);
  });
  const entry = join(dir, `${opts.key}.tar`);
  if (!opts.refresh && (await take(entry, opts.out))) return 'hit';
  const lock = await lockKey(join(dir, `${opts.key}.lock`), opts.onWait);
  try {
    // Another compose may have built it while this one waited for the lock.
    if (!opts.refresh && (await take(entry, opts.out))) return 'hit';
    await removeLeftovers(dir, opts.key);
    const tmp = join(dir, `.tmp-${opts.key}-${process.pid}-${randomBytes(4).toString('hex')}.tar`);
    try {
      await opts.build(tmp);
      // Durable before it is renamed into place: after a power cut the entry is whole or absent.
      await fsyncPath(tmp);
      await rename(tmp, entry);
      await fsyncPath(dir);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    // Still under the lock, so no eviction removes it first.
    if (!(await take(entry, opts.out))) throw new LarchError('IO', `the tree just stored at '${entry}' is gone`, { data: { path: entry } });
  } finally {
    await lock.release();
  }
  await evictTrees(dir);
  return opts.refresh ? 'off' : 'miss';
}

/**
 * The /etc merge on disk: read directories into `EtcTree`s, write a merge plan's result into a
 * fresh directory (the new deployment's etc/), and `mergeEtc`, which does both around `planEtcMerge`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, open, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError, quash } from '../../errors.ts';
import { syncFilesystem } from '../../_durable.ts';
import type { Xattrs } from '../../store/object.ts';
import { readTreeXattrs, writeXattrs } from '../../store/xattrs.ts';
import { type EtcEntry, type EtcMergeJson, type EtcMergePlan, type EtcTree, planEtcMerge, planToJson } from './plan.ts';

/** Files up to this size are read into memory (and can be merged by line); larger ones are hashed. */
export const MAX_FILE_BYTES_IN_MEMORY = 16 * 1024 * 1024;
/** Once a tree's files in memory reach this total, further files are hashed instead: memory stays bounded. */
export const MAX_TREE_BYTES_IN_MEMORY = 64 * 1024 * 1024;
const MAX_DEPTH = 64;

export interface SkippedEntry {
  path: string;
  reason: 'device' | 'socket' | 'fifo' | 'name-not-utf8' | 'target-not-utf8' | 'too-deep';
}

export interface ReadEtcTreeOptions {
  maxFileBytesInMemory?: number;
  maxTreeBytesInMemory?: number;
  /** Read extended attributes too (needs getfattr). */
  xattrs?: boolean;
  /** An absent directory reads as an empty tree (a commit with no /etc) instead of NOT_FOUND. */
  allowMissing?: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const decodeName = (bytes: Uint8Array): string | null => {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
};

/**
 * Reads a directory into an EtcTree, its root under ''. Device nodes, sockets and FIFOs have no
 * place in a config tree (and cannot be in a commit), and names that are not UTF-8 cannot be
 * planned as text: they are skipped and listed, not fatal, so a stray FIFO never blocks an upgrade.
 *
 * @throws NOT_FOUND (no such directory), INVALID_INPUT (not a directory), IO
 */
export async function readEtcTree(dir: string, opts: ReadEtcTreeOptions = {}): Promise<{ tree: Map<string, EtcEntry>; skipped: SkippedEntry[] }> {
  const maxFile = opts.maxFileBytesInMemory ?? MAX_FILE_BYTES_IN_MEMORY;
  let budget = opts.maxTreeBytesInMemory ?? MAX_TREE_BYTES_IN_MEMORY;
  const tree = new Map<string, EtcEntry>();
  const skipped: SkippedEntry[] = [];
  const rootStat = await lstat(dir).catch((err) => (err.code === 'ENOENT' && opts.allowMissing ? null : Promise.reject(fromSystemError(err, 'read', dir))));
  if (rootStat === null) return { tree, skipped };
  if (!rootStat.isDirectory()) throw new LarchError('INVALID_INPUT', `'${dir}' is not a directory`, { data: { path: dir } });
  const xattrsByPath = opts.xattrs ? await readTreeXattrs(dir) : null;
  const xattrsOf = (abs: string): Xattrs | undefined => {
    const x = xattrsByPath?.get(Buffer.from(abs).toString('latin1'));
    return x && x.length > 0 ? x : undefined;
  };

  const walk = async (rel: string, depth: number): Promise<void> => {
    const abs = rel === '' ? dir : join(dir, rel);
    try {
      const st = await lstat(abs);
      const owner = { uid: st.uid, gid: st.gid, ...(xattrsOf(abs) ? { xattrs: xattrsOf(abs) } : {}) };
      if (st.isDirectory()) {
        tree.set(rel, { type: 'dir', mode: st.mode & 0o7777, ...owner });
        if (depth >= MAX_DEPTH) return void skipped.push({ path: rel, reason: 'too-deep' });
        const names = (await readdir(abs, { encoding: 'buffer' })) as Buffer[];
        for (const raw of names) {
          const name = decodeName(raw);
          if (name === null) {
            skipped.push({ path: `${rel === '' ? '' : rel + '/'}${quash(raw.toString('latin1'))}`, reason: 'name-not-utf8' });
            continue;
          }
          await walk(rel === '' ? name : `${rel}/${name}`, depth + 1);
        }
      } else if (st.isSymbolicLink()) {
        const target = decodeName(await readlink(abs, { encoding: 'buffer' }));
        if (target === null) skipped.push({ path: rel, reason: 'target-not-utf8' });
        else tree.set(rel, { type: 'symlink', target, ...owner });
      } else if (st.isFile()) {
        const inMemory = st.size <= maxFile && st.size <= budget;
        const read = await readRegularFile(abs, inMemory);
        if (read.content) budget -= read.content.length;
        tree.set(rel, { type: 'file', mode: read.mode & 0o7777, ...owner, ...(read.content ? { content: read.content } : { large: read.large! }) });
      } else {
        skipped.push({ path: rel, reason: st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'device' });
      }
    } catch (err) {
      throw fromSystemError(err, 'read', abs);
    }
  };
  await walk('', 0);
  return { tree, skipped };
}

/**
 * Reads one regular file without following a symlink swapped in since lstat (O_NOFOLLOW), and
 * takes the mode from the open file, so content and mode belong together.
 */
async function readRegularFile(path: string, inMemory: boolean): Promise<{ mode: number; content?: Uint8Array; large?: { sizeBytes: number; sha256: string } }> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new LarchError('IO', `'${path}' changed while being read: no longer a regular file`, { data: { path } });
    if (inMemory) return { mode: st.mode, content: new Uint8Array(await fh.readFile()) };
    const hash = createHash('sha256');
    const buf = Buffer.alloc(1 << 20);
    let sizeBytes = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      sizeBytes += bytesRead;
    }
    return { mode: st.mode, large: { sizeBytes, sha256: hash.digest('hex') } };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface WriteEtcOptions {
  /** Set owners (default: when running as root; otherwise owners that differ are listed instead). */
  owners?: boolean;
  /** Set extended attributes (needs setfattr; default: only if some entry carries xattrs and running as root). */
  xattrs?: boolean;
}

export interface WriteEtcResult {
  files: number;
  symlinks: number;
  dirs: number;
  larchnew: number;
  /** Owners the result asks for but that were not set (not root): the deployment record keeps them. */
  ownersNotApplied: { path: string; uid: number; gid: number }[];
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Writes the result of a plan into out, which must be absent or empty. Every file is a new copy
 * (never a hardlink: an admin's in-place edit must not reach the repo's objects), written to a
 * temp name with its mode and owner and renamed into place; directories get their real mode
 * last, so read-only ones can still be filled. Ends with a filesystem sync.
 * sources names the trees the plan was made from: large files are copied from there and checked
 * against the hash the plan saw.
 *
 * @throws EXISTS (out not empty), IO, NO_SPACE
 */
export async function writeEtcMerge(plan: EtcMergePlan, out: string, sources: { local: string; theirs: string }, opts: WriteEtcOptions = {}): Promise<WriteEtcResult> {
  const existing = await readdir(out).catch((err) => (err.code === 'ENOENT' ? null : Promise.reject(fromSystemError(err, 'read', out))));
  if (existing !== null && existing.length > 0) throw new LarchError('EXISTS', `/etc merge destination '${out}' exists and is not empty`, { data: { path: out } });
  try {
    return await writeInto(plan, out, sources, opts);
  } catch (err) {
    // out was absent or empty: everything in it is ours, and a half-merged /etc must not look whole.
    if (existing === null) await rm(out, { recursive: true, force: true }).catch(() => {});
    else for (const e of await readdir(out).catch(() => [])) await rm(join(out, e), { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

async function writeInto(plan: EtcMergePlan, out: string, sources: { local: string; theirs: string }, opts: WriteEtcOptions): Promise<WriteEtcResult> {
  const owners = opts.owners ?? isRoot();
  const result: WriteEtcResult = { files: 0, symlinks: 0, dirs: 0, larchnew: 0, ownersNotApplied: [] };
  const myUid = process.getuid?.() ?? -1;
  const myGid = process.getgid?.() ?? -1;
  const noteOwner = (path: string, e: EtcEntry) => {
    if (!owners && (e.uid !== myUid || e.gid !== myGid)) result.ownersNotApplied.push({ path, uid: e.uid, gid: e.gid });
  };

  // Directories first, private until the end (implied parents of hand-made plans get 0755).
  await mkdir(out, { recursive: true, mode: 0o700 }).catch((err) => Promise.reject(fromSystemError(err, 'create', out)));
  const dirs: { path: string; entry: EtcEntry }[] = [];
  const writes: { path: string; entry: EtcEntry; from: 'local' | 'theirs' | 'merged'; sourcePath: string; larchnew: boolean }[] = [];
  for (const a of plan.actions) {
    if (a.result?.type === 'dir') dirs.push({ path: a.path, entry: a.result });
    else if (a.result) writes.push({ path: a.path, entry: a.result, from: a.contentFrom ?? 'local', sourcePath: a.path, larchnew: false });
    if (a.larchnew) writes.push({ path: a.larchnew.path, entry: a.larchnew.entry, from: 'theirs', sourcePath: a.path, larchnew: true });
  }
  for (const d of dirs) {
    if (d.path === '') continue;
    await mkdir(join(out, d.path), { recursive: true, mode: 0o700 }).catch((err) => Promise.reject(fromSystemError(err, 'create', join(out, d.path))));
  }

  for (const w of writes) {
    const target = join(out, w.path);
    try {
      await mkdir(join(target, '..'), { recursive: true, mode: 0o755 });
      // The vendor copy is read from theirs; a large result is read from the tree the plan took it from.
      const sourceDir = w.from === 'local' ? sources.local : sources.theirs;
      await writeEntryAtomic(target, w.entry, owners, join(sourceDir, w.sourcePath));
    } catch (err) {
      throw fromSystemError(err, 'write', target);
    }
    noteOwner(w.path, w.entry);
    if (w.larchnew) result.larchnew++;
    else if (w.entry.type === 'file') result.files++;
    else result.symlinks++;
  }

  // Real directory modes last, deepest first, so a 0555 directory was still writable while filled.
  for (const d of [...dirs].reverse()) {
    const path = d.path === '' ? out : join(out, d.path);
    try {
      if (owners) await chown(path, d.entry.uid, d.entry.gid);
      if (d.entry.type === 'dir') await chmod(path, d.entry.mode);
    } catch (err) {
      throw fromSystemError(err, 'set mode of', path);
    }
    noteOwner(d.path, d.entry);
    if (d.path !== '') result.dirs++;
  }

  const withXattrs = [...dirs, ...writes].filter((w) => w.entry.xattrs && w.entry.xattrs.length > 0);
  if (withXattrs.length > 0 && (opts.xattrs ?? isRoot())) {
    await writeXattrs(withXattrs.map((w) => ({ path: Buffer.from(w.path === '' ? out : join(out, w.path)), xattrs: w.entry.xattrs! })));
  }
  await syncFilesystem(out, [...writes.map((w) => join(w.path, '..')), ...dirs.map((d) => d.path)].map((p) => join(out, p)));
  return result;
}

/** Writes one file or symlink under a temp name beside target, then renames it into place. */
async function writeEntryAtomic(target: string, entry: EtcEntry, owners: boolean, sourcePath: string): Promise<void> {
  const tmp = join(target, '..', `.larch-tmp-${randomBytes(6).toString('hex')}`);
  try {
    if (entry.type === 'symlink') {
      await symlink(entry.target, tmp);
      if (owners) await lchown(tmp, entry.uid, entry.gid);
    } else if (entry.type === 'file') {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        if (entry.content) await fh.writeFile(entry.content);
        else await copyVerified(sourcePath, fh, entry.large!);
        // chown before chmod: chown clears setuid/setgid bits.
        if (owners) await fh.chown(entry.uid, entry.gid);
        await fh.chmod(entry.mode);
      } finally {
        await fh.close();
      }
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Copies a large file the plan only saw as a hash; a different hash means it changed meanwhile. */
async function copyVerified(sourcePath: string, dest: import('node:fs/promises').FileHandle, expected: { sizeBytes: number; sha256: string }): Promise<void> {
  const src = await open(sourcePath, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const hash = createHash('sha256');
    const buf = Buffer.alloc(1 << 20);
    for (;;) {
      const { bytesRead } = await src.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      await dest.write(buf, 0, bytesRead);
    }
    const got = hash.digest('hex');
    if (got !== expected.sha256) {
      throw new LarchError('IO', `'${sourcePath}' changed during the /etc merge: expected sha256 ${expected.sha256.slice(0, 12)}…, got ${got.slice(0, 12)}…`, {
        hint: 'run the upgrade again; nothing was switched',
        data: { path: sourcePath },
      });
    }
  } finally {
    await src.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The whole merge

export interface MergeEtcOptions {
  /** The old vendor default /etc (a checkout of the booted commit's /etc). */
  base: string;
  /** The booted deployment's /etc, with the admin's changes. */
  local: string;
  /** The new vendor default /etc (a checkout of the new commit's /etc). */
  theirs: string;
  /** Where the merged /etc goes: absent or empty. Ignored with dryRun. */
  out: string;
  dryRun?: boolean;
  owners?: boolean;
  xattrs?: boolean;
  maxFileBytesInMemory?: number;
  /** base or theirs may be absent (a commit with no /etc): read as empty trees. local must exist. */
  allowMissingVendor?: boolean;
}

export interface MergeResult {
  plan: EtcMergePlan;
  skipped: { base: SkippedEntry[]; local: SkippedEntry[]; theirs: SkippedEntry[] };
  /** Null for a dry run. */
  written: WriteEtcResult | null;
}

/** The JSON of a merge for `upgrade --dry-run --json`, `status --json` and the deployment record. */
export interface MergeResultJson extends EtcMergeJson {
  skipped: MergeResult['skipped'];
  owners_not_applied: WriteEtcResult['ownersNotApplied'];
}

/**
 * Reads the three trees, plans the merge and (unless dryRun) writes the result into out.
 *
 * @throws NOT_FOUND, INVALID_INPUT, EXISTS, IO, NO_SPACE, TOOL_MISSING (xattrs without getfattr)
 * @example
 * const r = await mergeEtc({ base: 'old/etc', local: '/etc', theirs: 'new/etc', out: 'deploy/B/etc' });
 * process.stdout.write(formatPlan(r.plan, { prefix: '/etc/' }));
 */
export async function mergeEtc(opts: MergeEtcOptions): Promise<MergeResult> {
  const readOpts = { xattrs: opts.xattrs, maxFileBytesInMemory: opts.maxFileBytesInMemory };
  const vendorOpts = { ...readOpts, allowMissing: opts.allowMissingVendor };
  const [base, local, theirs] = await Promise.all([readEtcTree(opts.base, vendorOpts), readEtcTree(opts.local, readOpts), readEtcTree(opts.theirs, vendorOpts)]);
  const plan = planEtcMerge(base.tree, local.tree, theirs.tree);
  const skipped = { base: base.skipped, local: local.skipped, theirs: theirs.skipped };
  if (opts.dryRun) return { plan, skipped, written: null };
  const written = await writeEtcMerge(plan, opts.out, { local: opts.local, theirs: opts.theirs }, { owners: opts.owners, xattrs: opts.xattrs });
  return { plan, skipped, written };
}

export function mergeResultToJson(r: MergeResult, opts: { includeUnchanged?: boolean } = {}): MergeResultJson {
  return { ...planToJson(r.plan, opts), skipped: r.skipped, owners_not_applied: r.written?.ownersNotApplied ?? [] };
}

export type { EtcTree };

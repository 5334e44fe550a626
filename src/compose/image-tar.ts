/**
 * Writes the image tree as one tar: the packages' data (`dpkg-deb --fsys-tarfile`, streamed),
 * laid out the larch way (layout.ts), then the overlays, the merged-/usr symlinks and the
 * exposed boot files. Owners and modes come from the packages' tar headers, so no root is
 * needed; times are all 0 (larch records none). The store's tar importer commits the result.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import * as tar from 'tar-stream';

/** The fields larch writes; times are always 0 and names are numeric ids only. */
type EntryHeader = { name: string; type: tar.Header['type']; mode: number; uid: number; gid: number; size?: number; linkname?: string };
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { spawnFailure } from '../_run.ts';
import type { FetchedPackage } from './apt.ts';
import { DPKG_STATUS_PATH } from '../packages/dpkg-status.ts';
import { ADMINDIR_CONFIG, MERGED_USR_DIRS, ancestors, bootDestination, imagePath, matchGlob, normalizeMemberName, treeMemberPath } from './layout.ts';

/** What a resolved tree's kernel files are recorded under in `kernelReleases` (no package is known per file). */
export const TREE_SOURCE = 'tree';

export interface ImageTarInput {
  /** In the order their data is laid down (sorted by name, so the result is reproducible). */
  packages: FetchedPackage[];
  /**
   * A resolved tree (mmdebstrap's tar) laid down before the packages, with its dpkg database
   * moved under /usr and the build's own state left out (layout.ts treeMemberPath).
   */
  tree?: string;
  /** Absolute, checked source paths; targets are normalized image paths ('' = root). */
  overlays: { source: string; target: string; field: string }[];
  /** Glob patterns over image paths (definition `boot.files`). */
  bootFiles: string[];
  out: string;
}

export interface ImageTarResult {
  entries: number;
  /** Regular files under /boot once done (image paths), sorted. */
  bootFiles: string[];
  /** The kernel releases (from /boot/vmlinuz-RELEASE) each package ships. */
  kernelReleases: Map<string, string[]>;
  /**
   * The newest modification time (seconds) of any member of the packages' data: the date of
   * the newest package build (Debian sets it from the changelog, SOURCE_DATE_EPOCH), the
   * same for the same package versions on any machine. 0 when the packages carry no times.
   */
  newestPackageTime: number;
  /** The resolved tree's dpkg status file (its text), when `tree` was given. */
  dpkgStatus?: string;
}

type EntryType = 'directory' | 'file' | 'symlink' | 'link' | 'fifo';
interface Placed {
  type: EntryType;
  /** A package name, or 'overlay'. */
  from: string;
}

/** Boot files are buffered to be written again under /boot; a kernel plus device trees is far below this. */
const MAX_BOOT_COPY_BYTES = 256 * 1024 * 1024;

class ImageTarWriter {
  readonly placed = new Map<string, Placed>();
  readonly pack = tar.pack();
  readonly bootCopies: { path: string; header: EntryHeader; content: Buffer }[] = [];
  bootCopyBytes = 0;
  readonly kernelReleases = new Map<string, string[]>();
  newestPackageTime = 0;

  constructor(readonly bootPatterns: string[]) {}

  /** Refuses a path whose parent is a file or symlink already placed (writing through it would leave the tree or lose it). */
  checkAncestors(path: string, what: string): void {
    for (const dir of ancestors(path)) {
      const p = this.placed.get(dir);
      if (p && p.type !== 'directory') {
        throw new LarchError('INVALID_INPUT', `${what}: '/${quash(path, 200)}' lies under '/${quash(dir, 200)}', which ${p.from === 'overlay' ? 'an overlay' : `package ${p.from}`} places as a ${p.type}, not a directory`, {
          data: { path: `/${path}`, through: `/${dir}`, by: p.from },
        });
      }
      if (!p) this.placed.set(dir, { type: 'directory', from: 'implicit' });
    }
  }

  async add(header: EntryHeader, from: string, content?: Readable | Buffer): Promise<void> {
    const path = header.name;
    this.placed.set(path, { type: header.type as EntryType, from });
    if (header.type === 'file' && path.startsWith('boot/vmlinuz-')) {
      const list = this.kernelReleases.get(from) ?? [];
      list.push(path.slice('boot/vmlinuz-'.length));
      this.kernelReleases.set(from, list);
    }
    const copy = header.type === 'file' && !path.startsWith('boot/') && this.bootPatterns.some((p) => matchGlob(p, path));
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const sink = this.pack.entry({ ...header, mtime: new Date(0) } as tar.Header, (err) => (err ? reject(err) : resolve()));
      if (content === undefined) return;
      if (Buffer.isBuffer(content)) {
        sink.end(content);
        return;
      }
      content.on('error', reject);
      if (copy) content.on('data', (d: Buffer) => chunks.push(d));
      content.pipe(sink as unknown as Writable);
    });
    if (copy) {
      const data = Buffer.concat(chunks);
      this.bootCopyBytes += data.length;
      if (this.bootCopyBytes > MAX_BOOT_COPY_BYTES) throw new LarchError('INVALID_INPUT', `boot.files match more than ${MAX_BOOT_COPY_BYTES >> 20} MiB of files (at '/${quash(path, 200)}')`, { data: { path: `/${path}` } });
      this.bootCopies.push({ path: bootDestination(path), header: { ...header }, content: data });
    }
  }
}

/** Streams one package's data archive into the image tar. */
async function addPackage(w: ImageTarWriter, pkg: FetchedPackage): Promise<void> {
  const what = `package ${pkg.name} ${pkg.version}`;
  const child = spawn('dpkg-deb', ['--fsys-tarfile', pkg.path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnFailure('dpkg-deb', e, { context: what })));
    child.on('close', (code) => resolve(code ?? -1));
  });
  const extract = tar.extract();
  child.stdout.pipe(extract);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const rel = normalizeMemberName(h.name);
      if (rel === undefined || h.name.includes('\uFFFD')) {
        entry.resume();
        throw new LarchError('INVALID_INPUT', `${what}: member '${quash(h.name, 200)}' has a '..' component or a name that is not UTF-8`, { data: { package: pkg.name, member: quash(h.name, 200) } });
      }
      if (rel === '') {
        entry.resume();
        continue;
      }
      if (h.mtime) w.newestPackageTime = Math.max(w.newestPackageTime, Math.floor(h.mtime.getTime() / 1000));
      const path = imagePath(rel);
      w.checkAncestors(path, what);
      const before = w.placed.get(path);
      if (h.type === 'directory') {
        entry.resume();
        if (before?.type === 'directory') continue;
      }
      if (before && before.from !== 'implicit') {
        entry.resume();
        throw new LarchError('INVALID_INPUT', `${what} and package ${before.from} both ship '/${quash(path, 200)}'`, {
          hint: 'list only one of the two packages (they conflict, or one replaces the other)',
          data: { path: `/${path}`, packages: [before.from, pkg.name] },
        });
      }
      const target = h.type === 'link' ? normalizeMemberName(h.linkname ?? '') : undefined;
      if (h.type === 'link' && !target) {
        entry.resume();
        throw new LarchError('INVALID_INPUT', `${what}: hard link '${quash(h.name, 200)}' names '${quash(h.linkname ?? '', 200)}'`, { data: { package: pkg.name } });
      }
      await addMember(w, h, entry as unknown as Readable, path, target && imagePath(target), pkg.name, what, { package: pkg.name });
    }
  } catch (err) {
    child.kill();
    await exited.catch(() => {});
    if (err instanceof LarchError) throw err;
    throw new LarchError('INVALID_INPUT', `${what}: '${pkg.path}' is not a readable .deb: ${quash((err as Error).message, 200)}${stderr ? ` (${quash(stderr.trim(), 200)})` : ''}`, { data: { package: pkg.name, path: pkg.path }, cause: err });
  }
  const code = await exited;
  if (code !== 0) throw new LarchError('INVALID_INPUT', `${what}: 'dpkg-deb --fsys-tarfile ${pkg.path}' failed: ${quash(stderr.trim(), 300)}`, { data: { package: pkg.name, path: pkg.path } });
}

/**
 * Places one tar member (a package's or the resolved tree's) at `path` by its type, from `from`;
 * a hard link goes to `linkTarget`, the image path its caller mapped it to.
 * @throws UNSUPPORTED_FILE_TYPE for devices and the like
 */
async function addMember(w: ImageTarWriter, h: tar.Header, entry: Readable, path: string, linkTarget: string | undefined, from: string, what: string, data: Record<string, unknown>): Promise<void> {
  const base = { name: path, mode: (h.mode ?? 0o644) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0 };
  if (h.type === 'file' || h.type === 'contiguous-file') return w.add({ ...base, type: 'file', size: h.size ?? 0 }, from, entry);
  entry.resume();
  if (h.type === 'directory') await w.add({ ...base, type: 'directory' }, from);
  else if (h.type === 'symlink') await w.add({ ...base, mode: 0o777, type: 'symlink', linkname: h.linkname ?? '' }, from);
  else if (h.type === 'link') await w.add({ ...base, type: 'link', linkname: linkTarget! }, from);
  else if (h.type === 'fifo') await w.add({ ...base, type: 'fifo' }, from);
  else throw new LarchError('UNSUPPORTED_FILE_TYPE', `${what}: '/${quash(path, 200)}' is a ${h.type}, which a larch tree cannot hold`, { data: { ...data, path: `/${path}` } });
}

/**
 * Lays down a resolved tree (already merged-/usr, owners and modes as dpkg and the maintainer
 * scripts left them). Returns the text of its dpkg status file.
 */
async function addTree(w: ImageTarWriter, tarPath: string): Promise<string> {
  const what = `the resolved tree ('${tarPath}')`;
  const extract = tar.extract();
  const input = createReadStream(tarPath);
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  let status: string | undefined;
  for await (const entry of extract) {
    const h = entry.header;
    const rel = normalizeMemberName(h.name);
    const path = rel === undefined || rel === '' ? null : treeMemberPath(rel);
    if (path === null) {
      entry.resume();
      continue;
    }
    w.checkAncestors(path, what);
    if (path === DPKG_STATUS_PATH && (h.type === 'file' || h.type === 'contiguous-file')) {
      // Kept as text too: the commit's package list is read from it.
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      const content = Buffer.concat(chunks);
      status = content.toString('utf8');
      await w.add({ name: path, mode: (h.mode ?? 0o644) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0, type: 'file', size: content.length }, TREE_SOURCE, content);
      continue;
    }
    const target = h.type === 'link' ? treeMemberPath(normalizeMemberName(h.linkname ?? '') ?? '') : undefined;
    if (h.type === 'link' && !target) {
      entry.resume();
      throw new LarchError('INVALID_INPUT', `${what}: hard link '${quash(h.name, 200)}' names '${quash(h.linkname ?? '', 200)}', which the commit leaves out`, { data: { path: `/${path}` } });
    }
    await addMember(w, h, entry as unknown as Readable, path, target ?? undefined, TREE_SOURCE, what, {});
  }
  if (status === undefined) throw new LarchError('INVALID_INPUT', `${what} has no dpkg database (var/lib/dpkg/status)`, { data: { path: tarPath } });
  for (const [file, text] of Object.entries(ADMINDIR_CONFIG)) {
    const content = Buffer.from(text);
    w.checkAncestors(file, what);
    await w.add({ name: file, type: 'file', mode: 0o644, uid: 0, gid: 0, size: content.length }, 'layout', content);
  }
  return status;
}

/** Adds an overlay (file or directory, walked without following symlinks) at its target. */
async function addOverlay(w: ImageTarWriter, overlay: ImageTarInput['overlays'][number]): Promise<void> {
  const visit = async (abs: string, targetRel: string): Promise<void> => {
    const st = await lstat(abs).catch((err) => {
      throw fromSystemError(err, `${overlay.field}: read`, abs);
    });
    const path = targetRel === '' ? '' : imagePath(targetRel);
    const what = `${overlay.field} ('${abs}')`;
    if (path !== '') w.checkAncestors(path, what);
    const base = { name: path, mode: st.mode & 0o7777, uid: 0, gid: 0 };
    if (st.isDirectory()) {
      // A directory the packages already place keeps their owner and mode: the overlay adds
      // content, not the build machine's umask.
      if (path !== '' && w.placed.get(path)?.type !== 'directory') await w.add({ ...base, type: 'directory' }, 'overlay');
      for (const name of (await readdir(abs)).sort()) await visit(join(abs, name), targetRel === '' ? name : `${targetRel}/${name}`);
      return;
    }
    if (path === '') throw new LarchError('INVALID_INPUT', `${what}: a file cannot replace the image's root; give a target path`, { data: { field: overlay.field } });
    if (w.placed.get(path)?.type === 'directory') throw new LarchError('INVALID_INPUT', `${what}: '/${quash(path, 200)}' is a directory in the image; an overlay file cannot replace it`, { data: { field: overlay.field, path: `/${path}` } });
    if (st.isFile()) await w.add({ ...base, type: 'file', size: st.size }, 'overlay', createReadStream(abs));
    else if (st.isSymbolicLink()) await w.add({ ...base, mode: 0o777, type: 'symlink', linkname: await readlink(abs) }, 'overlay');
    else if (st.isFIFO()) await w.add({ ...base, type: 'fifo' }, 'overlay');
    else throw new LarchError('UNSUPPORTED_FILE_TYPE', `${what}: not a file, directory, symlink or FIFO`, { data: { path: abs } });
  };
  await visit(overlay.source, overlay.target);
}

/**
 * Writes the image tree to `input.out` as a tar. Fails, naming the package, overlay or
 * pattern, when two packages ship the same path, an overlay would write through a symlink,
 * or a boot.files pattern matches nothing.
 *
 * @throws INVALID_INPUT, UNSUPPORTED_FILE_TYPE, TOOL_MISSING, NOT_FOUND, NO_SPACE
 */
export async function writeImageTar(input: ImageTarInput): Promise<ImageTarResult> {
  const w = new ImageTarWriter(input.bootFiles);
  let dpkgStatus: string | undefined;
  const out = createWriteStream(input.out);
  const written = finished(w.pack.pipe(out)).catch((err) => {
    throw fromSystemError(err, 'write', input.out);
  });
  written.catch(() => {}); // awaited below; a write error must not go unhandled meanwhile
  try {
    if (input.tree !== undefined) dpkgStatus = await addTree(w, input.tree);
    for (const pkg of input.packages) await addPackage(w, pkg);
    for (const overlay of input.overlays) await addOverlay(w, overlay);
    for (const dir of MERGED_USR_DIRS) {
      if (w.placed.get(`usr/${dir}`)?.type === 'directory' && !w.placed.has(dir)) await w.add({ name: dir, type: 'symlink', linkname: `usr/${dir}`, mode: 0o777, uid: 0, gid: 0 }, 'layout');
    }
    input.bootFiles.forEach((pattern, i) => {
      if (![...w.placed].some(([path, p]) => p.type === 'file' && matchGlob(pattern, path))) {
        throw new LarchError('INVALID_INPUT', `boot.files[${i}] '${quash(pattern)}' matches no file in the image`, { data: { field: `boot.files[${i}]`, pattern } });
      }
    });
    for (const copy of w.bootCopies) {
      for (const dir of ancestors(copy.path)) if (!w.placed.has(dir)) await w.add({ name: dir, type: 'directory', mode: 0o755, uid: 0, gid: 0 }, 'layout');
      const existing = w.placed.get(copy.path);
      if (existing) throw new LarchError('INVALID_INPUT', `boot.files: '/${copy.path}' is placed twice (by ${existing.from} and by a boot.files copy of '/${copy.header.name}')`, { data: { path: `/${copy.path}` } });
      await w.add({ ...copy.header, name: copy.path }, 'boot.files', copy.content);
    }
  } catch (err) {
    w.pack.destroy();
    out.destroy();
    throw err;
  }
  w.pack.finalize();
  await written;
  const bootFiles = [...w.placed].filter(([p, e]) => p.startsWith('boot/') && (e.type === 'file' || e.type === 'link')).map(([p]) => p).sort();
  return { entries: w.placed.size, bootFiles, kernelReleases: w.kernelReleases, newestPackageTime: w.newestPackageTime, ...(dpkgStatus === undefined ? {} : { dpkgStatus }) };
}

/**
 * Which running processes use files that a live apply changes (docs/design/issue-20-device-verbs.md
 * §6.2 "Processes"). A process is listed when its executable, one of its memory maps or one of its
 * open file descriptors is a watched file. Files are matched by device and inode, never by path:
 * the bind mount that makes an update live changes what a path names, while a running process keeps
 * the inode it opened, and a rename or removal does not hide it either.
 *
 * Everything is read from /proc, so the scan sees what the kernel sees, including files that are
 * already deleted (`(deleted)` in maps). Processes come and go while it runs: an entry that
 * vanishes or that this process may not read is skipped, not an error.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError } from '../../errors.ts';

/** A file of the running tree that the update changes or removes, by its device and inode (a rename cannot hide it). */
export interface WatchedFile {
  /** How the file is named in reports: its path in the running system (`/usr/libexec/larch-demo`). */
  path: string;
  dev: number;
  ino: number;
}

export interface ProcessUse {
  pid: number;
  /** /proc/PID/comm: the name the kernel shows (at most 15 bytes). */
  comm: string;
  /** The systemd service the process runs in (from its cgroup), or null. */
  unit: string | null;
  files: { path: string; via: 'exe' | 'map' | 'fd' }[];
}

/**
 * Errors that mean "this entry is gone, or not ours to read": a process that exits mid-scan
 * (ENOENT, ESRCH), an fd closed between readdir and stat, another user's process (EACCES, EPERM).
 */
const VANISHED = new Set(['ENOENT', 'ESRCH', 'EACCES', 'EPERM']);

/** Runs a read of one /proc entry; null when the entry vanished or is not ours. Other errors are IO. */
async function procRead<T>(path: string, read: () => Promise<T>): Promise<T | null> {
  try {
    return await read();
  } catch (err) {
    if (VANISHED.has((err as NodeJS.ErrnoException).code ?? '')) return null;
    throw fromSystemError(err, 'scanning processes: cannot read', path);
  }
}

/**
 * A device number as major and minor, split as glibc's gnu_dev_major/gnu_dev_minor do: the kernel
 * prints them so in /proc/PID/maps and mountinfo, while stat() gives the packed number. BigInt
 * because the packing puts major's high bits above bit 32, beyond JavaScript's bit operators.
 */
export function devMajorMinor(dev: number): { major: number; minor: number } {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return { major: Number(major & 0xffffffffn), minor: Number(minor & 0xffffffffn) };
}

/** One line of /proc/PID/maps that names a file (inode not 0); null for anonymous maps and odd lines. */
export interface MapsEntry {
  major: number;
  minor: number;
  inode: number;
  /** The path the kernel printed, without its ` (deleted)` suffix ('' when none). */
  path: string;
  deleted: boolean;
}

/**
 * Parses `address perms offset MAJ:MIN inode [path]`. The path is everything after the inode and
 * its padding: it may hold spaces. MAJ and MIN are hex, the inode decimal.
 */
export function parseMapsLine(line: string): MapsEntry | null {
  const m = /^\S+\s+\S+\s+\S+\s+([0-9a-f]+):([0-9a-f]+)\s+(\d+)(?:\s+(.*))?$/i.exec(line);
  if (!m) return null;
  const inode = Number(m[3]);
  if (inode === 0) return null;
  let path = m[4] ?? '';
  const deleted = path.endsWith(' (deleted)');
  if (deleted) path = path.slice(0, -' (deleted)'.length);
  return { major: parseInt(m[1], 16), minor: parseInt(m[2], 16), inode, path, deleted };
}

/**
 * The systemd service of a process from /proc/PID/cgroup: the first `.service` component of its
 * path in systemd's hierarchy (cgroup v2's `0::` line, or v1's `name=systemd`). The first, because
 * a service may make sub-cgroups of its own, and a user session's services sit below
 * `user@UID.service`, which is the unit the system manager knows. Null for scopes, slices, no systemd.
 */
export function unitFromCgroup(text: string): string | null {
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    const systemdHierarchy = (m[1] === '0' && m[2] === '') || m[2].split(',').includes('name=systemd');
    if (!systemdHierarchy) continue;
    const service = m[3].split('/').find((part) => part.endsWith('.service') && part.length > '.service'.length);
    if (service) return service;
  }
  return null;
}

const key = (dev: number, ino: number) => `${dev}:${ino}`;
const mapsKey = (major: number, minor: number, ino: number) => `${major}:${minor}:${ino}`;

/**
 * Every process under procRoot (default '/proc') whose exe, memory maps or open fds are one of
 * `files`. Sorted by pid; each file once per process and via.
 *
 * Inode numbers are compared as JavaScript numbers on both sides (stat's and the decimal of maps
 * both round the same way above 2^53), so a match is exact for every inode a filesystem of a small
 * device hands out.
 */
export async function processesUsing(files: WatchedFile[], opts: { procRoot?: string } = {}): Promise<ProcessUse[]> {
  if (files.length === 0) return [];
  const procRoot = opts.procRoot ?? '/proc';
  // Two hard links of one inode are two watched paths: each key lists every file it stands for.
  const byDevIno = new Map<string, WatchedFile[]>();
  const byMaps = new Map<string, WatchedFile[]>();
  const index = (map: Map<string, WatchedFile[]>, k: string, f: WatchedFile) => map.set(k, [...(map.get(k) ?? []), f]);
  for (const f of files) {
    const { major, minor } = devMajorMinor(f.dev);
    index(byDevIno, key(f.dev, f.ino), f);
    index(byMaps, mapsKey(major, minor, f.ino), f);
  }

  let names: string[];
  try {
    names = await readdir(procRoot);
  } catch (err) {
    throw fromSystemError(err, 'scanning processes: cannot list', procRoot);
  }
  // The scan itself opens files under /proc and may have the watched ones open: it is no user.
  const self = procRoot === '/proc' ? String(process.pid) : null;
  const pids = names.filter((n) => /^[0-9]+$/.test(n) && n !== self).map(Number).sort((a, b) => a - b);

  const uses: ProcessUse[] = [];
  for (const pid of pids) {
    const dir = join(procRoot, String(pid));
    const found = new Map<string, { path: string; via: 'exe' | 'map' | 'fd' }>();
    const add = (matches: WatchedFile[] | undefined, via: 'exe' | 'map' | 'fd') => {
      for (const f of matches ?? []) found.set(`${via}\0${f.path}`, { path: f.path, via });
    };

    // stat() follows the magic links exe and fd/N to the inode the process holds, deleted or not.
    const exe = await procRead(join(dir, 'exe'), () => stat(join(dir, 'exe')));
    if (exe) add(byDevIno.get(key(exe.dev, exe.ino)), 'exe');

    const maps = await procRead(join(dir, 'maps'), () => readFile(join(dir, 'maps'), 'utf8'));
    for (const line of maps?.split('\n') ?? []) {
      const e = parseMapsLine(line);
      if (e) add(byMaps.get(mapsKey(e.major, e.minor, e.inode)), 'map');
    }

    const fdDir = join(dir, 'fd');
    const fds = await procRead(fdDir, () => readdir(fdDir));
    const fdStats = await Promise.all((fds ?? []).map((fd) => procRead(join(fdDir, fd), () => stat(join(fdDir, fd)))));
    for (const st of fdStats) if (st) add(byDevIno.get(key(st.dev, st.ino)), 'fd');

    if (found.size === 0) continue;
    const comm = await procRead(join(dir, 'comm'), () => readFile(join(dir, 'comm'), 'utf8'));
    const cgroup = await procRead(join(dir, 'cgroup'), () => readFile(join(dir, 'cgroup'), 'utf8'));
    const viaOrder = { exe: 0, map: 1, fd: 2 };
    const usedFiles = [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : viaOrder[a.via] - viaOrder[b.via]));
    uses.push({ pid, comm: (comm ?? '').trim(), unit: cgroup === null ? null : unitFromCgroup(cgroup), files: usedFiles });
  }
  return uses;
}

/**
 * Reads a file's dev/ino (stat, not lstat: a symlink is watched as the file it names, which is
 * what a process that opens the path holds) to make a WatchedFile; null when it does not exist.
 * `shownAs` names it in reports when `path` is where it is read from (a path under a test root).
 */
export async function watch(path: string, shownAs: string = path): Promise<WatchedFile | null> {
  try {
    const st = await stat(path);
    return { path: shownAs, dev: st.dev, ino: st.ino };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw fromSystemError(err, 'cannot read', path);
  }
}

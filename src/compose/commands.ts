/**
 * Runs a definition's `commands` on the finished tree, without root: the image tar is
 * unpacked into a directory, each command runs with `sh -c` in it, and the directory is
 * packed again. Entries the commands did not touch keep the owners and modes the packages
 * gave them (an unprivileged unpack cannot set owners); entries they created or changed are
 * recorded as root:root with the mode on disk (docs/images.md, "Commands").
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import * as tar from 'tar-stream';

/** The fields larch writes; times are always 0 and names are numeric ids only. */
type EntryHeader = { name: string; type: tar.Header['type']; mode: number; uid: number; gid: number; size?: number; linkname?: string };
import { LarchError, fromSystemError, quash } from '../errors.ts';
import { runTool, spawnFailure, stderrTail } from '../_run.ts';

interface Recorded {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  linkname?: string;
}

async function readIndex(tarPath: string): Promise<Map<string, Recorded>> {
  const index = new Map<string, Recorded>();
  const extract = tar.extract();
  createReadStream(tarPath).pipe(extract);
  for await (const entry of extract) {
    const h = entry.header;
    index.set(h.name.replace(/\/+$/, ''), { type: h.type === 'link' ? 'file' : h.type, mode: h.mode ?? 0, uid: h.uid ?? 0, gid: h.gid ?? 0, linkname: h.linkname ?? undefined });
    entry.resume();
  }
  return index;
}

function runCommand(command: string, cwd: string, field: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { cwd, env: { ...process.env, LARCH_IMAGE_ROOT: cwd }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('error', (e) => reject(spawnFailure('sh', e, { context: field })));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new LarchError('INVALID_INPUT', `${field} '${quash(command, 120)}' exited ${code}: ${stderrTail(output)}`, { data: { field, exit_code: code } }));
    });
  });
}

/**
 * Unpacks `inTar` under `workDir`, runs the commands there, packs the result into `outTar`.
 * @throws INVALID_INPUT naming the command that failed, TOOL_MISSING, NO_SPACE
 */
export async function runCommandsOnTree(inTar: string, commands: string[], workDir: string, outTar: string): Promise<void> {
  const tree = join(workDir, 'tree');
  await mkdir(tree, { recursive: true });
  const unpack = await runTool('tar', ['-xpf', inTar, '-C', tree, '--no-same-owner']);
  if (unpack.code !== 0) throw new LarchError('IO', `unpack the image tree for its commands: tar failed: ${stderrTail(unpack.stderr)}`, { data: { tool: 'tar', path: inTar, exit_code: unpack.code } });
  const index = await readIndex(inTar);
  for (const [i, command] of commands.entries()) await runCommand(command, tree, `commands[${i}]`);

  const pack = tar.pack();
  const out = createWriteStream(outTar);
  const written = finished(pack.pipe(out));
  written.catch(() => {});
  const add = (header: EntryHeader, content?: Readable) =>
    new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ ...header, mtime: new Date(0) } as tar.Header, (err) => (err ? reject(err) : resolve()));
      if (content) {
        content.on('error', reject);
        content.pipe(sink as unknown as Writable);
      }
    });
  const visit = async (rel: string): Promise<void> => {
    const abs = rel === '' ? tree : join(tree, rel);
    const st = await lstat(abs);
    const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : 'other';
    if (type === 'other') throw new LarchError('UNSUPPORTED_FILE_TYPE', `commands left '/${quash(rel, 200)}', a device or socket, in the tree`, { data: { path: `/${rel}` } });
    const linkname = type === 'symlink' ? await readlink(abs) : undefined;
    const was = index.get(rel);
    // tar restored every time to 0 (the image tar records 0), so a later time means a command wrote it.
    const untouched = was !== undefined && was.type === type && (type === 'directory' || (type === 'symlink' ? was.linkname === linkname : st.mtimeMs === 0));
    const diskMode = st.mode & 0o7777;
    const mode = untouched && (diskMode & 0o777) === (was.mode & 0o777) ? was.mode & 0o7777 : diskMode;
    const owner = untouched ? { uid: was.uid, gid: was.gid } : { uid: 0, gid: 0 };
    if (rel !== '') {
      if (type === 'file') await add({ name: rel, type: 'file', size: st.size, mode, ...owner }, createReadStream(abs));
      else if (type === 'symlink') await add({ name: rel, type: 'symlink', linkname, mode: 0o777, ...owner });
      else await add({ name: rel, type: type as 'directory' | 'fifo', mode, ...owner });
    }
    if (type === 'directory') for (const name of (await readdir(abs)).sort()) await visit(rel === '' ? name : `${rel}/${name}`);
  };
  try {
    await visit('');
  } catch (err) {
    pack.destroy();
    out.destroy();
    throw fromSystemError(err, 'read the image tree after its commands', tree);
  }
  pack.finalize();
  await written.catch((err) => {
    throw fromSystemError(err, 'write', outTar);
  });
}

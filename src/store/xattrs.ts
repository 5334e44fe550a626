/**
 * Extended attributes through the `attr` tools (getfattr/setfattr), because Node has no
 * xattr API. One process reads or writes a whole tree, so the cost is per tree, not per file.
 */
import { spawn } from 'node:child_process';
import { LarchError } from '../errors.ts';
import { spawnFailure } from '../_run.ts';
import type { Xattrs } from './object.ts';

/** Paths in getfattr's dump escape bytes as \ooo octal; this turns them back into bytes. */
function unescapeDumpPath(text: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === 0x5c && i + 3 < text.length + 0 && /^[0-7]{3}$/.test(text.subarray(i + 1, i + 4).toString('latin1'))) {
      out.push(Number.parseInt(text.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else out.push(text[i]);
  }
  return Buffer.from(out);
}

function escapeDumpPath(path: Buffer): string {
  let s = '';
  for (const b of path) {
    s += b <= 0x20 || b === 0x5c || b >= 0x7f || b === 0x3d ? `\\${b.toString(8).padStart(3, '0')}` : String.fromCharCode(b);
  }
  return s;
}

function run(cmd: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnFailure(cmd, e, { purpose: 'for extended attributes', hint: "'larch commit --no-xattrs' records no xattrs and needs no getfattr" })));
    child.on('close', (code) => {
      // getfattr exits 1 when some file has no xattrs support; its stdout is still complete.
      if (code !== 0 && !(cmd === 'getfattr' && code === 1 && out.length > 0)) {
        reject(new LarchError('IO', `${cmd} failed: ${Buffer.concat(err).toString().trim().slice(0, 300)}`, { data: { tool: cmd, exit_code: code } }));
      } else resolve(Buffer.concat(out));
    });
    child.stdin.end(input);
  });
}

/** Parses a `getfattr -d -e hex` dump into path (latin1 key of the raw bytes) -> xattrs. */
export function parseXattrDump(dump: Buffer): Map<string, Xattrs> {
  const result = new Map<string, Xattrs>();
  let current: Xattrs | null = null;
  let start = 0;
  while (start < dump.length) {
    let end = dump.indexOf(0x0a, start);
    if (end < 0) end = dump.length;
    const line = dump.subarray(start, end);
    start = end + 1;
    if (line.length === 0) continue;
    if (line.subarray(0, 8).toString('latin1') === '# file: ') {
      current = [];
      result.set(unescapeDumpPath(line.subarray(8)).toString('latin1'), current);
      continue;
    }
    const eq = line.indexOf(0x3d);
    if (current === null || eq < 0) continue;
    const name = unescapeDumpPath(line.subarray(0, eq));
    const value = line.subarray(eq + 1).toString('latin1');
    const bytes = value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex') : value.startsWith('"') ? Buffer.from(value.slice(1, -1), 'latin1') : Buffer.alloc(0);
    current.push([Uint8Array.from(name), Uint8Array.from(bytes)]);
  }
  return result;
}

/** Reads all xattrs below root (symlinks not followed). Keys are absolute paths as latin1 strings of their bytes. */
export async function readTreeXattrs(root: string): Promise<Map<string, Xattrs>> {
  const dump = await run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', root]);
  return parseXattrDump(dump);
}

/** Sets xattrs on many paths (raw byte paths) with one setfattr process. */
export async function writeXattrs(entries: { path: Buffer; xattrs: Xattrs }[]): Promise<void> {
  const lines: string[] = [];
  for (const { path, xattrs } of entries) {
    if (xattrs.length === 0) continue;
    lines.push(`# file: ${escapeDumpPath(path)}`);
    for (const [name, value] of xattrs) lines.push(`${escapeDumpPath(Buffer.from(name))}=0x${Buffer.from(value).toString('hex')}`);
    lines.push('');
  }
  if (lines.length === 0) return;
  await run('setfattr', ['-h', '--restore=-'], Buffer.from(lines.join('\n') + '\n', 'latin1'));
}

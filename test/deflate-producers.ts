/**
 * Raw deflate streams made by the real compressors issue 18's view must rebuild byte-exactly: GNU
 * gzip, the system zlib (through python3: node:zlib is Chromium's fork, memo §1.3), zopfli and
 * 7-Zip. Shared by test/unit/delta/deflate-view.test.ts and scripts/make-view-vectors.ts.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng } from './helpers.ts';

export interface Producer {
  name: string;
  /** Commands it needs on PATH. */
  tools: string[];
  /** The raw deflate stream of `input`. */
  make: (input: Uint8Array) => Uint8Array;
}

/** The raw deflate body of a one-member gzip file (RFC 1952): after the header and its optional fields, before CRC32 ‖ ISIZE. */
export function gzipBody(gz: Uint8Array): Uint8Array {
  if (gz[0] !== 0x1f || gz[1] !== 0x8b || gz[2] !== 8) throw new Error('not a gzip member');
  const flg = gz[3];
  let p = 10;
  if (flg & 4) p += 2 + (gz[10] | (gz[11] << 8));
  if (flg & 8) p = gz.indexOf(0, p) + 1;
  if (flg & 16) p = gz.indexOf(0, p) + 1;
  if (flg & 2) p += 2;
  return gz.subarray(p, gz.length - 8);
}

const run = (cmd: string, args: string[], input?: Uint8Array): Uint8Array => Uint8Array.from(execFileSync(cmd, args, { input, maxBuffer: 1 << 28 }));

/** Runs fn with a temp directory holding `input` as the file `in`. */
function withFile<T>(input: Uint8Array, fn: (dir: string, file: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'larch-deflate-'));
  try {
    writeFileSync(join(dir, 'in'), input);
    return fn(dir, join(dir, 'in'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The system zlib (python3's zlib module) at `level`, raw deflate (wbits -15), default memLevel 8. */
export function pythonZlib(input: Uint8Array, level: number, memLevel = 8): Uint8Array {
  const script = `import sys, zlib\nc = zlib.compressobj(${level}, zlib.DEFLATED, -15, ${memLevel})\nd = sys.stdin.buffer.read()\nsys.stdout.buffer.write(c.compress(d) + c.flush())`;
  return run('python3', ['-c', script], input);
}

/** The system zlib's raw deflate streams of `input` at levels 1..9 (index 0 is level 1), in one python3 run. */
export function pythonZlibLevels(input: Uint8Array): Uint8Array[] {
  const script = `import sys, zlib, json\nd = sys.stdin.buffer.read()\nout = []\nfor level in range(1, 10):\n    c = zlib.compressobj(level, zlib.DEFLATED, -15)\n    out.append((c.compress(d) + c.flush()).hex())\nprint(json.dumps(out))`;
  return (JSON.parse(execFileSync('python3', ['-c', script], { input, maxBuffer: 1 << 28, encoding: 'utf8' })) as string[]).map((h) => Uint8Array.from(Buffer.from(h, 'hex')));
}

export const PRODUCERS: Producer[] = [
  { name: 'gzip -9n', tools: ['gzip'], make: (input) => gzipBody(run('gzip', ['-9n', '-c'], input)) },
  { name: 'gzip -6n', tools: ['gzip'], make: (input) => gzipBody(run('gzip', ['-6n', '-c'], input)) },
  { name: 'zlib 1', tools: ['python3'], make: (input) => pythonZlib(input, 1) },
  { name: 'zlib 6', tools: ['python3'], make: (input) => pythonZlib(input, 6) },
  { name: 'zlib 9', tools: ['python3'], make: (input) => pythonZlib(input, 9) },
  { name: 'zlib 0 (stored blocks)', tools: ['python3'], make: (input) => pythonZlib(input, 0) },
  { name: 'zopfli --gzip', tools: ['zopfli'], make: (input) => withFile(input, (_, file) => gzipBody(run('zopfli', ['--gzip', '-c', file]))) },
  {
    name: '7zz a -tgzip -mx9',
    tools: ['7zz'],
    make: (input) =>
      withFile(input, (dir, file) => {
        execFileSync('7zz', ['a', '-tgzip', '-mx9', join(dir, 'out.gz'), file], { stdio: 'ignore' });
        return gzipBody(Uint8Array.from(readFileSync(join(dir, 'out.gz'))));
      }),
  },
];

const WORDS = 'the package update delta commit object tree boot device kernel changelog upload urgency medium fix release debian version signed stream block window literal match distance'.split(' ');

/** Changelog-like text of about `size` bytes: seeded words, repeated entries (long matches) and some random bytes. */
export function syntheticText(size: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const parts: string[] = [];
  let n = 0;
  const entries: string[] = [];
  while (n < size) {
    let entry: string;
    if (entries.length > 3 && rand() < 0.3) {
      entry = entries[Math.floor(rand() * entries.length)];
    } else {
      const words = Array.from({ length: 5 + Math.floor(rand() * 40) }, () => WORDS[Math.floor(rand() * WORDS.length)]);
      entry = `larch (${Math.floor(rand() * 10)}.${Math.floor(rand() * 100)}-${Math.floor(rand() * 5)}) unstable; urgency=low\n\n  * ${words.join(' ')}\n  * id ${Math.floor(rand() * 1e9).toString(16)}\n\n -- Larch Maintainers <larch@example.org>  Sat, 05 Dec 2026\n\n`;
      entries.push(entry);
    }
    parts.push(entry);
    n += entry.length;
  }
  return Uint8Array.from(Buffer.from(parts.join('').slice(0, size), 'latin1'));
}

/**
 * Writes test/vectors/delta/view/lz4.json: small inputs and the LZ4 legacy frames the real `lz4`
 * tool (1.9.4) makes of them with `lz4 -l -LEVEL -c`, plus hand-made malformed frames. Run once:
 * node --import tsx scripts/make-lz4-vectors.ts (test/unit/delta/lz4-view.test.ts checks both
 * ways: src/delta/view/lz4.ts must encode each input to exactly its frame and decode the frame back;
 * the tests never regenerate this file). The frames come from the tool, not from the port.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prng } from '../test/helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const OUT = join(ROOT, 'test/vectors/delta/view/lz4.json');

const version = spawnSync('lz4', ['--version'], { encoding: 'utf8' });
if (version.status !== 0 || !/v1\.9\.4\b/.test(version.stdout + version.stderr)) {
  console.error(`make-lz4-vectors: needs lz4 1.9.4 on PATH (found: ${(version.stdout + version.stderr).trim() || 'none'})`);
  process.exit(1);
}

const utf8 = (s: string) => Uint8Array.from(Buffer.from(s, 'utf8'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function randomBytes(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
}
/** Random words with repeats and runs: what makes both match finders take their branches. */
function mixed(seed: number, n: number): Uint8Array {
  const r = prng(seed);
  const out: number[] = [];
  const words = ['larch', 'delta', 'kernel', 'lz4', 'legacy', 'frame', '\n', '    ', 'the', 'block'];
  while (out.length < n) {
    const pick = r();
    if (pick < 0.6) out.push(...utf8(words[Math.floor(r() * words.length)] + ' '));
    else if (pick < 0.8) out.push(...new Array(1 + Math.floor(r() * 40)).fill(Math.floor(r() * 4)));
    else if (pick < 0.9 && out.length > 64) {
      const from = Math.floor(r() * (out.length - 32));
      out.push(...out.slice(from, from + 4 + Math.floor(r() * 28)));
    } else out.push(Math.floor(r() * 256));
  }
  return Uint8Array.from(out.slice(0, n));
}

const text = utf8(
  'An LZ4 legacy frame is the magic 02 21 4c 18 and then blocks, each a little-endian size and an LZ4 block of at most 8 MiB decoded. ' +
    'The kernel is compressed with lz4 -l -9: the hash chain with 256 attempts and the pattern analysis. ' +
    'The kernel is compressed with lz4 -l -9: the hash chain with 256 attempts and the pattern analysis, again.\n',
);

const inputs: { comment: string; input: Uint8Array; levels: number[] }[] = [
  { comment: 'empty input: the magic alone', input: new Uint8Array(0), levels: [1, 9] },
  { comment: 'one byte', input: utf8('a'), levels: [1, 3, 9] },
  { comment: '12 bytes: under LZ4_minLength, all literals', input: utf8('abcabcabcabc'), levels: [1, 9] },
  { comment: '13 bytes of one value: the shortest input with a match; level 9 pattern analysis', input: utf8('aaaaaaaaaaaaa'), levels: [1, 3, 9] },
  { comment: 'English text with a repeated sentence', input: text, levels: [1, 2, 3, 4, 5, 6, 7, 8, 9] },
  { comment: '5000 zero bytes: one long run (match length bytes of 255)', input: new Uint8Array(5000), levels: [1, 3, 9] },
  { comment: '300 PRNG bytes (seed 1): incompressible', input: randomBytes(1, 300), levels: [1, 9] },
  { comment: '3000 bytes of words, runs and copies (seed 2)', input: mixed(2, 3000), levels: [1, 3, 5, 7, 9] },
  { comment: '"ab" x 700: a 2-byte pattern (level 9 analyses 1-byte runs only)', input: utf8('ab'.repeat(700)), levels: [3, 9] },
  { comment: 'a run inside random bytes (seed 3): level 9 jumps along the run', input: Uint8Array.from([...randomBytes(3, 100), ...new Array(600).fill(7), ...randomBytes(4, 100), ...new Array(300).fill(7), ...randomBytes(5, 50)]), levels: [8, 9] },
];

const valid = inputs.flatMap(({ comment, input, levels }) =>
  levels.map((level) => {
    const r = spawnSync('lz4', ['-l', `-${level}`, '-c'], { input });
    if (r.status !== 0) throw new Error(`lz4 -l -${level} failed: ${r.stderr}`);
    return { comment: `${comment}, lz4 -l -${level}`, valid: true, level, input: hex(input), frame: hex(r.stdout) };
  }),
);

const MAGIC = '02214c18';
const u32le = (n: number) => hex(Uint8Array.of(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24));
/** A block: literals-only token for "abcd" is 40 61 62 63 64. */
const invalid = [
  { comment: 'empty: shorter than the magic', frame: '' },
  { comment: 'the lz4 frame magic (04 22 4d 18), not the legacy one', frame: '04224d18' + u32le(5) + '4061626364' },
  { comment: 'block size past the end of the frame', frame: MAGIC + u32le(6) + '4061626364' },
  { comment: 'block size 0', frame: MAGIC + u32le(0) },
  { comment: 'truncated in a block size', frame: MAGIC + '0500' },
  { comment: 'block size over LZ4_compressBound(8 MiB)', frame: MAGIC + u32le(8421521) + '00' },
  { comment: 'match offset 0 (literals "abcd", offset 0, length 4, then last literals)', frame: MAGIC + u32le(9) + '4061626364' + '0000' + '10' + '65' },
  { comment: 'match offset 5 past the 4 bytes decoded so far', frame: MAGIC + u32le(9) + '4061626364' + '0500' + '10' + '65' },
  { comment: 'block ends after a match (no last literals)', frame: MAGIC + u32le(7) + '4061626364' + '0400' },
  { comment: 'block truncated in its offset', frame: MAGIC + u32le(6) + '4061626364' + '04' },
  { comment: 'literal run past the end of the block', frame: MAGIC + u32le(5) + '5061626364' },
  { comment: 'literal length bytes run past the end', frame: MAGIC + u32le(2) + 'f0ff' },
  { comment: 'a first block of 4 bytes followed by another: only the last block may be under 8 MiB', frame: MAGIC + u32le(5) + '4061626364' + u32le(5) + '4061626364' },
  { comment: 'one byte after the last block (a truncated size; the block before is then not the last)', frame: MAGIC + u32le(5) + '4061626364' + '00' },
];

const doc = {
  source: `lz4 ${(version.stdout + version.stderr).match(/v\d+\.\d+\.\d+/)?.[0]} (Debian bookworm): \`lz4 -l -LEVEL -c\` of each input (stdin to stdout); the invalid frames are hand-made. Written by scripts/make-lz4-vectors.ts`,
  vectors: [...valid, ...invalid.map((v) => ({ ...v, valid: false }))],
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, JSON.stringify(doc, null, 2) + '\n');
console.log(`wrote ${doc.vectors.length} vectors to ${OUT}`);

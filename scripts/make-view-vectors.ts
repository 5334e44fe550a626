/**
 * Writes test/vectors/delta/view/deflate.json: for each compressor whose streams the PV1 view must
 * rebuild (GNU gzip -9n/-6n, the system zlib at levels 1, 6, 9 and 0 = stored blocks, zopfli,
 * 7-Zip), the raw deflate stream of a small seeded text, its PV1 view (docs/design/pv1.md) and the
 * decompressed length. test/unit/delta/deflate-view.test.ts checks each both ways. Run once to
 * freeze the set (never from a test: the point is that the bytes do not change):
 *   node --import tsx scripts/make-view-vectors.ts [OUT_FILE]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PRODUCERS, syntheticText } from '../test/deflate-producers.ts';
import { huffDeflate, puffDeflate } from '../src/delta/view/deflate.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? join(ROOT, 'test/vectors/delta/view/deflate.json');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const version = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n').find((l) => l.trim() !== '')?.trim() ?? '?';
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? '?').split('\n')[0];
  }
};

const input = syntheticText(3000, 7);
const vectors = PRODUCERS.map((p) => {
  const stream = p.make(input);
  const { view, used } = puffDeflate(stream);
  if (used !== stream.length || Buffer.compare(huffDeflate(view), stream) !== 0) throw new Error(`${p.name}: the view does not round-trip`);
  return { comment: `syntheticText(3000, 7) compressed by ${p.name}`, producer: p.name, valid: true, decompressed_length: input.length, stream: hex(stream), view: hex(view) };
});
const doc = {
  source: 'scripts/make-view-vectors.ts (docs/design/pv1.md); streams are raw deflate (RFC 1951), gzip bodies without header and trailer',
  tools: {
    gzip: version('gzip', ['--version']),
    zlib: version('python3', ['-c', 'import zlib; print("zlib " + zlib.ZLIB_RUNTIME_VERSION)']),
    zopfli: 'Debian zopfli ' + version('dpkg-query', ['-W', '-f', '${Version}', 'zopfli']),
    '7zz': version('7zz', ['i']).slice(0, 80),
  },
  vectors,
};
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(doc, null, 2) + '\n');
console.log(`wrote ${vectors.length} vectors to ${out}`);

/**
 * What brotli's quality and window cost and save on the streams of a real delta: each part's
 * control, diff and literal streams are decompressed and compressed again at several settings,
 * one at a time on one core, printing bytes and seconds per setting. This is how the delta's
 * codec settings were chosen (src/delta/compress.ts; bench/README.md, issue 18).
 *
 *   node --import tsx bench/delta-streams.ts DELTA [--parts 0,3,5] [--settings q11w24,q11w22,q10w24,q9w24]
 *
 * DELTA is a one-file delta (`larch delta generate --out`; format 3 parts have a fourth stream,
 * runs); --parts picks parts by index (all by
 * default), --settings the brotli quality (q) and window bits (w) to try, the first being the
 * reference of the ratios printed. --json prints the rows as JSON on stdout.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
import { DELTA_FORMAT_MAX, decodeEnvelope, decodePartHeader, decodeSuperblock, partHeaderBytes } from '../src/delta/format.ts';
import { openDeltaFile } from '../src/delta/source.ts';

interface Row {
  part: number;
  stream: 'control' | 'runs' | 'diff' | 'literal';
  raw: number;
  results: { setting: string; bytes: number; seconds: number }[];
}

function parseSetting(s: string): { quality: number; window: number } {
  const m = /^q(\d+)w(\d+)$/.exec(s);
  if (!m) throw new Error(`--settings: '${s}' is not qNwN (e.g. q11w22)`);
  return { quality: Number(m[1]), window: Number(m[2]) };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { parts: { type: 'string' }, settings: { type: 'string', default: 'q11w24,q11w22,q10w24,q9w24' }, json: { type: 'boolean', default: false } } });
  if (positionals.length !== 1) throw new Error('usage: bench/delta-streams.ts DELTA [--parts 0,3,5] [--settings q11w24,...] [--json]');
  const file = positionals[0];
  const settings = values.settings!.split(',').map((s) => [s, parseSetting(s)] as const);
  const source = await openDeltaFile(file);
  const sb = decodeSuperblock(decodeEnvelope(source.envelope).superblock, DELTA_FORMAT_MAX);
  const bytes = readFileSync(file);
  const parts = values.parts ? values.parts.split(',').map(Number) : sb.parts.map((_, i) => i);
  const rows: Row[] = [];
  for (const index of parts) {
    if (!(index >= 0 && index < sb.parts.length)) throw new Error(`--parts: the delta has parts 0-${sb.parts.length - 1}, not ${index}`);
    const { offset } = await source.part(index);
    const lengths = decodePartHeader(bytes.subarray(offset, offset + partHeaderBytes(sb.format)), sb.parts[index].size, sb.format);
    let at = offset + partHeaderBytes(sb.format);
    for (const stream of sb.format >= 3 ? (['control', 'runs', 'diff', 'literal'] as const) : (['control', 'diff', 'literal'] as const)) {
      const raw = brotliDecompressSync(bytes.subarray(at, at + lengths[stream]));
      at += lengths[stream];
      const row: Row = { part: index, stream, raw: raw.length, results: [] };
      for (const [name, { quality, window }] of settings) {
        const t0 = performance.now();
        const out = brotliCompressSync(raw, { params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_LGWIN]: window, [constants.BROTLI_PARAM_SIZE_HINT]: raw.length } });
        row.results.push({ setting: name, bytes: out.length, seconds: (performance.now() - t0) / 1000 });
      }
      rows.push(row);
      const ref = row.results[0].bytes;
      console.error(`part ${index} ${stream.padEnd(7)} raw ${String(raw.length).padStart(10)} | ${row.results.map((r) => `${r.setting} ${r.bytes} (${(r.bytes / ref).toFixed(3)}x) ${r.seconds.toFixed(1)} s`).join(' | ')}`);
    }
  }
  if (values.json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
}

main().catch((err) => {
  console.error(`bench/delta-streams: ${(err as Error).message}`);
  process.exit(1);
});

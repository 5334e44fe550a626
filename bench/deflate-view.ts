/**
 * Speed of the PV1 deflate view codec (src/delta/view/deflate.ts) on real .gz files, beside the
 * runtime's native inflate for scale: MB of compressed input per second, for puff (stream → view)
 * and huff (view → stream), median of 7 timed runs after a warm-up, wall and CPU time.
 *
 *   node --import tsx bench/deflate-view.ts [FILE.gz ...]
 *   node_modules/.bin/bun bench/deflate-view.ts [FILE.gz ...]
 *
 * Without files: the three largest .gz under /usr/share/doc. Each file must be one gzip member
 * whose deflate body round-trips (checked before timing).
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { huffDeflate, puffDeflate } from '../src/delta/view/deflate.ts';
import { gzipBody } from '../test/deflate-producers.ts';

function largestDocGz(n: number): string[] {
  const found: { path: string; size: number }[] = [];
  for (const pkg of readdirSync('/usr/share/doc')) {
    let names: string[];
    try {
      names = readdirSync(join('/usr/share/doc', pkg));
    } catch {
      continue;
    }
    for (const name of names.filter((x) => x.endsWith('.gz'))) {
      const path = join('/usr/share/doc', pkg, name);
      found.push({ path, size: statSync(path).size });
    }
  }
  // Packages of one source ship the same changelog: keep one of each size.
  const seen = new Set<number>();
  return found
    .sort((a, b) => b.size - a.size)
    .filter((f) => !seen.has(f.size) && seen.add(f.size))
    .slice(0, n)
    .map((f) => f.path);
}

const files = process.argv.length > 2 ? process.argv.slice(2) : largestDocGz(3);
const streams = files.map((f) => gzipBody(Uint8Array.from(readFileSync(f))));
const views = streams.map((s, i) => {
  const { view, used } = puffDeflate(s);
  if (used !== s.length || Buffer.compare(huffDeflate(view), s) !== 0) throw new Error(`${files[i]}: does not round-trip`);
  return view;
});
const compressed = streams.reduce((a, s) => a + s.length, 0);
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1];
function time(name: string, fn: () => void): string {
  fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const c0 = cpuMs();
    fn();
    wall.push(performance.now() - t0);
    cpu.push(cpuMs() - c0);
  }
  return `${name.padEnd(20)} ${(compressed / 1e3 / median(wall)).toFixed(1).padStart(6)} MB/s wall, ${(compressed / 1e3 / median(cpu)).toFixed(1).padStart(6)} MB per CPU-second`;
}

const runtime = typeof (globalThis as { Bun?: { version: string } }).Bun !== 'undefined' ? `bun ${(globalThis as unknown as { Bun: { version: string } }).Bun.version}` : `node ${process.version}`;
console.log(`${runtime}; ${files.length} files, ${compressed} B compressed, views ${views.reduce((a, v) => a + v.length, 0)} B; load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
for (const f of files) console.log(`  ${f}`);
console.log(time('puff', () => streams.forEach((s) => puffDeflate(s))));
console.log(time('huff', () => views.forEach((v) => huffDeflate(v))));
console.log(time('native inflate', () => streams.forEach((s) => inflateRawSync(s))));

/** A layer's plain bytes (src/oci/decompress.ts): gzip and zstd (both zstd paths, the same bytes), the magic checked, the size cap and the bomb ratio, a damaged stream. */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { decompress } from '../../../src/oci/decompress.ts';
import type { Compression } from '../../../src/oci/manifest.ts';

const zstdOf = (data: Buffer, level = 3) => {
  const r = spawnSync('zstd', [`-${level}`, '-c', '-q'], { input: data, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`zstd: ${r.stderr}`);
  return r.stdout;
};
async function* chunks(b: Buffer, size = 1 << 20): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}
async function all(packed: Buffer, c: Compression, opts: { maxBytes?: number; zstdTool?: boolean } = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of decompress(chunks(packed), c, { maxBytes: opts.maxBytes ?? 1 << 30, where: 'layer 1/1', zstdTool: opts.zstdTool })) out.push(Buffer.from(chunk));
  return Buffer.concat(out);
}
const reason = (p: Promise<unknown>) => p.then(() => null, (err) => `${err.code}:${err.data?.reason}`);

t.test('gzip, zstd by both paths, none: the exact bytes', async (t) => {
  const data = Buffer.concat([randomBytes(300_000), Buffer.alloc(500_000, 7)]);
  t.ok((await all(gzipSync(data, { level: 9 }), 'gzip')).equals(data), 'gzip');
  t.ok((await all(zstdOf(data), 'zstd')).equals(data), "zstd, the runtime's way (Bun's zlib; under Node 20 the zstd tool as well)");
  t.ok((await all(zstdOf(data, 19), 'zstd', { zstdTool: true })).equals(data), 'zstd through the zstd tool');
  t.ok((await all(data, 'none')).equals(data), 'none');
});

t.test('refusals', async (t) => {
  const data = Buffer.alloc(2_000_000, 1);
  t.equal(await reason(all(gzipSync(data), 'zstd')), 'INVALID_INPUT:compression-mismatch', 'gzip bytes under a zstd media type');
  t.equal(await reason(all(zstdOf(data), 'gzip')), 'INVALID_INPUT:compression-mismatch', 'zstd bytes under a gzip media type');
  t.equal(await reason(all(gzipSync(data), 'gzip', { maxBytes: 1_000_000 })), 'INVALID_INPUT:unpacked-size', 'over --max-unpacked-size');
  const cut = gzipSync(randomBytes(200_000)).subarray(0, 50_000);
  t.equal(await reason(all(cut, 'gzip')), 'INVALID_INPUT:not-a-tar', 'a cut gzip stream');
  const damaged = Buffer.from(zstdOf(randomBytes(200_000)));
  damaged.fill(0x55, 100, 5000);
  t.equal(await reason(all(damaged, 'zstd', { zstdTool: true })), 'INVALID_INPUT:not-a-tar', 'a damaged zstd stream, through the tool');
  // 200 MiB of zeros packs to a few KiB: stopped once past 64 MiB of plain bytes, never unpacked whole.
  const bomb = zstdOf(Buffer.alloc(200 * 1024 * 1024), 19);
  t.ok(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes`);
  t.equal(await reason(all(bomb, 'zstd', { zstdTool: true })), 'INVALID_INPUT:ratio', 'a zstd bomb, through the tool');
  t.equal(await reason(all(bomb, 'zstd')), 'INVALID_INPUT:ratio', "a zstd bomb, the runtime's way");
});

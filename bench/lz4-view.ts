/**
 * The LZ4 view on real kernels (docs/design/lz4-legacy.md §5-6): takes x86 bzImages, cuts the
 * payload out by the boot protocol header, decodes the LZ4 legacy frame with decodeLz4Legacy,
 * re-encodes it with encodeLz4Legacy at `--level` (default 9, the kernel's) and says whether the
 * bytes are identical, with both times; with `lz4` on PATH also the C tool's time for the same.
 *
 *   cd /tmp/k && apt-get download linux-image-6.1.0-56-cloud-amd64 && dpkg-deb -x linux-image-*.deb .
 *   nice -n 10 /usr/bin/time -f '%e s %M KB' node --import tsx bench/lz4-view.ts /tmp/k/boot/vmlinuz-*
 *   nice -n 10 /usr/bin/time -f '%e s %M KB' node_modules/.bin/bun bench/lz4-view.ts /tmp/k/boot/vmlinuz-*
 *
 * One JSON line per kernel on stdout. Exits 1 if a kernel is not rebuilt byte for byte.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeLz4Legacy, encodeLz4Legacy, LZ4_LEGACY_MAGIC } from '../src/delta/view/lz4.ts';

const args = process.argv.slice(2);
const levelAt = args.indexOf('--level');
const level = levelAt >= 0 ? Number(args.splice(levelAt, 2)[1]) : 9;
if (args.length === 0) {
  console.error('usage: bench/lz4-view.ts [--level N] VMLINUZ...');
  process.exit(2);
}

/** The LZ4 legacy frame inside a bzImage: the payload (boot protocol ≥ 2.08) minus Kbuild's 4-byte size_append. */
function payloadFrame(image: Uint8Array, path: string): { frame: Uint8Array; declaredSize: number } {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint32(0x202, true) !== 0x53726448) throw new Error(`${path}: no "HdrS" at 0x202: not an x86 bzImage`);
  const setupSects = image[0x1f1];
  const start = (setupSects + 1) * 512 + view.getUint32(0x248, true);
  const length = view.getUint32(0x24c, true);
  const payload = image.subarray(start, start + length);
  if (payload.length !== length || view.getUint32(start, true) !== LZ4_LEGACY_MAGIC) throw new Error(`${path}: the payload at ${start} is not an LZ4 legacy frame`);
  return { frame: payload.subarray(0, length - 4), declaredSize: view.getUint32(start + length - 4, true) };
}

const ms = (t0: number) => Math.round(performance.now() - t0);
let failed = false;
for (const path of args) {
  const { frame, declaredSize } = payloadFrame(new Uint8Array(readFileSync(path)), path);
  let t0 = performance.now();
  const { data, blocks } = decodeLz4Legacy(frame);
  const decodeMs = ms(t0);
  t0 = performance.now();
  const again = encodeLz4Legacy(data, level);
  const encodeMs = ms(t0);
  const identical = Buffer.compare(Buffer.from(again.buffer, again.byteOffset, again.length), Buffer.from(frame.buffer, frame.byteOffset, frame.length)) === 0;
  let cMs: number | null = null;
  let cIdentical: boolean | null = null;
  t0 = performance.now();
  const c = spawnSync('lz4', ['-q', '-l', `-${level}`, '-c'], { input: data, maxBuffer: 1 << 30 });
  if (c.status === 0) {
    cMs = ms(t0);
    cIdentical = Buffer.compare(c.stdout, Buffer.from(frame.buffer, frame.byteOffset, frame.length)) === 0;
  }
  failed ||= !identical;
  console.log(JSON.stringify({ kernel: path, runtime: 'Bun' in globalThis ? 'bun' : `node ${process.version}`, level, frame_bytes: frame.length, decoded_bytes: data.length, size_append_matches: declaredSize === data.length, blocks, decode_ms: decodeMs, encode_ms: encodeMs, identical, c_lz4_ms_with_pipe: cMs, c_lz4_identical: cIdentical }));
}
process.exit(failed ? 1 : 0);

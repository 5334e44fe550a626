/**
 * The bundle fetcher (src/agent/remote/bundle-fetch.ts): members read by repo path, resumed
 * into the download directory and checked there against the index, the caps of every fetcher
 * (maxBytes, expectedSize, NOT_FOUND), and a member damaged on the stick refused by name.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LarchError } from '../../../src/errors.ts';
import { encodeBundleIndex } from '../../../src/protocol/bundle.ts';
import { bundleFetcher } from '../../../src/agent/remote/bundle-fetch.ts';

const dir = mkdtempSync(join(tmpdir(), 'larch-bundle-fetch-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const part = Buffer.alloc(600 * 1024, 7); // more than one read
part.write('the part', 1000);
const files: [string, Buffer][] = [['summary', Buffer.from('summary bytes')], ['summary.sig', Buffer.from('sig')], [`deltas/empty-${'b'.repeat(64)}/part-0`, part]];
const { header, order } = encodeBundleIndex(files.map(([path, b]) => ({ path, size: b.length, sha256: sha(b) })));
const bytes = Buffer.concat([header, ...order.map((p) => files.find(([q]) => q === p)![1])]);
const file = join(dir, 'update.larchb');
writeFileSync(file, bytes);
const code = async (p: Promise<unknown>) => p.then(() => 'ok', (e) => (e instanceof LarchError ? `${e.code}${e.data.reason ? `:${e.data.reason}` : ''}` : String(e)));

t.test('members by repo path; downloads resume and are checked on the device', async (t) => {
  const f = await bundleFetcher(file);
  t.same(Buffer.from(await f.fetchBytes('summary', { maxBytes: 100 })), files[0]![1]);
  const dest = join(dir, 'part-0');
  writeFileSync(dest, part.subarray(0, 5000)); // an earlier run stopped here
  const r = await f.downloadFile(files[2]![0], dest, { maxBytes: part.length, expectedSize: part.length });
  t.match(r, { bytes: part.length, resumedFromBytes: 5000 });
  t.same(readFileSync(dest), part, 'the whole part, resumed');
  t.equal(await code(f.fetchBytes('trust/1.cbor', { maxBytes: 100 })), 'NOT_FOUND');
  t.equal(await code(f.fetchBytes('summary', { maxBytes: 5 })), 'INVALID_INPUT:too-large');
  t.equal(await code(f.fetchBytes('summary', { maxBytes: 100, expectedSize: 3 })), 'INVALID_INPUT');
  const ac = new AbortController();
  ac.abort(new LarchError('IO', 'cancelled', { data: { reason: 'cancelled' } }));
  t.equal(await code(f.exchange(ac.signal, (g) => g.fetchBytes('summary', { maxBytes: 100 }))), 'IO:cancelled', 'an aborted exchange reads nothing');
});

t.test('a member damaged after the index was read, and damaged files', async (t) => {
  const f = await bundleFetcher(file);
  const damaged = Buffer.from(bytes);
  damaged[header.length + 1000] ^= 1; // in the part (the first member: 'deltas/...' sorts first)
  writeFileSync(file, damaged);
  const dest = join(dir, 'part-0-again');
  t.equal(await code(f.downloadFile(files[2]![0], dest, { maxBytes: part.length })), 'INVALID_INPUT:bundle-member', 'the copy on the device is checked');
  t.equal(readFileSync(dest).length, 0, 'the damaged copy is dropped: a later run does not resume after it');
  writeFileSync(file, bytes.subarray(0, bytes.length - 1));
  t.equal(await code(bundleFetcher(file)), 'INVALID_INPUT:bundle-index', 'a cut bundle');
  writeFileSync(file, Buffer.from('LARCHDLT and the rest'));
  t.equal(await code(bundleFetcher(file)), 'INVALID_INPUT:not-a-bundle');
  t.equal(await code(bundleFetcher(join(dir, 'none.larchb'))), 'NOT_FOUND');
  writeFileSync(file, bytes);
});

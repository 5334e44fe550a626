/**
 * The bundle file's framing and index (src/protocol/bundle.ts, docs/formats.md §8.7): a round
 * trip, every way an index can lie (a gap, an overlap, unsorted or twice, a path no device
 * fetches, bytes after the last file, a file past the end), and every cut of the header and
 * index refused with a reason, never read past.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { LarchError } from '../../../src/errors.ts';
import { encodeCanonical } from '../../../src/store/cbor.ts';
import { BUNDLE_HEADER_BYTES, decodeBundleIndex, encodeBundleIndex, isBundle, isBundlePath } from '../../../src/protocol/bundle.ts';

const ID_A = 'a'.repeat(64);
const ID_B = 'b'.repeat(64);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const files: Record<string, Uint8Array> = {
  summary: Buffer.from('summary bytes'),
  'summary.sig': Buffer.from('sig'),
  'trust/1.cbor': Buffer.from('trust one'),
  [`deltas/${ID_A}-${ID_B}/envelope`]: Buffer.from('envelope'),
  [`deltas/${ID_A}-${ID_B}/part-0`]: Buffer.from('part zero'),
  [`deltas/empty-${ID_B}/part-10`]: Buffer.from(''),
};

function bundle(list = Object.entries(files)): Uint8Array {
  const { header, order } = encodeBundleIndex(list.map(([path, b]) => ({ path, size: b.length, sha256: sha(b) })));
  const byPath = new Map(list);
  return Buffer.concat([header, ...order.map((p) => byPath.get(p)!)]);
}

/** A bundle whose index is this CBOR value, followed by `data`. */
function raw(index: unknown, data: Uint8Array, format = 1): Uint8Array {
  const body = encodeCanonical(index as never);
  const head = Buffer.alloc(BUNDLE_HEADER_BYTES);
  head.write('LARCHBDL', 0, 'latin1');
  head.writeUInt32BE(format, 8);
  head.writeUInt32BE(body.length, 12);
  return Buffer.concat([head, body, data]);
}
const entry = (path: string, offset: number, size: number) => [path, offset, size, new Uint8Array(32)];
const reason = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof LarchError ? `${e.code}:${e.data.reason}` : `thrown: ${(e as Error).message}`;
  }
  return 'accepted';
};

t.test('round trip: every file at its offset, its hash the index says', async (t) => {
  const b = bundle();
  t.ok(isBundle(b));
  const index = decodeBundleIndex(b, b.length);
  t.same(index.files.map((f) => f.path), Object.keys(files).sort(), 'sorted by path');
  for (const f of index.files) {
    const bytes = b.subarray(index.dataOffset + f.offset, index.dataOffset + f.offset + f.size);
    t.same(Buffer.from(bytes), Buffer.from(files[f.path]!), `${f.path}: its bytes`);
    t.equal(f.sha256, sha(bytes), `${f.path}: its hash`);
  }
  t.same(bundle(Object.entries(files).reverse()), b, 'the same bundle from the files in any order');
});

t.test('paths: only what a device fetches', async (t) => {
  for (const p of ['summary', 'summary.sig', 'trust/7.cbor', `deltas/${ID_A}-${ID_B}/part-3`, `deltas/empty-${ID_B}/envelope`]) t.ok(isBundlePath(p), p);
  for (const p of ['', '/summary', '../summary', 'trust/0.cbor', 'trust/01.cbor', `deltas/${ID_A}-${ID_B}/part-01`, `deltas/${ID_A}/envelope`, `deltas/${ID_A}-${ID_B}/../../etc/passwd`, 'objects/aa/bb.commit', 'summary\n']) t.notOk(isBundlePath(p), JSON.stringify(p));
  t.throws(() => encodeBundleIndex([{ path: 'objects/x', size: 1, sha256: '00'.repeat(32) }]), /no file a device fetches/);
});

t.test('an index that lies is refused, naming why', async (t) => {
  const data = Buffer.alloc(10);
  const idx = (entries: unknown[]) => new Map<unknown, unknown>([['format', 1], ['files', entries]]);
  const ok = [entry('summary', 0, 6), entry('summary.sig', 6, 4)];
  t.equal(reason(() => decodeBundleIndex(raw(idx(ok), data), 16 + encodeCanonical(idx(ok) as never).length + 10)), 'accepted', 'the well-formed one');
  const cases: [string, unknown, number, string][] = [
    ['a gap', idx([entry('summary', 0, 5), entry('summary.sig', 6, 4)]), 10, 'INVALID_INPUT:bundle-index'],
    ['an overlap', idx([entry('summary', 0, 7), entry('summary.sig', 6, 4)]), 10, 'INVALID_INPUT:bundle-index'],
    ['unsorted', idx([entry('summary.sig', 0, 4), entry('summary', 4, 6)]), 10, 'INVALID_INPUT:bundle-index'],
    ['a path twice', idx([entry('summary', 0, 5), entry('summary', 5, 5)]), 10, 'INVALID_INPUT:bundle-index'],
    ['a path no device fetches', idx([entry('objects/aa/x.file', 0, 4), entry('summary', 4, 6)]), 10, 'INVALID_INPUT:bundle-path'],
    ['bytes after the last file', idx([entry('summary', 0, 5), entry('summary.sig', 5, 4)]), 10, 'INVALID_INPUT:bundle-index'],
    ['a file past the end', idx([entry('summary', 0, 6), entry('summary.sig', 6, 40)]), 10, 'INVALID_INPUT:bundle-index'],
    ['no summary.sig', idx([entry('summary', 0, 10)]), 10, 'INVALID_INPUT:bundle-index'],
    ['a short hash', idx([['summary', 0, 6, new Uint8Array(31)], entry('summary.sig', 6, 4)]), 10, 'INVALID_INPUT:bundle-index'],
    ['another format key', new Map<unknown, unknown>([['format', 2], ['files', ok]]), 10, 'INVALID_INPUT:bundle-index'],
    ['not a map', ok, 10, 'INVALID_INPUT:bundle-index'],
  ];
  for (const [what, index, dataBytes, want] of cases) {
    const b = raw(index, Buffer.alloc(dataBytes));
    t.equal(reason(() => decodeBundleIndex(b, b.length)), want, what);
  }
  const b = raw(idx(ok), data, 2);
  t.equal(reason(() => decodeBundleIndex(b, b.length)), 'INVALID_INPUT:bundle-format', 'format 2');
  const bad = Buffer.from(bundle());
  bad.write('LARCHDLT', 0, 'latin1');
  t.equal(reason(() => decodeBundleIndex(bad, bad.length)), 'INVALID_INPUT:not-a-bundle', 'a one-file delta is not a bundle');
  const huge = Buffer.from(bundle());
  huge.writeUInt32BE(2 * 1024 * 1024, 12);
  t.equal(reason(() => decodeBundleIndex(huge, huge.length)), 'INVALID_INPUT:too-large', 'an index over 1 MiB is not read');
});

t.test('every cut of the header and index: refused with a reason, never read past', async (t) => {
  const b = bundle();
  const index = decodeBundleIndex(b, b.length);
  const seen = new Set<string>();
  for (let cut = 0; cut < index.dataOffset; cut++) {
    const r = reason(() => decodeBundleIndex(b.subarray(0, cut), b.length));
    seen.add(r);
    if (!r.startsWith('INVALID_INPUT:')) t.fail(`cut at ${cut}: ${r}`);
  }
  t.same([...seen].sort(), ['INVALID_INPUT:bundle-index', 'INVALID_INPUT:not-a-bundle'], `${index.dataOffset} cuts, each refused`);
  for (const size of [index.dataOffset - 1, b.length - 1, b.length + 1]) t.equal(reason(() => decodeBundleIndex(b, size)), 'INVALID_INPUT:bundle-index', `a file of ${size} bytes (the bundle is ${b.length})`);
});

import t from 'tap';
import { ByteReader, StreamEndedError } from '../../../src/delta/byte-reader.ts';
import {
  type Superblock,
  DeltaFormatError,
  PART_HEADER_BYTES,
  partHeaderBytes,
  PREAMBLE_BYTES,
  RECORD_LENGTH_BYTES,
  decodePartHeader,
  decodePreamble,
  decodeRecord,
  decodeRecordLength,
  decodeSuperblock,
  deltaFileBytes,
  encodePart,
  encodePartHeader,
  encodePreamble,
  encodeRecord,
  encodeSuperblock,
} from '../../../src/delta/format.ts';
import { planSources } from '../../../src/delta/plan.ts';

const id = (c: string) => c.repeat(64);

t.test('superblock round trip, and malformed ones refused', async (t) => {
  const sb: Superblock = {
    format: 1,
    from: id('a'),
    to: id('b'),
    commit: Uint8Array.from([1, 2, 3]),
    commitSigs: null,
    created: 1767225600,
    parts: [{ size: 100, sha256: id('c'), raw: 1000, objects: [{ kind: 'file', id: id('d') }, { kind: 'dirtree', id: id('e') }] }],
  };
  const bytes = encodeSuperblock(sb);
  t.same(decodeSuperblock(bytes), sb);
  t.same(decodeSuperblock(encodeSuperblock({ ...sb, from: null })).from, null, 'from-scratch');
  t.throws(() => decodeSuperblock(bytes.subarray(0, bytes.length - 1)), DeltaFormatError, 'truncated');
  t.throws(() => decodeSuperblock(Uint8Array.from([0xa0])), DeltaFormatError, 'empty map');
});

t.test('preamble', async (t) => {
  t.equal(decodePreamble(encodePreamble(1234)), 1234);
  t.throws(() => decodePreamble(Buffer.from('NOTDELTA00000000')), /bad magic/);
  const big = encodePreamble(0);
  big.writeUInt32BE(0xffffffff, 12);
  t.throws(() => decodePreamble(big), /over the .*-byte limit/);
});

t.test('preamble bytes, and the file size it starts', async (t) => {
  t.equal(encodePreamble(0x0102).toString('hex'), Buffer.from('LARCHDLT').toString('hex') + '00000001' + '00000102', 'magic, format 1, length');
  t.equal(PREAMBLE_BYTES, encodePreamble(0).length);
  t.equal(deltaFileBytes(100, [{ size: 7 }, { size: 5 }]), 16 + 100 + 12);
});

t.test('part header: bytes, round trip, and lengths that do not fill the part refused', async (t) => {
  const part = encodePart(1, Uint8Array.from([1, 2]), null, Uint8Array.from([3]), new Uint8Array(0));
  t.equal(part.toString('hex'), '00000002' + '00000001' + '00000000' + '010203', 'u32be control, diff, literal lengths, then the streams');
  t.same(decodePartHeader(part.subarray(0, PART_HEADER_BYTES), part.length, 1), { control: 2, runs: 0, diff: 1, literal: 0 });
  t.same(decodePartHeader(part.subarray(0, PART_HEADER_BYTES), part.length, 2), { control: 2, runs: 0, diff: 1, literal: 0 }, 'format 2: the same layout');
  for (const streams of [{ control: 0, runs: 0, diff: 0, literal: 0 }, { control: 0xffffffff, runs: 0, diff: 7, literal: 65536 }]) {
    const size = PART_HEADER_BYTES + streams.control + streams.diff + streams.literal;
    t.same(decodePartHeader(encodePartHeader(streams, 2), size, 2), streams, `round trip ${JSON.stringify(streams)}`);
  }
  t.throws(() => decodePartHeader(part.subarray(0, PART_HEADER_BYTES), part.length + 1, 1), /do not add up/);
  t.throws(() => decodePartHeader(part.subarray(0, 8), part.length, 1), DeltaFormatError, 'a short header');
  t.throws(() => encodePartHeader({ control: 1, runs: 1, diff: 1, literal: 1 }, 2), RangeError, 'a format-2 part has no runs stream');

  const part3 = encodePart(3, Uint8Array.from([1, 2]), Uint8Array.from([9]), Uint8Array.from([3]), new Uint8Array(0));
  t.equal(part3.toString('hex'), '00000002' + '00000001' + '00000001' + '00000000' + '01020903', 'format 3: u32be control, runs, diff, literal lengths, then the streams in that order');
  t.equal(partHeaderBytes(3), 16, 'format 3: a 16-byte header');
  t.same(decodePartHeader(part3.subarray(0, 16), part3.length, 3), { control: 2, runs: 1, diff: 1, literal: 0 });
  t.throws(() => decodePartHeader(part3.subarray(0, 16), part3.length - 1, 3), /do not add up/, 'format 3: lengths must fill the part');
  t.throws(() => decodePartHeader(part3.subarray(0, 12), part3.length, 3), DeltaFormatError, 'format 3: a 12-byte header is short');
});

t.test('control records round trip; bad ones refused', async (t) => {
  const recs = [
    { type: 'metadata' as const, kind: 'dirtree' as const, length: 77 },
    { type: 'file' as const, header: Uint8Array.from([0xa0]), source: null },
    { type: 'file' as const, header: Uint8Array.from([0xa0]), source: id('4') },
  ];
  for (const r of recs) t.same(decodeRecord(encodeRecord(r).subarray(4), false), r, r.type);
  const ops = { type: 'ops' as const, ops: [[10, 2, -5], [0, 0, 0], [2 ** 40, 300, -(2 ** 33)]] as [number, number, number][] };
  t.same(decodeRecord(encodeRecord(ops).subarray(4), true), ops, 'ops, large values and negative seeks');
  t.same([...encodeRecord({ type: 'ops', ops: [[1, 2, -3]] }).subarray(4)], [1, 1, 2, 5], 'ops layout: count, diffLens, extraLens, zigzag seeks');
  t.throws(() => encodeRecord({ type: 'ops', ops: [[-1, 0, 0]] }), RangeError, 'negative length cannot be encoded');
  t.throws(() => decodeRecord(Uint8Array.from([2, 1]), true), DeltaFormatError, 'truncated op record');
  t.throws(() => decodeRecord(Uint8Array.from([1, 1, 1, 1, 9]), true), DeltaFormatError, 'trailing bytes');
  t.throws(() => decodeRecord(Uint8Array.from([0x82, 0x07, 0x00]), false), DeltaFormatError, 'unknown kind');
});

async function* chunks(data: Uint8Array, cuts: number[]) {
  let at = 0;
  for (const c of [...cuts, data.length]) {
    yield data.subarray(at, c);
    at = c;
  }
}

t.test('record length prefix', async (t) => {
  const framed = encodeRecord({ type: 'metadata', kind: 'dirmeta', length: 5 });
  t.equal(decodeRecordLength(framed.subarray(0, RECORD_LENGTH_BYTES)), framed.length - RECORD_LENGTH_BYTES);
  t.throws(() => decodeRecordLength(Buffer.from('ffffffff', 'hex')), /over the limit/);
});

t.test('ByteReader gives the same bytes at every split point (1-, 2- and 3-way)', async (t) => {
  const data = Uint8Array.from({ length: 23 }, (_, i) => (i * 37) & 0xff);
  const reads = [3, 0, 7, 1, 12];
  const expected = (() => {
    const out: number[][] = [];
    let at = 0;
    for (const n of reads) {
      out.push([...data.subarray(at, at + n)]);
      at += n;
    }
    return out;
  })();
  const splits: number[][] = [[]];
  for (let i = 0; i <= data.length; i++) splits.push([i]);
  for (let i = 0; i <= data.length; i++) for (let j = i; j <= data.length; j += 3) splits.push([i, j]);
  for (const cuts of splits) {
    const r = new ByteReader(chunks(data, cuts), 'test');
    const got: number[][] = [];
    for (const n of reads) got.push([...(await r.read(n))]);
    if (JSON.stringify(got) !== JSON.stringify(expected)) t.fail(`split ${cuts.join(',')}`);
    t.ok(await r.atEnd(), `split ${cuts.join(',')}: at end`);
  }
  await t.rejects(new ByteReader(chunks(data, [5]), 'short').read(24), StreamEndedError, 'reading past the end');
});

t.test('planSources: same path, renamed version directories, same name', async (t) => {
  const old = [
    { path: '/usr/bin/tool', id: 'o1', size: 1000 },
    { path: '/lib/modules/6.1.0-25-amd64/kernel/x.ko', id: 'o2', size: 5000 },
    { path: '/usr/share/doc/a/changelog.gz', id: 'o3', size: 300 },
    { path: '/opt/other/libfoo.so.1.2.3', id: 'o4', size: 4000 },
  ];
  const neu = [
    { path: '/usr/bin/tool', id: 'n1', size: 1100 },
    { path: '/lib/modules/6.1.0-26-amd64/kernel/x.ko', id: 'n2', size: 5100 },
    { path: '/usr/lib/libfoo.so.1.2.4', id: 'n3', size: 4100 },
    { path: '/usr/bin/brand-new', id: 'n4', size: 900 },
    { path: '/tiny', id: 'n5', size: 10 },
  ];
  const plan = planSources(old, neu);
  t.equal(plan.get('n1')?.id, 'o1', 'same path');
  t.equal(plan.get('n2')?.id, 'o2', 'kernel module in a renamed directory');
  t.equal(plan.get('n3')?.id, 'o4', 'same name with another version, elsewhere');
  t.notOk(plan.has('n4'), 'nothing similar');
  t.notOk(plan.has('n5'), 'too small to patch');
});

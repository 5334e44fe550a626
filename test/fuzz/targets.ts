/**
 * The fuzz targets: one per parser that reads untrusted bytes. Each names the function it drives,
 * where its valid seeds come from, and what it checks beyond the harness's rules (harness.ts:
 * only a LarchError or the listed decoder error, bounded time, no allocation by a declared size).
 * docs/reliability.md (fuzzing) lists them.
 */
import { brotliCompressSync, brotliDecompressSync, constants as zlib, deflateRawSync, gzipSync } from 'node:zlib';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import * as tar from 'tar-stream';
import { stringify as stringifyToml } from 'smol-toml';
import { parseFwEnvConfig, formatFwEnvConfig } from '../../src/bootcount/fw-env-config.ts';
import { decodeGrubenv, encodeGrubenv } from '../../src/bootcount/grubenv.ts';
import { decodeEnv, encodeCopy, parseEnvText, type UbootEnvLayout } from '../../src/bootcount/uboot-env.ts';
import { crc32 } from '../../src/bootcount/_crc32.ts';
import { parseDefinition } from '../../src/compose/definition.ts';
import { openDelta, applyDelta } from '../../src/delta/apply.ts';
import { DeltaFormatError, decodeRecord, decodeSuperblock, encodeRecord, encodeSuperblock, encodeEnvelope, encodePreamble, type ControlRecord, type Superblock, decodeEnvelope, decodePreamble } from '../../src/delta/format.ts';
import { openDeltaFile } from '../../src/delta/source.ts';
import { ByteReader, StreamEndedError } from '../../src/delta/byte-reader.ts';
import { ZeroRunError, ZeroRunReader, encodeZeroRuns } from '../../src/delta/zero-runs.ts';
import { ViewError } from '../../src/delta/view/errors.ts';
import { LZ4_LEGACY_BLOCK_BYTES, compressLz4Block, decodeLz4Block, decodeLz4Legacy, encodeLz4Legacy } from '../../src/delta/view/lz4.ts';
import type { Segment } from '../../src/delta/view/segment.ts';
import { deflateViewOutputLength, huffDeflate, puffDeflate } from '../../src/delta/view/deflate.ts';
import { parseRetryAfter } from '../../src/agent/remote/http-fetch.ts';
import { LarchError } from '../../src/errors.ts';
import { LayerTree, classifyPath } from '../../src/oci/layer-tree.ts';
import { MEDIA, decodeConfig, decodeDockerArchive, decodeIndex, decodeManifest } from '../../src/oci/manifest.ts';
import { readJournal } from '../../src/agent/journal.ts';
import { readFailedReleases } from '../../src/agent/failed-store.ts';
import { parseDaemonConfig } from '../../src/agent/policy.ts';
import { Sysroot } from '../../src/agent/sysroot.ts';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type FetchResponse } from '../../src/mqtt/fetch.ts';
import { MessageFormatError, encodeSigned, formatAnnouncement, formatCommand, openSigned, parseAnnouncement, parseCommand, type Announcement, type DeviceCommand } from '../../src/mqtt/format.ts';
import { NonceLog } from '../../src/mqtt/nonce-log.ts';
import { parseContentRange, parseRange } from '../../src/protocol/range.ts';
import { SummaryFormatError, decodeSummary, encodeSummary, signSummary, verifySummary, type Summary } from '../../src/protocol/summary.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from '../../src/store/cbor.ts';
import { importTar } from '../../src/store/import-tar.ts';
import { MAX_METADATA_BYTES, ObjectFormatError, decodeCommit, decodeDirMeta, decodeDirTree, decodeFileHeader, decodeXattrList, encodeCommit, encodeDirMeta, encodeDirTree, encodeFileHeader, validateDirTree, type Commit, type DirMeta, type DirTree, type FileHeader } from '../../src/store/object.ts';
import { Repo } from '../../src/store/repo.ts';
import { Transaction } from '../../src/store/transaction.ts';
import type { SecretKey } from '../../src/store/sign.ts';
import * as ed from '@noble/ed25519';
import { larchOk, ROOT } from '../helpers.ts';
import type { FuzzTarget } from './harness.ts';

const vectors = async (rel: string) => JSON.parse(await readFile(join(ROOT, 'test/vectors', rel), 'utf8'));
const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const utf8 = (b: Uint8Array) => Buffer.from(b).toString('utf8');
const bytes = (s: string) => Uint8Array.from(Buffer.from(s, 'utf8'));

/** The RFC 8032 §7.1 TEST 1 key, as in test/vectors/mqtt and summary: it signs fuzzed bodies so the parsers behind the signature check are reached. */
const TEST_SEED = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
let testKey: SecretKey | null = null;
async function key(): Promise<SecretKey> {
  testKey ??= { seed: TEST_SEED, publicKey: await ed.getPublicKeyAsync(TEST_SEED) };
  return testKey;
}

/** A temp dir per target run, removed by teardown. */
function scratch(): { dir: () => string; setup: () => Promise<void>; teardown: () => Promise<void> } {
  let dir = '';
  return {
    dir: () => dir,
    setup: async () => {
      dir = await mkdtemp(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-fuzz-'));
    },
    teardown: async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- arbitraries of valid values, for round trips ---------------------------

const id = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const safeUint = fc.oneof(fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const name = fc.uint8Array({ minLength: 1, maxLength: 40 }).filter((n) => !n.includes(0) && !n.includes(0x2f) && !(n.length === 1 && n[0] === 0x2e) && !(n.length === 2 && n[0] === 0x2e && n[1] === 0x2e));
const xattrs = fc.uniqueArray(fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 20 }).filter((n) => !n.includes(0)), fc.uint8Array({ maxLength: 40 })), { maxLength: 4, selector: ([n]) => Buffer.from(n).toString('hex') });
const sortedXattrs = xattrs.map((x) => [...x].sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0]))));

const cborValue: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.maxSafeInteger(),
    fc.bigInt({ min: -(2n ** 64n) + 1n, max: 2n ** 64n - 1n }),
    fc.string(),
    fc.uint8Array({ maxLength: 64 }),
    fc.array(tie('v'), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 8 }), tie('v'), { maxKeys: 5 }),
  ),
})).v;

/** The value decodeCanonical gives back for a model value: maps with text keys, small bigints as numbers. */
function expected(v: CborValue): CborValue {
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (Array.isArray(v)) return v.map(expected);
  if (v instanceof Uint8Array || v === null || typeof v !== 'object') return v;
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [expected(k), expected(x)]));
  return new Map(Object.entries(v).sort(([a], [b]) => Buffer.compare(Buffer.from(encodeCanonical(a)), Buffer.from(encodeCanonical(b)))).map(([k, x]) => [k, expected(x)]));
}

const sameBytesDeep = (a: unknown, b: unknown) => isDeepStrictEqual(normalizeBytes(a), normalizeBytes(b));
function normalizeBytes(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(normalizeBytes);
  if (v instanceof Map) return [...v].map(([k, x]) => [normalizeBytes(k), normalizeBytes(x)]);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalizeBytes(x)]));
  return v;
}

function roundTrip<T>(arb: fc.Arbitrary<T>, encode: (x: T) => Uint8Array | string, decode: (b: Uint8Array | string) => unknown, want: (x: T) => unknown = (x) => x) {
  return fc.property(arb, (x) => {
    const got = decode(encode(x));
    if (!sameBytesDeep(got, want(x))) throw new Error(`decode(encode(x)) differs: ${fc.stringify(normalizeBytes(got)).slice(0, 400)}`);
  }) as unknown as fc.IProperty<[unknown]>;
}

// ---- canonical CBOR and the objects -----------------------------------------

const cbor: FuzzTarget = {
  name: 'cbor',
  drives: 'decodeCanonical (src/store/cbor.ts)',
  seeds: async () => (await vectors('cbor/rfc8949.json')).vectors.map((v: { hex: string }) => hex(v.hex)),
  run: (input) => {
    const v = decodeCanonical(input);
    // What it accepts is canonical: it encodes back to the same bytes.
    if (v !== undefined && Buffer.compare(Buffer.from(encodeCanonical(v)), Buffer.from(input)) !== 0) throw new Error('accepted bytes that do not re-encode to themselves');
  },
  neverThrows: true,
  roundTrip: roundTrip(cborValue, encodeCanonical, (b) => decodeCanonical(b as Uint8Array), expected),
};

const objectSeeds = (kind: 'commit' | 'dirtree' | 'dirmeta') => async () => (await vectors('objects/objects.json'))[kind].map((v: { hex: string }) => hex(v.hex));

const commitArb: fc.Arbitrary<Commit> = fc.record({
  root: fc.record({ tree: id, meta: id }),
  parent: fc.option(id, { nil: null }),
  timestamp: safeUint,
  version: fc.string(),
  subject: fc.string(),
  body: fc.string(),
  metadata: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), fc.oneof(fc.string(), fc.nat()), { maxKeys: 3 }).map((o) => new Map(Object.entries(o) as [string, CborValue][])),
});

const objectCommit: FuzzTarget = {
  name: 'object-commit',
  drives: 'decodeCommit (src/store/object.ts); Repo.readCommit, remote/pull.ts and pull-local turn ObjectFormatError into OBJECT_CORRUPT',
  seeds: objectSeeds('commit'),
  run: (input) => decodeCommit(input),
  alsoAllowed: [ObjectFormatError],
  roundTrip: roundTrip(commitArb, (c) => encodeCommit(c), (b) => decodeCommit(b as Uint8Array), (c) => ({ ...c, metadata: new Map([...c.metadata].sort(([a], [b]) => Buffer.compare(Buffer.from(encodeCanonical(a)), Buffer.from(encodeCanonical(b))))) })),
};

const dirTreeArb: fc.Arbitrary<DirTree> = fc.record({
  files: fc.uniqueArray(fc.record({ name, file: id }), { maxLength: 5, selector: (e) => Buffer.from(e.name).toString('hex') }),
  dirs: fc.uniqueArray(fc.record({ name, tree: id, meta: id }), { maxLength: 5, selector: (e) => Buffer.from(e.name).toString('hex') }),
});
const byName = <T extends { name: Uint8Array }>(a: T[]) => [...a].sort((x, y) => Buffer.compare(Buffer.from(x.name), Buffer.from(y.name)));

const objectDirtree: FuzzTarget = {
  name: 'object-dirtree',
  drives: 'decodeDirTree + validateDirTree (src/store/object.ts)',
  seeds: objectSeeds('dirtree'),
  run: (input) => validateDirTree(decodeDirTree(input)),
  alsoAllowed: [ObjectFormatError],
  roundTrip: roundTrip(dirTreeArb, encodeDirTree, (b) => decodeDirTree(b as Uint8Array), (t) => ({ files: byName(t.files), dirs: byName(t.dirs) })),
};

const dirMetaArb: fc.Arbitrary<DirMeta> = fc.record({ mode: fc.integer({ min: 0, max: 0o7777 }), uid: uint32, gid: uint32, xattrs: sortedXattrs });

const objectDirmeta: FuzzTarget = {
  name: 'object-dirmeta',
  drives: 'decodeDirMeta, decodeXattrList (src/store/object.ts)',
  seeds: objectSeeds('dirmeta'),
  run: (input) => {
    try {
      decodeXattrList(input);
    } catch (err) {
      if (!(err instanceof ObjectFormatError)) throw err;
    }
    return decodeDirMeta(input);
  },
  alsoAllowed: [ObjectFormatError],
  roundTrip: roundTrip(dirMetaArb, encodeDirMeta, (b) => decodeDirMeta(b as Uint8Array)),
};

const fileHeaderArb: fc.Arbitrary<FileHeader> = fc.oneof(
  fc.record({ type: fc.constant('reg' as const), mode: fc.integer({ min: 0, max: 0o7777 }), uid: uint32, gid: uint32, size: safeUint, xattrs: sortedXattrs }),
  fc.record({ type: fc.constant('lnk' as const), mode: fc.constant(0o777), uid: uint32, gid: uint32, target: fc.uint8Array({ minLength: 1, maxLength: 100 }).filter((b) => !b.includes(0)), xattrs: sortedXattrs }),
  fc.record({ type: fc.constant('fifo' as const), mode: fc.integer({ min: 0, max: 0o7777 }), uid: uint32, gid: uint32, xattrs: sortedXattrs }),
);

const objectFileHeader: FuzzTarget = {
  name: 'object-file-header',
  drives: 'decodeFileHeader (src/store/object.ts): archive .filez, bare-user .filemeta, delta file records',
  seeds: async () => (await vectors('objects/objects.json')).file_headers.map((v: { header_hex: string }) => hex(v.header_hex)),
  run: (input) => decodeFileHeader(input),
  alsoAllowed: [ObjectFormatError],
  roundTrip: roundTrip(fileHeaderArb, encodeFileHeader, (b) => decodeFileHeader(b as Uint8Array)),
};

// ---- deltas -----------------------------------------------------------------

/** A real one-file delta (two small commits), made once with the CLI under Node. */
interface DeltaFixture {
  dir: string;
  repo: string;
  file: Uint8Array;
  /** Everything before the parts: preamble ‖ envelope. */
  head: Uint8Array;
  sb: Superblock;
  /** Each part's three streams, decompressed: u32 C ‖ u32 D ‖ u32 L ‖ control ‖ diff ‖ literal. */
  rawParts: Uint8Array[];
  baseObjects: Set<string>;
}
let deltaFixture: Promise<DeltaFixture> | null = null;

async function listObjects(repo: string): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(join(repo, 'objects')).catch(() => [])) for (const f of await readdir(join(repo, 'objects', d)).catch(() => [])) out.push(join('objects', d, f));
  return out;
}

export function makeDeltaFixture(): Promise<DeltaFixture> {
  deltaFixture ??= (async () => {
    const dir = await mkdtemp(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-fuzz-delta-'));
    const tree = join(dir, 'tree');
    const repo = join(dir, 'repo');
    await mkdir(join(tree, 'etc'), { recursive: true });
    const big = Buffer.from(Array.from({ length: 1500 }, (_, i) => `line ${i} of a library\n`).join(''));
    await writeFile(join(tree, 'lib.so'), big);
    await writeFile(join(tree, 'etc', 'hostname'), 'device\n');
    await writeFile(join(tree, 'gone'), 'removed in v2\n');
    await larchOk(['init', '--repo', repo, '--mode', 'archive'], { runtime: 'node' });
    const v1 = (await larchOk(['commit', '--repo', repo, '--branch', 'os', '--tree', tree, '--version', '1', '--json'], { runtime: 'node' })).json.commit as string;
    big.write('CHANGED', 3000);
    await writeFile(join(tree, 'lib.so'), Buffer.concat([big, Buffer.from('appended\n')]));
    await writeFile(join(tree, 'new'), 'new in v2\n');
    await rm(join(tree, 'gone'));
    const v2 = (await larchOk(['commit', '--repo', repo, '--branch', 'os', '--tree', tree, '--version', '2', '--json'], { runtime: 'node' })).json.commit as string;
    const out = join(dir, 'delta');
    // --format 2: the three-stream part the corpus inputs of test/vectors/fuzz/delta-part were
    // made for (format 3's runs stream has a target of its own, zero-runs).
    await larchOk(['delta', 'generate', '--repo', repo, '--from', v1, '--to', v2, '--unsigned', '--out', out, '--format', '2'], { runtime: 'node' });
    const file = Uint8Array.from(await readFile(out));
    const envLen = decodePreamble(file.subarray(0, 16));
    const head = file.subarray(0, 16 + envLen);
    const sb = decodeSuperblock(decodeEnvelope(head.subarray(16)).superblock);
    const rawParts: Uint8Array[] = [];
    let at = head.length;
    for (const p of sb.parts) {
      const part = Buffer.from(file.subarray(at, at + p.size));
      at += p.size;
      const lens = [part.readUInt32BE(0), part.readUInt32BE(4), part.readUInt32BE(8)];
      let off = 12;
      const streams = lens.map((n) => {
        const s = n === 0 ? Buffer.alloc(0) : brotliDecompressSync(part.subarray(off, off + n));
        off += n;
        return s;
      });
      const h = Buffer.alloc(12);
      streams.forEach((s, i) => h.writeUInt32BE(s.length, 4 * i));
      rawParts.push(Uint8Array.from(Buffer.concat([h, ...streams])));
    }
    // Back to v1 only: the delta's objects must be missing for apply to interpret its parts.
    await larchOk(['refs', '--repo', repo, '--delete', 'os'], { runtime: 'node' }).catch(() => undefined);
    await rm(join(repo, 'deltas'), { recursive: true, force: true });
    const v2Objects = new Set(sb.parts.flatMap((p) => p.objects.map((o) => o.id)));
    for (const rel of await listObjects(repo)) {
      const objectId = rel.split('/').slice(1).join('').replace(/\..*$/, '');
      if (v2Objects.has(objectId) || objectId === v2) await rm(join(repo, rel), { force: true });
    }
    return { dir, repo, file, head, sb, rawParts, baseObjects: new Set(await listObjects(repo)) };
  })();
  return deltaFixture;
}

const quickBrotli = (b: Uint8Array) => (b.length === 0 ? Buffer.alloc(0) : brotliCompressSync(b, { params: { [zlib.BROTLI_PARAM_QUALITY]: 1, [zlib.BROTLI_PARAM_LGWIN]: 24 } }));

/** Builds a delta file from a part's raw streams (lengths clamped to what is there), with a superblock whose size and sha256 match. */
export async function deltaWithPart(fx: DeltaFixture, raw: Uint8Array, objects = fx.sb.parts[0].objects): Promise<Uint8Array> {
  const b = Buffer.from(raw);
  const lens = [0, 4, 8].map((o) => (b.length >= o + 4 ? b.readUInt32BE(o) : 0));
  let off = Math.min(12, b.length);
  const streams = lens.map((n) => {
    const s = b.subarray(off, Math.min(b.length, off + n));
    off += s.length;
    return quickBrotli(s);
  });
  const head = Buffer.alloc(12);
  streams.forEach((s, i) => head.writeUInt32BE(s.length, 4 * i));
  const part = Buffer.concat([head, ...streams]);
  const { createHash } = await import('node:crypto');
  const sb: Superblock = { ...fx.sb, parts: [{ ...fx.sb.parts[0], objects, size: part.length, sha256: createHash('sha256').update(part).digest('hex') }] };
  const envelope = encodeEnvelope(encodeSuperblock(sb), encodeCanonical([]));
  return Uint8Array.from(Buffer.concat([encodePreamble(envelope.length), envelope, part]));
}

const deltaScratch = scratch();
const deltaHead: FuzzTarget = {
  name: 'delta-superblock',
  drives: 'openDeltaFile (src/delta/source.ts: decodePreamble, decodeEnvelope, decodeSuperblock) then openDelta (src/delta/apply.ts), unsigned allowed so the superblock is read',
  setup: deltaScratch.setup,
  teardown: deltaScratch.teardown,
  seeds: async () => [(await makeDeltaFixture()).head, (await makeDeltaFixture()).file],
  run: async (input) => {
    const path = join(deltaScratch.dir(), 'delta');
    await writeFile(path, input);
    const source = await openDeltaFile(path);
    await openDelta(source, { trusted: null, allowUnsigned: true });
  },
};

/** Segments of view records (formats.md §8.6), valid by construction: an LZ4 frame's blocks add up to its n. */
const segmentArb: fc.Arbitrary<Segment> = fc.oneof(
  fc.record({ codec: fc.constant('raw' as const), n: fc.nat({ max: 2 ** 24 }) }),
  fc.record({ codec: fc.constant('deflate' as const), n: fc.nat({ max: 2 ** 24 }), m: fc.nat({ max: 2 ** 24 }) }),
  fc.integer({ min: 0, max: 3 * LZ4_LEGACY_BLOCK_BYTES }).chain((m) =>
    fc.record({ level: fc.integer({ min: 0, max: 12 }), blocks: fc.array(fc.nat({ max: 2 ** 24 }), { minLength: Math.ceil(m / LZ4_LEGACY_BLOCK_BYTES), maxLength: Math.ceil(m / LZ4_LEGACY_BLOCK_BYTES) }) }).map(({ level, blocks }): Segment => ({ codec: 'lz4-legacy', n: 4 + blocks.reduce((a, c) => a + 4 + c, 0), m, level, blocks })),
  ),
);

const recordArb: fc.Arbitrary<[ControlRecord, boolean]> = fc.oneof(
  fc.record({ type: fc.constant('metadata' as const), kind: fc.constantFrom('dirtree' as const, 'dirmeta' as const), length: fc.nat({ max: MAX_METADATA_BYTES }) }).map((r) => [r, false] as [ControlRecord, boolean]),
  fc.record({ type: fc.constant('file' as const), header: fc.uint8Array({ maxLength: 64 }), source: fc.option(id, { nil: null }) }).map((r) => [r, false] as [ControlRecord, boolean]),
  fc.record({ type: fc.constant('ops' as const), ops: fc.array(fc.tuple(safeUint, safeUint, fc.integer({ min: -(2 ** 52), max: 2 ** 52 - 1 })), { maxLength: 20 }) }).map((r) => [r, true] as [ControlRecord, boolean]),
  fc.record({ type: fc.constant('view-file' as const), header: fc.uint8Array({ maxLength: 64 }), source: id, src: fc.array(segmentArb, { minLength: 1, maxLength: 5 }), dst: fc.array(segmentArb, { minLength: 1, maxLength: 5 }) }).map((r) => [r, false] as [ControlRecord, boolean]),
);

const deltaRecord: FuzzTarget = {
  name: 'delta-record',
  drives: 'decodeRecord (src/delta/format.ts), as object record and as op record; applyPart turns DeltaFormatError into DELTA_CORRUPT',
  seeds: async () => {
    const fx = await makeDeltaFixture();
    // The control stream's records, without their u32 length.
    const raw = Buffer.from(fx.rawParts[0]);
    const control = raw.subarray(12, 12 + raw.readUInt32BE(0));
    const out: Uint8Array[] = [];
    for (let at = 0; at + 4 <= control.length; ) {
      const n = control.readUInt32BE(at);
      out.push(Uint8Array.from(control.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    return out;
  },
  run: (input) => {
    for (const ops of [false, true]) {
      try {
        decodeRecord(input, ops);
      } catch (err) {
        if (!(err instanceof DeltaFormatError)) throw err;
      }
    }
  },
  alsoAllowed: [DeltaFormatError],
  roundTrip: fc.property(recordArb, ([r, ops]) => {
    const got = decodeRecord(encodeRecord(r).subarray(4), ops);
    if (!sameBytesDeep(got, r)) throw new Error(`record differs: ${fc.stringify(normalizeBytes(got))}`);
  }) as unknown as fc.IProperty<[unknown]>,
};

const sbArb: fc.Arbitrary<Superblock> = fc.record({
  format: fc.constantFrom(1 as const, 2 as const),
  from: fc.option(id, { nil: null }),
  to: id,
  commit: fc.uint8Array({ maxLength: 64 }),
  commitSigs: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: null }),
  created: safeUint,
  parts: fc.array(fc.record({ size: safeUint, sha256: id, raw: safeUint, objects: fc.array(fc.record({ kind: fc.constantFrom('file' as const, 'dirtree' as const, 'dirmeta' as const), id }), { maxLength: 4 }) }), { maxLength: 3 }),
});

const deltaSuperblockRoundTrip: FuzzTarget = {
  name: 'delta-superblock-cbor',
  drives: 'decodeSuperblock (src/delta/format.ts) on the superblock bytes alone',
  seeds: async () => [decodeEnvelope((await makeDeltaFixture()).head.subarray(16)).superblock],
  run: (input) => decodeSuperblock(input),
  alsoAllowed: [DeltaFormatError],
  roundTrip: roundTrip(sbArb, encodeSuperblock, (b) => decodeSuperblock(b as Uint8Array)),
};

const deltaApplyScratch = scratch();
const deltaApply: FuzzTarget = {
  name: 'delta-part',
  drives: 'applyDelta (src/delta/apply.ts) on a repo holding the base commit: the part interpreter (control records, bspatch ops, literal reads) over mutated decompressed streams, recompressed, with a matching part checksum',
  setup: deltaApplyScratch.setup,
  teardown: deltaApplyScratch.teardown,
  seeds: async () => (await makeDeltaFixture()).rawParts,
  maxMsPerInput: 3000,
  run: async (input) => {
    const fx = await makeDeltaFixture();
    const path = join(deltaApplyScratch.dir(), 'delta');
    await writeFile(path, await deltaWithPart(fx, input));
    const repo = await Repo.open(fx.repo);
    try {
      await applyDelta(repo, await openDeltaFile(path), { trusted: null, allowUnsigned: true });
    } finally {
      // Back to the base: what a successful (or partial) apply stored would make the next input skip the part.
      for (const rel of await listObjects(fx.repo)) if (!fx.baseObjects.has(rel)) await rm(join(fx.repo, rel), { force: true });
    }
  },
};

// ---- the summary ------------------------------------------------------------

const summaryArb: fc.Arbitrary<Summary> = fc
  .record({
    serial: safeUint,
    created: fc.nat(),
    span: fc.nat(),
    refs: fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), fc.record({ commit: id, version: fc.string(), timestamp: safeUint }), { maxKeys: 3 }),
    deltas: fc.uniqueArray(fc.record({ from: fc.option(id, { nil: null }), to: id, envelope: fc.record({ size: fc.nat(), sha256: id }), parts: fc.array(fc.record({ size: fc.nat(), sha256: id }), { maxLength: 3 }) }), { maxLength: 3, selector: (d) => `${d.from}-${d.to}` }),
  })
  .map(({ span, deltas, refs, ...s }) => ({
    ...s,
    // decodeSummary gives refs as a null-prototype-free plain object; build the same.
    refs: Object.fromEntries(Object.entries(refs)),
    expires: s.created + span,
    deltas: deltas.map((d) => ({ ...d, bytes: d.envelope.size + d.parts.reduce((n, p) => n + p.size, 0) })),
  }));
const sortDeltas = (s: Summary) => ({ ...s, deltas: [...s.deltas].sort((a, b) => (`${a.from ?? 'empty'}-${a.to}` < `${b.from ?? 'empty'}-${b.to}` ? -1 : 1)) });

const summary: FuzzTarget = {
  name: 'summary',
  drives: 'verifySummary (src/protocol/summary.ts), what the device runs on a fetched summary; each input is signed with the trusted test key first, so decodeSummary is reached',
  seeds: async () => (await vectors('summary/summary.json')).vectors.map((v: { summary_hex: string }) => hex(v.summary_hex)),
  run: async (input) => {
    const sig = await signSummary(input, [await key()]);
    await verifySummary(input, sig, { trusted: [(await key()).publicKey], now: 1767225600, lastSerial: 5 });
  },
  roundTrip: roundTrip(summaryArb, encodeSummary, (b) => decodeSummary(b as Uint8Array), sortDeltas),
};

const summarySig: FuzzTarget = {
  name: 'summary-sig',
  drives: 'verifySummary (src/protocol/summary.ts) with mutated summary.sig bytes (decodeSignatures)',
  seeds: async () => (await vectors('summary/summary.json')).vectors.filter((v: { sig_hex?: string }) => v.sig_hex).map((v: { sig_hex: string }) => hex(v.sig_hex)),
  run: async (input) => {
    const v = (await vectors('summary/summary.json')).vectors[0];
    await verifySummary(hex(v.summary_hex), input, { trusted: [(await key()).publicKey], now: 1767225600 });
  },
};
void SummaryFormatError;

// ---- MQTT -------------------------------------------------------------------

const mqttSeeds = (kind: string) => async () => (await vectors('mqtt/messages.json')).vectors.filter((v: { kind: string }) => v.kind === kind).map((v: { payload: string }) => bytes(v.payload));
const mqttBodySeeds = (kind: string) => async () => (await vectors('mqtt/messages.json')).vectors.filter((v: { kind: string; valid: boolean }) => v.kind === kind && v.valid).map((v: { body: string }) => bytes(v.body));

/** What the device does with a signed payload: openSigned, then parse the body when it verifies. */
async function openAndParse(kind: 'announce' | 'command', payload: Uint8Array): Promise<void> {
  const r = await openSigned(kind, payload, [(await key()).publicKey]);
  if (r.ok) (kind === 'announce' ? parseAnnouncement : parseCommand)(r.body);
}

const mqttEnvelope: FuzzTarget = {
  name: 'mqtt-envelope',
  drives: 'openSigned then parseAnnouncement / parseCommand (src/mqtt/format.ts) on mutated whole payloads',
  seeds: async () => [...(await mqttSeeds('announce')()), ...(await mqttSeeds('command')())],
  run: async (input) => {
    await openAndParse('announce', input);
    await openAndParse('command', input);
  },
  alsoAllowed: [MessageFormatError],
};

const announceArb: fc.Arbitrary<Announcement> = fc.record({
  ref: fc.stringMatching(/^[a-z0-9]{1,10}(\/[a-z0-9]{1,10}){0,2}$/),
  commit: id,
  version: fc.string({ minLength: 1, maxLength: 20 }),
  timestamp: safeUint,
  summarySerial: safeUint,
  rollout: fc.integer({ min: 0, max: 100 }),
  created: safeUint,
});
const commandBase = {
  device: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/),
  nonce: fc.stringMatching(/^[A-Za-z0-9_-]{16,64}$/),
  issued: safeUint,
  expires: safeUint,
};
// Each command with the arguments it takes (formats.md §13.3), and none for the others.
const commandArb: fc.Arbitrary<DeviceCommand> = fc.oneof(
  fc.record({ cmd: fc.constantFrom('check' as const, 'upgrade' as const, 'rollback' as const, 'reboot' as const, 'cleanup' as const, 'pin' as const, 'unpin' as const, 'cancel' as const), ...commandBase }),
  fc.record({ cmd: fc.constant('deploy' as const), ...commandBase, args: fc.record({ version: fc.string({ minLength: 1, maxLength: 128 }), allow_downgrade: fc.boolean(), retry_failed: fc.boolean() }, { requiredKeys: ['version'] }) }),
  fc.record({ cmd: fc.constant('rebase' as const), ...commandBase, args: fc.record({ ref: fc.stringMatching(/^[a-z]{1,8}(\/[a-z]{1,8}){0,2}$/), remote: fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/) }, { requiredKeys: ['ref'] }) }),
  fc.record({ cmd: fc.constantFrom('install' as const, 'uninstall' as const), ...commandBase, args: fc.record({ packages: fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9+.-]{1,30}$/), { minLength: 1, maxLength: 5 }) }) }),
);

/** A signed message's body parser, reached by signing each mutated body with the trusted test key. */
function signedBodyTarget<T>(kind: 'announce' | 'command', parser: string, arb: fc.Arbitrary<T>, format: (x: T) => string, parse: (body: unknown) => unknown): FuzzTarget {
  return {
    name: `mqtt-${kind}`,
    drives: `${parser} (src/mqtt/format.ts) behind openSigned: each mutated body is signed with the trusted test key`,
    seeds: mqttBodySeeds(kind),
    run: async (input) => openAndParse(kind, await encodeSigned(kind, utf8(input), [await key()])),
    alsoAllowed: [MessageFormatError],
    roundTrip: roundTrip(arb, format, (s) => parse(JSON.parse(s as string))),
  };
}
const mqttAnnounce = signedBodyTarget('announce', 'parseAnnouncement', announceArb, formatAnnouncement, parseAnnouncement);
const mqttCommand = signedBodyTarget('command', 'parseCommand', commandArb, formatCommand, parseCommand);

const mqttFetchRequest: FuzzTarget = {
  name: 'mqtt-fetch-request',
  drives: 'decodeRequest (src/mqtt/fetch.ts), the responder side: returns a verdict, never throws',
  seeds: async () => [encodeRequest({ path: 'objects/ab/' + 'ab'.repeat(31) + '.commit', offset: 0, length: 65536 }), encodeRequest({ path: 'summary', offset: 10, length: 1 })],
  run: (input) => {
    const r = decodeRequest(input);
    if (!('error' in r) && !(r.length >= 1 && r.length <= 256 * 1024 && r.offset >= 0)) throw new Error(`accepted a request with length ${r.length}, offset ${r.offset}`);
  },
  neverThrows: true,
  roundTrip: roundTrip(fc.record({ path: fc.constant('summary'), offset: safeUint, length: fc.integer({ min: 1, max: 256 * 1024 }) }), encodeRequest, (b) => decodeRequest(b as Uint8Array)),
};

const responseArb: fc.Arbitrary<FetchResponse> = fc.oneof(
  fc.record({ status: fc.constant('ok' as const), size: safeUint, offset: safeUint, bytes: fc.uint8Array({ maxLength: 200 }) }),
  fc.record({ status: fc.constantFrom('not-found' as const, 'bad-request' as const, 'error' as const), message: fc.string() }),
);

const mqttChunkAnswer: FuzzTarget = {
  name: 'mqtt-chunk-answer',
  drives: 'decodeResponse (src/mqtt/fetch.ts), the device side of a chunk answer',
  seeds: async () => [encodeResponse({ status: 'ok', size: 10, offset: 0, bytes: bytes('0123456789') }), encodeResponse({ status: 'not-found', message: 'no such file' })],
  run: (input) => {
    const r = decodeResponse(input);
    if (r.status === 'ok' && r.bytes.length > input.length) throw new Error('answer carries more bytes than the payload');
  },
  roundTrip: roundTrip(responseArb, encodeResponse, (b) => decodeResponse(b as Uint8Array)),
};

const nonceScratch = scratch();
const nonceLog: FuzzTarget = {
  name: 'nonce-log',
  drives: 'NonceLog.open (src/mqtt/nonce-log.ts): the device file of commands already run',
  setup: nonceScratch.setup,
  teardown: nonceScratch.teardown,
  seeds: async () => [bytes(JSON.stringify({ nonces: { abcdefghijklmnop: 1767225600, ['x'.repeat(20)]: 1767229200 } }))],
  run: async (input) => {
    const path = join(nonceScratch.dir(), 'nonces.json');
    await writeFile(path, input);
    await NonceLog.open(path);
  },
};

// ---- bootloader environments ------------------------------------------------

const envVars = fc
  .dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/), fc.stringMatching(/^[ -<>-~]{1,30}$/), { maxKeys: 6 })
  .map((o) => new Map(Object.entries(o)));

const UBOOT_SINGLE: UbootEnvLayout = { sizeBytes: 0x400, redundant: false };
const UBOOT_REDUNDANT: UbootEnvLayout = { sizeBytes: 0x400, redundant: true };
const ubootSeedVars = new Map([
  ['bootcmd', 'run larch_boot'],
  ['BOOT_ORDER', 'A B'],
  ['BOOT_A_LEFT', '3'],
  ['BOOT_B_LEFT', '3'],
  ['BOOT_A_GOOD', '1'],
]);

/** The copy with its CRC made right, so a mutated data area reaches decodeEntries. */
function withGoodCrc(copy: Uint8Array, redundant: boolean): Uint8Array {
  const out = Uint8Array.from(copy);
  const crc = crc32(out.subarray(redundant ? 5 : 4));
  new DataView(out.buffer).setUint32(0, crc, true);
  return out;
}

const ubootEnv: FuzzTarget = {
  name: 'uboot-env',
  drives: 'decodeEnv (src/bootcount/uboot-env.ts) single-copy and redundant, with the stored CRC and with a recomputed one',
  seeds: () => [encodeCopy(ubootSeedVars, UBOOT_SINGLE), encodeCopy(ubootSeedVars, UBOOT_REDUNDANT, { flags: 7 })],
  run: (input) => {
    // The store reads exactly the configured size: pad or cut to it.
    const copy = new Uint8Array(UBOOT_SINGLE.sizeBytes);
    copy.set(input.subarray(0, copy.length));
    for (const [layout, copies] of [
      [UBOOT_SINGLE, [copy]],
      [UBOOT_SINGLE, [withGoodCrc(copy, false)]],
      [UBOOT_REDUNDANT, [withGoodCrc(copy, true), copy]],
    ] as const) {
      try {
        decodeEnv(copies, layout);
      } catch (err) {
        if (!(err instanceof Error && err.name === 'LarchError')) throw err;
      }
    }
  },
  roundTrip: roundTrip(envVars, (v) => encodeCopy(v, UBOOT_SINGLE), (b) => [...decodeEnv([b as Uint8Array], UBOOT_SINGLE).vars].sort(), (v) => [...v].sort()),
};

const ubootEnvText: FuzzTarget = {
  name: 'uboot-env-text',
  drives: 'parseEnvText (src/bootcount/uboot-env.ts): the defaults file of bootenv init',
  seeds: () => [bytes('# defaults\nbootcmd=run larch_boot\nBOOT_ORDER=A B\nbootdelay=0\n')],
  run: (input) => parseEnvText(utf8(input), 'defaults'),
};

const grubenv: FuzzTarget = {
  name: 'grubenv',
  drives: 'decodeGrubenv (src/bootcount/grubenv.ts)',
  seeds: () => [encodeGrubenv(ubootSeedVars), encodeGrubenv(new Map([['a', 'x\\y\nz']]))],
  run: (input) => decodeGrubenv(input, 'grubenv'),
  roundTrip: roundTrip(envVars, (v) => encodeGrubenv(v), (b) => decodeGrubenv(b as Uint8Array)),
};

const fwEnvConfig: FuzzTarget = {
  name: 'fw-env-config',
  drives: 'parseFwEnvConfig (src/bootcount/fw-env-config.ts)',
  seeds: () => [bytes('# MTD device name\tDevice offset\tEnv. size\tFlash sector size\n/dev/mmcblk0 0x3c0000 0x20000 0x20000 1\n/dev/mmcblk0 0x3e0000 0x20000\n'), bytes('/boot/uboot.env 0x0 0x4000\n')],
  run: (input) => {
    const c = parseFwEnvConfig(utf8(input));
    for (const d of c.devices) if (!(d.envSizeBytes >= 16 && d.envSizeBytes <= 16 * 2 ** 20)) throw new Error(`accepted env size ${d.envSizeBytes}`);
  },
  roundTrip: roundTrip(
    fc.array(fc.record({ path: fc.stringMatching(/^\/dev\/[a-z0-9]{1,8}$/), offset: fc.nat(), envSizeBytes: fc.integer({ min: 16, max: 0x10000 }) }), { minLength: 1, maxLength: 2 }).filter((d) => d.length === 1 || (d[0].envSizeBytes === d[1].envSizeBytes && d[0].path !== d[1].path)),
    (devices) => formatFwEnvConfig({ devices: devices.map((d, i) => ({ ...d, sectorSizeBytes: d.envSizeBytes, sectors: 1, line: i + 1 })) }),
    (s) => parseFwEnvConfig(s as string).devices.map(({ path, offset, envSizeBytes }) => ({ path, offset, envSizeBytes })),
  ),
};

// ---- text and JSON files ----------------------------------------------------

const daemonConf: FuzzTarget = {
  name: 'daemon-conf',
  drives: 'parseDaemonConfig (src/agent/policy.ts): TOML (smol-toml), the key table and the per-value checks',
  seeds: () => [
    bytes('policy = "apply-and-reboot"\ndevice_id = "gw-0042"\nmqtt_url = "mqtts://broker:8883"\njitter_s = 30\nwariness = 0.25\n# comment\n'),
    bytes('reboot_strategy = "periodic"\nreboot_windows = ["Mon,Wed 02:00 60m", "Sat-Sun 23:30 2h",]  # c\nfleet_lock_url = "http://fleetlock.example:8080/"\nfleet_lock_group = "canary.eu-1"\nmetrics_listen = "[::1]:9105"\ntimeout_s = 600\n'),
    // TOML the old subset parser did not take: literal strings, a multi-line array, and what the key checks must refuse (a table, a date, a boolean).
    bytes("policy = 'apply'\nreboot_windows = [\n  'Mon 02:00 1h',\n  \"Tue 03:00 2h\",\n]\n[mqtt]\nurl = 1979-05-27T07:32:00Z\nenabled = true\n"),
  ],
  run: (input) => parseDaemonConfig(utf8(input), 'daemon.conf'),
  // What smol-toml writes from valid settings reads back as those settings: the key table takes every valid value.
  roundTrip: roundTrip(
    fc.record(
      {
        policy: fc.constantFrom('none', 'check', 'download', 'apply', 'apply-and-reboot'),
        device_id: fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/),
        jitter_s: fc.nat(),
        wariness: fc.double({ min: 0, max: 1, noNaN: true }),
        reboot_windows: fc.array(fc.constantFrom('Mon 02:00 1h', 'Sat-Sun 23:30 2h', 'Mon,Wed 00:00 60m'), { maxLength: 3 }),
      },
      { requiredKeys: [] },
    ),
    (x) => stringifyToml(x),
    (s) => parseDaemonConfig(s as string, 'daemon.conf'),
    (x) => ({ ...(x.policy !== undefined && { policy: x.policy }), ...(x.device_id !== undefined && { deviceId: x.device_id }), ...(x.jitter_s !== undefined && { jitterS: x.jitter_s }), ...(x.wariness !== undefined && { wariness: x.wariness }), ...(x.reboot_windows !== undefined && { rebootWindows: x.reboot_windows }) }),
  ),
};

const imageDefinition: FuzzTarget = {
  name: 'image-definition',
  drives: 'parseDefinition (src/compose/definition.ts): TOML (smol-toml) and the field checks',
  seeds: async () => [bytes(await readFile(join(ROOT, 'images/qemu-x86_64-grub.toml'), 'utf8')), bytes(await readFile(join(ROOT, 'images/qemu-arm64-uboot.toml'), 'utf8'))],
  run: (input) => parseDefinition(utf8(input), 'image.toml'),
};

const tarScratch = scratch();
async function makeTar(gzip: boolean): Promise<Uint8Array> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  pack.entry({ name: 'etc', type: 'directory', mode: 0o755 });
  pack.entry({ name: 'etc/hostname', mode: 0o644, uid: 0, gid: 0 }, 'device\n');
  pack.entry({ name: 'bin/sh', type: 'symlink', linkname: 'busybox' });
  pack.entry({ name: 'bin/busybox', mode: 0o755 }, Buffer.alloc(700, 0x41));
  pack.entry({ name: 'bin/ash', type: 'link', linkname: 'bin/busybox' });
  pack.entry({ name: 'run/fifo', type: 'fifo' });
  pack.entry({ name: 'very/long/' + 'n'.repeat(120) + '/name', pax: { 'SCHILY.xattr.user.x': 'v' } }, 'pax\n');
  pack.finalize();
  await done;
  const plain = Buffer.concat(chunks);
  return Uint8Array.from(gzip ? gzipSync(plain) : plain);
}

let tarRepo: Repo | null = null;
const tarImport: FuzzTarget = {
  name: 'tar-import',
  drives: 'importTar (src/store/import-tar.ts, the commit --tar path: tar-stream, pax records, names, links), into a transaction that is then aborted',
  setup: async () => {
    await tarScratch.setup();
    tarRepo = await Repo.init(join(tarScratch.dir(), 'repo'), 'archive');
  },
  teardown: tarScratch.teardown,
  seeds: async () => [await makeTar(false), await makeTar(true)],
  maxMsPerInput: 3000,
  run: async (input) => {
    const path = join(tarScratch.dir(), 'in.tar');
    await writeFile(path, input);
    const txn = await Transaction.begin(tarRepo!);
    try {
      await importTar(txn, path, { xattrs: true });
    } finally {
      await txn.abort();
    }
  },
};

const journalScratch = scratch();
const journal: FuzzTarget = {
  name: 'journal',
  drives: 'readJournal (src/agent/journal.ts): every line it returns has a text time and event',
  setup: journalScratch.setup,
  teardown: journalScratch.teardown,
  seeds: () => [bytes('{"time":"2026-01-01T00:00:00Z","event":"upgrade-start","commit":"ab"}\n{"time":"2026-01-01T00:00:05Z","event":"deployed","slot":"B"}\n{"time":"2026-01-01T0')],
  run: async (input) => {
    const path = join(journalScratch.dir(), 'journal');
    await writeFile(path, input);
    for (const e of await readJournal(path)) if (typeof e.time !== 'string' || typeof e.event !== 'string') throw new Error('returned an entry without time or event');
  },
};

const failedScratch = scratch();
const failedJson: FuzzTarget = {
  name: 'failed-json',
  drives: 'readFailedReleases (src/agent/failed-store.ts): S/larch/failed.json',
  setup: failedScratch.setup,
  teardown: failedScratch.teardown,
  seeds: () => [bytes(JSON.stringify({ format: 1, releases: [{ commit: 'ab'.repeat(32), version: '2', time: '2026-01-01T00:00:00Z', reason: 'fell-back', failed_checks: ['net'], slot: 'B' }] }, null, 2))],
  run: async (input) => {
    const sysroot = new Sysroot(failedScratch.dir());
    await mkdir(sysroot.larchDir, { recursive: true });
    await writeFile(join(sysroot.larchDir, 'failed.json'), input);
    await readFailedReleases(sysroot);
  },
};

const deviceConfigScratch = scratch();
const deviceConfig: FuzzTarget = {
  name: 'device-config',
  drives: 'Sysroot.readConfig (src/agent/sysroot.ts): S/larch/config.json',
  setup: deviceConfigScratch.setup,
  teardown: deviceConfigScratch.teardown,
  seeds: () => [bytes(JSON.stringify({ larch: 1, ref: 'os/stable', bootloader: 'uboot', remote: { url: 'http://repo/', mqtt: { url: 'mqtt://b', passwordFile: 'pw' } } }))],
  run: async (input) => {
    const sysroot = new Sysroot(deviceConfigScratch.dir());
    await mkdir(sysroot.larchDir, { recursive: true });
    await writeFile(sysroot.configPath, input);
    await sysroot.readConfig();
  },
};

// ---- HTTP -------------------------------------------------------------------

const SIZES = [0, 1, 1000, 2 ** 40];

const httpRange: FuzzTarget = {
  name: 'http-range',
  drives: 'parseRange (src/protocol/range.ts), the server side of Range: a verdict that stays inside the file',
  seeds: () => ['bytes=0-99', 'bytes=100-', 'bytes=-500', 'bytes=0-0,5-9', ' bytes=2-1'].map(bytes),
  neverThrows: true,
  run: (input) => {
    for (const size of SIZES) {
      const r = parseRange(utf8(input), size);
      if (r.kind === 'partial' && !(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end) && r.start >= 0 && r.start <= r.end && r.end < size)) throw new Error(`range ${r.start}-${r.end} outside a file of ${size} bytes`);
    }
  },
};

const httpContentRange: FuzzTarget = {
  name: 'http-content-range',
  drives: 'parseContentRange (src/protocol/range.ts), read by the agent (remote/http-fetch.ts) on a 206',
  seeds: () => ['bytes 0-99/1000', 'bytes 5-5/*', 'bytes 0-1099511627775/1099511627776'].map(bytes),
  neverThrows: true,
  run: (input) => {
    const r = parseContentRange(utf8(input));
    if (r && !(r.start >= 0 && r.start <= r.end && (r.size === null || r.end < r.size))) throw new Error(`accepted ${JSON.stringify(r)}`);
  },
};

const httpRetryAfter: FuzzTarget = {
  name: 'http-retry-after',
  drives: 'parseRetryAfter (src/agent/remote/http-fetch.ts), fuzzed as it is (network code)',
  seeds: () => ['120', 'Wed, 21 Oct 2026 07:28:00 GMT', ' 5 '].map(bytes),
  neverThrows: true,
  run: (input) => {
    const r = parseRetryAfter(utf8(input), 1767225600000);
    if (r !== null && !(typeof r === 'number' && r >= 0)) throw new Error(`returned ${r}`);
  },
};

// ---- compressed-stream views (src/delta/view/) ---------------------------------

/** Bytes with runs and repeats as well as noise: what reaches the hash chain's pattern analysis and long matches. */
const lz4Data = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }),
  fc
    .array(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 2000 })).map(([v, n]) => new Uint8Array(n).fill(v))), { maxLength: 30 })
    .map((parts) => {
      // Each part once or repeated, so matches at many distances exist.
      const out: number[] = [];
      for (const [i, p] of parts.entries()) for (let k = 0; k <= i % 3; k++) out.push(...p);
      return Uint8Array.from(out);
    }),
);

const lz4Expand: FuzzTarget = {
  name: 'lz4-expand',
  drives: 'decodeLz4Legacy (src/delta/view/lz4.ts): an LZ4 legacy frame as the view expands it (on the device, the source object\'s kernel payload)',
  seeds: () => [encodeLz4Legacy(bytes('larch larch larch delta delta kernel '.repeat(20)), 9), encodeLz4Legacy(new Uint8Array(3000), 1), encodeLz4Legacy(Uint8Array.from({ length: 700 }, (_, i) => (i * 7) & 0xff), 3)],
  alsoAllowed: [ViewError],
  run: (input) => {
    const { data, blocks } = decodeLz4Legacy(input, 1 << 20);
    if (blocks.reduce((s, b) => s + 4 + b, 4) !== input.length) throw new Error(`blocks ${blocks.join(',')} do not cover the ${input.length}-byte frame`);
    if (data.length > 1 << 20) throw new Error(`decoded ${data.length} bytes past maxDecoded`);
  },
  roundTrip: fc.property(fc.tuple(lz4Data, fc.integer({ min: 1, max: 9 })), ([data, level]) => {
    const got = decodeLz4Legacy(encodeLz4Legacy(data, level)).data;
    if (Buffer.compare(Buffer.from(got), Buffer.from(data)) !== 0) throw new Error(`level ${level}: decode(encode(x)) differs for ${data.length} bytes`);
  }) as unknown as fc.IProperty<[unknown]>,
};

const zeroRuns: FuzzTarget = {
  name: 'zero-runs',
  drives: "ZeroRunReader (src/delta/zero-runs.ts): format 3's runs and diff streams as the patch loop reads them; the first byte splits the input into the two streams, and the diff bytes they hold are added 1000 at a time into a guarded buffer",
  seeds: () => {
    const { runs, bytes: diff } = encodeZeroRuns(Uint8Array.from([0, 0, 0, 5, 0, 6, 0, 0, 0, 7, ...new Uint8Array(300), 1]));
    return [Uint8Array.from([runs.length, ...runs, ...diff]), Uint8Array.from([2, 0, 0, 9]), Uint8Array.from([6, 0x80, 0x80, 0x80, 0x80, 0x80, 1])];
  },
  alsoAllowed: [ZeroRunError, StreamEndedError],
  run: async (input) => {
    if (input.length === 0) return;
    const split = Math.min(input[0] + 1, input.length);
    const runs = input.subarray(1, split);
    const diff = input.subarray(split);
    const once = async function* (b: Uint8Array) {
      if (b.length > 0) yield b;
    };
    const reader = new ZeroRunReader(new ByteReader(once(runs), 'runs'), new ByteReader(once(diff), 'diff'));
    // At most 2^20 bytes, in requests of 1000 added into a buffer of 1000 (a write past it would
    // be lost silently by a typed array: the guard bytes around the window catch it).
    const out = new Uint8Array(1002);
    for (let asked = 0; asked < 1 << 20 && !(await reader.atEnd()); asked += 1000) {
      out[0] = 0x5a;
      out[1001] = 0xa5;
      await reader.addInto(out, 1, 1000);
      if (out[0] !== 0x5a || out[1001] !== 0xa5) throw new Error('the reader wrote outside the 1000 bytes asked for');
    }
  },
  roundTrip: fc.property(fc.tuple(fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })), { maxLength: 2000 }), fc.integer({ min: 1, max: 5 })), ([values, endZeros]) => {
    const diff = Uint8Array.from(values);
    const { runs, bytes } = encodeZeroRuns(diff, endZeros);
    // The synchronous inverse, as the reader computes it: z zeros, then n bytes, per pair.
    const back: number[] = [];
    let at = 0;
    let b = 0;
    while (at < runs.length) {
      const read = () => {
        let v = 0;
        for (let scale = 1; ; scale *= 128) {
          const x = runs[at++];
          v += (x & 0x7f) * scale;
          if (x < 0x80) return v;
        }
      };
      const z = read();
      const n = read();
      for (let i = 0; i < z; i++) back.push(0);
      for (let i = 0; i < n; i++) back.push(bytes[b++]);
    }
    if (b !== bytes.length || Buffer.compare(Buffer.from(back), Buffer.from(diff)) !== 0) throw new Error(`endZeros ${endZeros}: decode(encode(x)) differs for ${diff.length} bytes`);
  }) as unknown as fc.IProperty<[unknown]>,
};

const lz4Fold: FuzzTarget = {
  name: 'lz4-fold',
  drives: 'compressLz4Block then decodeLz4Block (src/delta/view/lz4.ts): the first byte picks the level 1-9, the rest is the block; it must round-trip',
  seeds: () => [Uint8Array.from([9, ...bytes('larch larch larch delta delta kernel '.repeat(10))]), Uint8Array.from([8, ...new Uint8Array(500)]), Uint8Array.from([1, ...bytes('abcabcabcabcabcabc')])],
  neverThrows: true,
  run: (input) => {
    if (input.length === 0) return;
    const level = (input[0] % 9) + 1;
    const src = input.subarray(1);
    const block = compressLz4Block(src, level);
    const back = decodeLz4Block(block, src.length);
    if (Buffer.compare(Buffer.from(back), Buffer.from(src)) !== 0) throw new Error(`level ${level}: the block does not decode to its ${src.length} bytes`);
  },
};

/** The committed PV1 vectors (test/vectors/delta/view/deflate.json): streams and views. */
const deflateVectors = async (): Promise<{ stream: Uint8Array; view: Uint8Array }[]> =>
  ((await vectors('delta/view/deflate.json')) as { vectors: { stream: string; view: string }[] }).vectors.map((v) => ({ stream: hex(v.stream), view: hex(v.view) }));

/** Views of fuzzed streams stay small (a few KB of deflate can declare ~1000x that): a bound for time and allocation. */
const FUZZ_MAX_VIEW = 2 * 1024 * 1024;

const deflateExpand: FuzzTarget = {
  name: 'deflate-expand',
  drives: 'puffDeflate (src/delta/view/deflate.ts): arbitrary bytes as a raw deflate stream; a view it returns must huff back to exactly data[0:used]',
  seeds: async () => (await deflateVectors()).map((v) => v.stream),
  run: (input) => {
    const { view, used } = puffDeflate(input, 0, FUZZ_MAX_VIEW);
    if (used < 1 || used > input.length) throw new Error(`used ${used} of ${input.length} bytes`);
    const back = huffDeflate(view);
    if (Buffer.compare(back, input.subarray(0, used)) !== 0) throw new Error('huff(puff(data)) is not data[0:used]');
  },
  alsoAllowed: [ViewError],
  roundTrip: fc.property(
    fc.oneof(fc.uint8Array({ maxLength: 4000 }), fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 100 })).map(([c, n]) => Uint8Array.from(Buffer.concat(Array<Uint8Array>(n).fill(c))))),
    fc.integer({ min: 0, max: 9 }),
    fc.constantFrom(zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED, zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE, zlib.Z_FIXED),
    fc.integer({ min: 9, max: 15 }),
    fc.integer({ min: 1, max: 9 }),
    (input, level, strategy, windowBits, memLevel) => {
      const stream = Uint8Array.from(deflateRawSync(input, { level, strategy, windowBits, memLevel }));
      const { view, used } = puffDeflate(stream);
      if (used !== stream.length || Buffer.compare(huffDeflate(view), stream) !== 0) throw new Error('huff(puff(stream)) differs from the stream');
      if (deflateViewOutputLength(view) !== input.length) throw new Error('the view declares another output length');
    },
  ) as unknown as fc.IProperty<[unknown]>,
};

const deflateFold: FuzzTarget = {
  name: 'deflate-fold',
  drives: 'huffDeflate and deflateViewOutputLength (src/delta/view/deflate.ts): arbitrary bytes as a PV1 view; what huff emits, puff reads back',
  seeds: async () => (await deflateVectors()).map((v) => v.view),
  run: (input) => {
    const attempt = <T>(fn: () => T): T | ViewError => {
      try {
        return fn();
      } catch (err) {
        if (err instanceof ViewError) return err;
        throw err;
      }
    };
    const length = attempt(() => deflateViewOutputLength(input));
    const out = attempt(() => huffDeflate(input));
    // Both walk the same checks: one accepts the view exactly when the other does.
    if (length instanceof ViewError !== out instanceof ViewError) throw new Error(`deflateViewOutputLength and huffDeflate disagree on a view: ${String(length)} / ${String(out)}`);
    if (out instanceof ViewError) throw out;
    if ((length as number) > input.length) throw new Error(`output length ${String(length)} over the view's ${input.length} bytes`);
    // What huff emits is a stream puff accepts, with the same structure: its view has the same
    // length (the same S_b, U_b of the same lengths) and huffs back to the same bytes.
    const again = puffDeflate(out);
    if (again.used !== out.length || again.view.length !== input.length || Buffer.compare(huffDeflate(again.view), out) !== 0) throw new Error('puff does not read back what huff emitted');
  },
  alsoAllowed: [ViewError],
  maxMsPerInput: 1000,
};

// ---- OCI images (src/oci/) ------------------------------------------------------

const ociDigest = (c: string) => `sha256:${c.repeat(64)}`;
const ociSeeds = () =>
  [
    { schemaVersion: 2, manifests: [{ mediaType: MEDIA.manifest, digest: ociDigest('a'), size: 400, annotations: { 'org.opencontainers.image.ref.name': 'latest' }, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }] },
    { schemaVersion: 2, mediaType: MEDIA.manifest, config: { mediaType: MEDIA.config, digest: ociDigest('c'), size: 900 }, layers: [{ mediaType: MEDIA.layerGzip, digest: ociDigest('d'), size: 1 << 20 }] },
    { architecture: 'amd64', os: 'linux', created: '2026-01-01T00:00:00Z', config: { Labels: { 'org.opencontainers.image.version': '1.0' } }, rootfs: { type: 'layers', diff_ids: [ociDigest('e')] } },
    [{ Config: 'c.json', RepoTags: ['localhost/os:1.0'], Layers: ['l/layer.tar'] }],
  ].map((v) => Uint8Array.from(Buffer.from(JSON.stringify(v))));

const ociManifest: FuzzTarget = {
  name: 'oci-manifest',
  drives: 'decodeIndex, decodeManifest, decodeConfig and decodeDockerArchive (src/oci/manifest.ts) on the same bytes',
  seeds: ociSeeds,
  run: (input) => {
    for (const decode of [decodeIndex, decodeManifest, decodeConfig, decodeDockerArchive]) {
      try {
        decode(input);
      } catch (err) {
        if (!(err instanceof LarchError)) throw err;
      }
    }
  },
};

/**
 * Each line of the input is one layer entry: a kind letter, a space, a path (d: directory,
 * f: file, s: symlink, h PATH\tTARGET: hard link, w: a whiteout or opaque marker path, '-': the
 * next layer). Arbitrary path bytes reach classifyPath and LayerTree; only LarchError may come out,
 * and the flattened tree is written out as the importer would.
 */
const ociLayer: FuzzTarget = {
  name: 'oci-layer',
  drives: 'classifyPath and LayerTree (src/oci/layer-tree.ts): entries, whiteouts, opaque markers and hard links from arbitrary path bytes, then toMTree',
  seeds: () => ['d a\nf a/x\ns l\n-\nw a/.wh.x\nh a/y\ta/x\nw a/.wh..wh..opq\nf a/z', 'f usr/bin/sh\n-\nh bin/sh\tusr/bin/sh\nw .wh.usr', 'd .\n-\nw .wh..wh.plnk/1\nf ../x'].map((s) => Uint8Array.from(Buffer.from(s))),
  run: (input) => {
    const tree = new LayerTree({ mode: 0o40755, uid: 0, gid: 0, xattrs: [] });
    tree.beginLayer();
    const id = 'ab'.repeat(32);
    for (const line of Buffer.from(input).toString('latin1').split('\n')) {
      const kind = line[0];
      const rest = Buffer.from(line.slice(2), 'latin1');
      if (kind === '-') tree.beginLayer();
      else if (kind === 'd') tree.add({ path: rest, type: 'dir', meta: { mode: 0o40700, uid: 0, gid: 0, xattrs: [] } });
      else if (kind === 'f') tree.add({ path: rest, type: 'reg', id, size: 1 });
      else if (kind === 's') tree.add({ path: rest, type: 'lnk', id, size: 0, linkName: '/' });
      else if (kind === 'h') {
        const tab = rest.indexOf(0x09);
        tree.add({ path: tab < 0 ? rest : rest.subarray(0, tab), type: 'hardlink', target: tab < 0 ? rest : rest.subarray(tab + 1) });
      } else if (kind === 'w') {
        const k = classifyPath(rest).kind;
        if (k === 'whiteout' || k === 'opaque') tree.whiteout(rest);
      }
    }
    tree.toMTree();
  },
};

export const TARGETS: FuzzTarget[] = [
  cbor,
  objectCommit,
  objectDirtree,
  objectDirmeta,
  objectFileHeader,
  deltaHead,
  deltaSuperblockRoundTrip,
  deltaRecord,
  deltaApply,
  summary,
  summarySig,
  mqttEnvelope,
  mqttAnnounce,
  mqttCommand,
  mqttFetchRequest,
  mqttChunkAnswer,
  nonceLog,
  ubootEnv,
  ubootEnvText,
  grubenv,
  fwEnvConfig,
  daemonConf,
  imageDefinition,
  tarImport,
  journal,
  failedJson,
  deviceConfig,
  httpRange,
  httpContentRange,
  httpRetryAfter,
  lz4Expand,
  lz4Fold,
  zeroRuns,
  deflateExpand,
  deflateFold,
  ociManifest,
  ociLayer,
];

/** Removes the shared delta fixture's files (after all targets ran). */
export async function cleanupFixtures(): Promise<void> {
  if (deltaFixture) await rm((await deltaFixture).dir, { recursive: true, force: true });
  deltaFixture = null;
}

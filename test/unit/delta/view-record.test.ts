/**
 * Format 2 of the static delta (docs/formats.md §8.6): view records round-trip and every malformed
 * one is refused before a byte is used; the format number is checked in preamble and superblock
 * (an older reader refuses format 2, a newer format is DeltaUnsupportedError); format 1 output is
 * unchanged; where the streams of a file are (gzip members, an x86 bzImage payload); the content kinds.
 */
import t from 'tap';
import { execSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeCanonical } from '../../../src/store/cbor.ts';
import { DeltaFormatError, DeltaUnsupportedError, type Superblock, decodePreamble, decodeRecord, decodeSuperblock, encodePreamble, encodeRecord, encodeSuperblock } from '../../../src/delta/format.ts';
import { contentKind } from '../../../src/delta/view/kind.ts';
import { afterUncompressedCpio, bzImagePayload, findStreams, gzipBodyOffset } from '../../../src/delta/view/segment.ts';

const id = (c: string) => c.repeat(64);
const body = (v: unknown) => encodeCanonical(v as never);

t.test('view records round-trip; format 1 readers never see one', async (t) => {
  const rec = {
    type: 'view-file' as const,
    header: Uint8Array.from([1, 2, 3]),
    source: id('a'),
    src: [{ codec: 'raw' as const, n: 10 }, { codec: 'deflate' as const, n: 100, m: 400 }, { codec: 'raw' as const, n: 8 }],
    dst: [{ codec: 'raw' as const, n: 1024 }, { codec: 'lz4-legacy' as const, n: 4 + 4 + 50 + 4 + 20, m: 8 * 1024 * 1024 + 7, level: 9, blocks: [50, 20] }, { codec: 'raw' as const, n: 4 }],
  };
  const bytes = encodeRecord(rec).subarray(4);
  t.same(decodeRecord(bytes, false, 2), rec, 'decoded as written');
  t.throws(() => decodeRecord(bytes, false, 1), /control record kind 4 is unknown/, 'a format-1 delta holding a view record is malformed');
});

t.test('malformed view records are refused', async (t) => {
  const h = Uint8Array.from([1]);
  const src = Buffer.from(id('a'), 'hex');
  const raw = [0, 5];
  const bad: [string, unknown][] = [
    ['too short', [4, h, src, [raw]]],
    ['header not bytes', [4, 'x', src, [raw], [raw]]],
    ['no source', [4, h, null, [raw], [raw]]],
    ['empty segment list', [4, h, src, [], [raw]]],
    ['unknown codec', [4, h, src, [[3, 5]], [raw]]],
    ['raw with a view size', [4, h, src, [[0, 5, 5]], [raw]]],
    ['negative size', [4, h, src, [[0, -1]], [raw]]],
    ['lz4 level 13', [4, h, src, [[2, 12, 4, 13, [4]]], [raw]]],
    ['lz4 blocks that do not add up', [4, h, src, [[2, 13, 4, 9, [4]]], [raw]]],
    ['lz4 with too few blocks', [4, h, src, [[2, 12, 8 * 1024 * 1024 + 1, 9, [4]]], [raw]]],
    ['a view over 256 MiB', [4, h, src, [[1, 10, 2 ** 28 + 1]], [raw]]],
    ['4097 segments', [4, h, src, Array.from({ length: 4097 }, () => raw), [raw]]],
  ];
  for (const [what, v] of bad) t.throws(() => decodeRecord(body(v), false, 2), DeltaFormatError, what);
});

t.test('the format number: format 1 unchanged, 2 and 3 read, newer refused as unsupported', async (t) => {
  const sb: Superblock = { format: 1, from: null, to: id('b'), commit: Uint8Array.from([1]), commitSigs: null, created: 1, parts: [{ size: 1, sha256: id('c'), raw: 1, objects: [], scratch: 500 }] };
  const one = decodeSuperblock(encodeSuperblock(sb));
  t.equal(one.format, 1);
  t.equal(one.parts[0].scratch, undefined, 'format 1 carries no scratch key (the superblock stays what old agents read)');
  const two = encodeSuperblock({ ...sb, format: 2 });
  t.equal(decodeSuperblock(two).parts[0].scratch, 500, 'format 2 carries scratch');
  t.throws(() => decodeSuperblock(two, 1), DeltaUnsupportedError, 'a reader of format 1 refuses format 2');
  t.equal(decodeSuperblock(encodeSuperblock({ ...sb, format: 3 })).format, 3, 'format 3 read');
  t.throws(() => decodeSuperblock(encodeSuperblock({ ...sb, format: 3 }), 2), DeltaUnsupportedError, 'a reader of format 2 refuses format 3');
  const four = body(new Map<string, unknown>([['format', 4], ['from', null]]));
  t.throws(() => decodeSuperblock(four), { name: 'DeltaUnsupportedError', message: 'delta format 4 is newer than this larch reads (1-3)' });
  t.throws(() => decodeSuperblock(body(new Map([['format', 0]]))), /superblock format 0 is not 1-3/, 'format 0 is malformed, not newer');
  t.equal(encodePreamble(10).readUInt32BE(8), 1, 'the preamble says 1 by default');
  t.equal(decodePreamble(encodePreamble(10, 2)), 10, 'format 2 preamble read');
  t.equal(decodePreamble(encodePreamble(10, 3)), 10, 'format 3 preamble read');
  const p4 = encodePreamble(10, 3);
  p4.writeUInt32BE(4, 8);
  t.throws(() => decodePreamble(p4), DeltaUnsupportedError, 'format 4 preamble: unsupported');
  t.throws(() => decodePreamble(encodePreamble(10, 2), 1), DeltaUnsupportedError, 'an older reader refuses a format-2 preamble');
});

/** A bzImage-shaped buffer: setup sectors, the boot header, a payload at payload_offset. */
function bz(payload: Uint8Array, setupSects = 1, version = 0x20f): Buffer {
  const pm = (setupSects + 1) * 512;
  const b = Buffer.alloc(pm + 16 + payload.length + 32);
  b[0x1f1] = setupSects;
  b.write('HdrS', 0x202, 'latin1');
  b.writeUInt16LE(version, 0x206);
  b.writeUInt32LE(16, 0x248);
  b.writeUInt32LE(payload.length, 0x24c);
  b.set(payload, pm + 16);
  return b;
}

t.test('where the streams are', async (t) => {
  const gz = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 0xaa]);
  t.equal(gzipBodyOffset(gz, 0), 10, 'plain gzip header: 10 bytes');
  const named = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 8 | 4 | 2, 0, 0, 0, 0, 0, 3, 2, 0, 0xee, 0xee]), Buffer.from('name\0'), Buffer.from([0x12, 0x34, 0xaa])]);
  t.equal(gzipBodyOffset(named, 0), 10 + 4 + 5 + 2, 'FEXTRA, FNAME and FHCRC skipped');
  t.equal(gzipBodyOffset(Buffer.from([0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 3]), 0), null, 'reserved flag bits: not a member we read');
  t.equal(gzipBodyOffset(Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 3, 0xff, 0xff]), 0), null, 'FEXTRA past the end');
  t.same(findStreams(gz), [{ codec: 'deflate', offset: 10, length: null, gzipMember: true }]);

  const lz4 = Buffer.concat([Buffer.from([0x02, 0x21, 0x4c, 0x18]), Buffer.alloc(20, 1), Buffer.from([9, 9, 9, 9])]);
  const k = bz(lz4);
  t.same(bzImagePayload(k), { offset: 1024 + 16, length: lz4.length });
  t.same(findStreams(k), [{ codec: 'lz4-legacy', offset: 1024 + 16, length: lz4.length - 4, gzipMember: false }], 'the lz4 frame, without the size Kbuild appends');
  t.same(findStreams(bz(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0, 1, 2]))).map((s) => s.codec), ['xz'], 'an xz kernel: found, never expanded');
  t.same(findStreams(bz(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 1, 2]))), [{ codec: 'deflate', offset: 1024 + 16 + 10, length: null, gzipMember: true }], 'a gzip kernel');
  t.equal(bzImagePayload(bz(lz4, 1, 0x207)), null, 'boot protocol before 2.08 has no payload fields');
  t.same(findStreams(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0])).map((s) => s.codec), ['zstd']);
  t.same(findStreams(Buffer.from('BZh91AY&SY')).map((s) => s.codec), ['bzip2']);
  t.same(findStreams(Buffer.from('plain text')), []);
});

t.test('an initramfs with early microcode: the uncompressed cpio archives stay raw, the gzip after them is found', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'larch-cpio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'kernel/x86/microcode'), { recursive: true });
  writeFileSync(join(dir, 'kernel/x86/microcode/GenuineIntel.bin'), Buffer.alloc(1001, 7));
  const cpio = (files: string) => execSync(`cd '${dir}' && printf '${files}' | cpio -o -H newc --quiet`);
  const early = Buffer.concat([cpio('kernel\nkernel/x86\nkernel/x86/microcode\nkernel/x86/microcode/GenuineIntel.bin\n'), Buffer.alloc(512 - 3)]);
  const second = cpio('kernel/x86/microcode/GenuineIntel.bin\n');
  const main = execSync('gzip -6n', { input: cpio('kernel\n') });
  const image = Buffer.concat([early, second, main]);
  t.equal(afterUncompressedCpio(image), early.length + second.length, 'past both archives and the zero padding between them');
  t.same(findStreams(image), [{ codec: 'deflate', offset: early.length + second.length + 10, length: null, gzipMember: true }], 'the gzip member after them');
  t.same(findStreams(Buffer.concat([early, Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 1, 2])])).map((s) => [s.codec, s.offset]), [['zstd', early.length]], 'a zstd main archive: found (and reported)');
  t.equal(afterUncompressedCpio(early.subarray(0, 300)), 0, 'a cpio cut short: no split');
  t.same(findStreams(cpio('kernel\n')), [], 'a plain cpio holds no stream');
});

t.test('content kinds', async (t) => {
  t.equal(contentKind('/boot/vmlinuz-6.1.0-1-amd64', Buffer.alloc(8)), 'kernel', 'by path');
  t.equal(contentKind('/x', bz(Buffer.alloc(8))), 'kernel', 'by the boot header');
  t.equal(contentKind('/usr/lib/modules/6.1.0/vmlinuz', Buffer.alloc(8)), 'kernel');
  t.equal(contentKind('/boot/initrd.img-6.1.0-1-amd64', Buffer.from([0x1f, 0x8b])), 'initramfs', 'an initramfs by name, whatever it is compressed with');
  t.equal(contentKind('/x.cpio', Buffer.from('070701')), 'initramfs', 'a newc cpio');
  t.equal(contentKind('/usr/share/doc/a/changelog.gz', Buffer.from([0x1f, 0x8b, 8])), 'gzip');
  t.equal(contentKind('/usr/lib/libc.so.6', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2])), 'elf');
  t.equal(contentKind('/etc/passwd', Buffer.from('root:x:0:0')), 'other');
});

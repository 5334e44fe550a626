/**
 * Writes test/vectors/objects/*.json: object encodings and ids that pin docs/formats.md.
 * Run once when a format changes on purpose: node --import tsx scripts/make-vectors.ts
 * (the test checks that the code still produces exactly these bytes).
 */
import { writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { encodeCanonical } from '../src/store/cbor.ts';
import { encodeCommit, encodeDirMeta, encodeDirTree, encodeFileHeader, type FileHeader, idToBytes as bytes } from '../src/store/object.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};
const b = (s: string) => Uint8Array.from(Buffer.from(s, 'utf8'));

const files: { comment: string; header: FileHeader; content?: string }[] = [
  { comment: 'regular file, 0644 root:root, "hello\\n"', header: { type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 6, xattrs: [] }, content: 'hello\n' },
  { comment: 'empty regular file', header: { type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 0, xattrs: [] }, content: '' },
  { comment: 'setuid root executable', header: { type: 'reg', mode: 0o4755, uid: 0, gid: 0, size: 3, xattrs: [] }, content: 'x\ny' },
  { comment: 'file with two xattrs (sorted by name bytes)', header: { type: 'reg', mode: 0o600, uid: 1000, gid: 100, size: 1, xattrs: [[b('user.b'), b('2')], [b('security.capability'), Uint8Array.from([1, 0, 0, 2])]] }, content: 'z' },
  { comment: 'large uid (2^32-1) and size over 2^32 (content not included)', header: { type: 'reg', mode: 0o644, uid: 4294967295, gid: 65534, size: 5000000000, xattrs: [] } },
  { comment: 'relative symlink', header: { type: 'lnk', mode: 0o777, uid: 0, gid: 0, target: b('../lib/libc.so.6'), xattrs: [] } },
  { comment: 'symlink with invalid UTF-8 target', header: { type: 'lnk', mode: 0o777, uid: 0, gid: 0, target: Uint8Array.from([0x66, 0xff, 0xfe]), xattrs: [] } },
  { comment: 'fifo', header: { type: 'fifo', mode: 0o620, uid: 0, gid: 5, xattrs: [] } },
];

const id1 = sha(encodeFileHeader(files[0].header), b('hello\n'));
const meta = { mode: 0o755, uid: 0, gid: 0, xattrs: [] };
const metaId = sha(encodeDirMeta(meta));
const emptyTree = encodeDirTree({ files: [], dirs: [] });
const tree = encodeDirTree({ files: [{ name: b('hello'), file: id1 }, { name: Uint8Array.from([0x6e, 0x0a, 0xff]), file: id1 }], dirs: [{ name: b('etc'), tree: sha(emptyTree), meta: metaId }] });
// Format 2: the same tree with each file's content length, and one size past 2^32 (8-byte uint).
const tree2 = encodeDirTree({ files: [{ name: b('hello'), file: id1, size: 6 }, { name: Uint8Array.from([0x6e, 0x0a, 0xff]), file: id1, size: 6 }], dirs: [{ name: b('etc'), tree: sha(emptyTree), meta: metaId }] });
const big2 = encodeDirTree({ files: [{ name: b('disk.img'), file: id1, size: 5_000_000_000 }], dirs: [] });

const vectors = {
  source: 'scripts/make-vectors.ts; layouts in docs/formats.md',
  file_headers: files.map((f) => {
    const h = encodeFileHeader(f.header);
    return {
      comment: f.comment,
      header: { ...f.header, target: f.header.type === 'lnk' ? hex(f.header.target) : undefined, xattrs: f.header.xattrs.map(([n, v]) => [hex(n), hex(v)]) },
      header_hex: hex(h),
      content_hex: f.content === undefined ? undefined : hex(b(f.content)),
      id: f.content === undefined && f.header.type === 'reg' ? undefined : sha(h, b(f.content ?? '')),
      valid: true,
    };
  }),
  dirmeta: [{ comment: 'directory 0755 root:root', value: meta, hex: hex(encodeDirMeta(meta)), id: metaId, valid: true }],
  dirtree: [
    { comment: 'empty directory', hex: hex(emptyTree), id: sha(emptyTree), valid: true },
    { comment: "two files (one with a newline and 0xff in its name) and one dir 'etc'", hex: hex(tree), id: sha(tree), valid: true },
    { comment: "format 2: the same two files with their sizes (6 bytes each) and dir 'etc'", format: 2, hex: hex(tree2), id: sha(tree2), valid: true },
    { comment: 'format 2: a file of 5 000 000 000 bytes (size as an 8-byte uint)', format: 2, hex: hex(big2), id: sha(big2), valid: true },
  ],
  commit: [
    (() => {
      const c = encodeCommit({ root: { tree: sha(tree), meta: metaId }, parent: null, timestamp: 1767225600, version: '1.0', subject: 'first', body: '', metadata: new Map([['larch.packages', [['bash', '5.2.15-2+b2', 'amd64']]]]) });
      return { comment: 'root commit with package metadata, 2026-01-01T00:00:00Z', hex: hex(c), id: sha(c), valid: true };
    })(),
  ],
  invalid: [] as { comment: string; kind: string; hex: string; valid: boolean }[],
};
// The invalid vectors are made from valid ones by hand-picked edits, so they stay meaningful.
const badMode = encodeFileHeader({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 0, xattrs: [] });
vectors.invalid = [
  { comment: 'file header with an extra key', kind: 'file_header', hex: hex(Uint8Array.from([...badMode.slice(0, 1).map((x) => x + 1), ...badMode.slice(1), 0x61, 0x7a, 0x00])), valid: false },
  { comment: "file header with type 'dev'", kind: 'file_header', hex: hex(Buffer.from(hex(badMode).replace('63726567', '63646576'), 'hex')), valid: false },
  { comment: 'dirtree whose files are not sorted', kind: 'dirtree', hex: hex(encodeDirTreeUnsorted()), valid: false },
  // Refused by decodeDirTree itself (kind dirtree_shape): one dirtree uses one entry shape.
  { comment: 'dirtree mixing [name, id] and [name, id, size] file entries', kind: 'dirtree_shape', hex: hex(mixedShapes()), valid: false },
  { comment: 'dirtree file entry with a negative size', kind: 'dirtree_shape', hex: hex(encodeCanonical({ files: [[b('a'), bytes(id1), -1]], dirs: [] })), valid: false },
  { comment: 'dirtree file entry [name, id, size, extra]', kind: 'dirtree_shape', hex: hex(encodeCanonical({ files: [[b('a'), bytes(id1), 1, 1]], dirs: [] })), valid: false },
];
function mixedShapes(): Uint8Array {
  return encodeCanonical({ files: [[b('a'), bytes(id1)], [b('b'), bytes(id1), 6]], dirs: [] });
}
function encodeDirTreeUnsorted(): Uint8Array {
  // encodeDirTree sorts; swap the two file entries of `tree` by re-encoding by hand.
  const good = encodeDirTree({ files: [{ name: b('a'), file: id1 }, { name: b('b'), file: id1 }], dirs: [] });
  const s = hex(good);
  const ea = '8241615820' + id1;
  const eb = '8241625820' + id1;
  return Buffer.from(s.replace(ea + eb, eb + ea), 'hex');
}
writeFileSync(new URL('../test/vectors/objects/objects.json', import.meta.url), JSON.stringify(vectors, null, 2) + '\n');
console.log('wrote test/vectors/objects/objects.json');

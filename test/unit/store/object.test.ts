import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  type FileHeader,
  ObjectFormatError,
  badNameReason,
  decodeCommit,
  decodeDirMeta,
  decodeDirTree,
  decodeFileHeader,
  encodeCommit,
  encodeDirMeta,
  encodeDirTree,
  encodeFileHeader,
  validateDirTree,
} from '../../../src/store/object.ts';

const v = JSON.parse(readFileSync(new URL('../../vectors/objects/objects.json', import.meta.url), 'utf8'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => Uint8Array.from(Buffer.from(h, 'hex'));
const sha = (...p: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const x of p) h.update(x);
  return h.digest('hex');
};

t.test('file header vectors: encoding, id and round trip', async (t) => {
  for (const f of v.file_headers) {
    const h = { ...f.header, xattrs: f.header.xattrs.map(([n, x]: string[]) => [bytes(n), bytes(x)]) };
    if (h.type === 'lnk') h.target = bytes(f.header.target);
    else delete h.target;
    t.equal(hex(encodeFileHeader(h as FileHeader)), f.header_hex, `encode: ${f.comment}`);
    if (f.id) t.equal(sha(bytes(f.header_hex), bytes(f.content_hex ?? '')), f.id, `id: ${f.comment}`);
    t.equal(hex(encodeFileHeader(decodeFileHeader(bytes(f.header_hex)))), f.header_hex, `round trip: ${f.comment}`);
  }
});

t.test('dirmeta, dirtree and commit vectors', async (t) => {
  for (const m of v.dirmeta) {
    t.equal(hex(encodeDirMeta(m.value)), m.hex, m.comment);
    t.equal(sha(bytes(m.hex)), m.id, `id: ${m.comment}`);
    t.same(decodeDirMeta(bytes(m.hex)), m.value, `decode: ${m.comment}`);
  }
  for (const d of v.dirtree) {
    t.equal(hex(encodeDirTree(decodeDirTree(bytes(d.hex)))), d.hex, d.comment);
    t.equal(sha(bytes(d.hex)), d.id, `id: ${d.comment}`);
    t.same(validateDirTree(decodeDirTree(bytes(d.hex))), [], `names valid: ${d.comment}`);
    const sizes = decodeDirTree(bytes(d.hex)).files.map((f) => f.size);
    t.ok(sizes.every((s) => (d.format === 2 ? typeof s === 'number' : s === undefined)), `format ${d.format ?? 1} sizes: ${d.comment}`);
  }
  for (const c of v.commit) {
    const commit = decodeCommit(bytes(c.hex));
    t.equal(hex(encodeCommit(commit)), c.hex, c.comment);
    t.equal(sha(bytes(c.hex)), c.id, `id: ${c.comment}`);
    t.equal(commit.version, '1.0');
    t.equal(commit.timestamp, 1767225600);
  }
});

t.test('invalid vectors are refused by the decoders', async (t) => {
  for (const inv of v.invalid) {
    if (inv.kind === 'file_header') t.throws(() => decodeFileHeader(bytes(inv.hex)), ObjectFormatError, inv.comment);
    else if (inv.kind === 'dirtree_shape') t.throws(() => decodeDirTree(bytes(inv.hex)), ObjectFormatError, inv.comment);
    else t.ok(validateDirTree(decodeDirTree(bytes(inv.hex))).length > 0, inv.comment);
  }
});

t.test('dirtree formats 1 and 2: round trips, one shape per dirtree', async (t) => {
  const n = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
  const id = 'b'.repeat(64);
  const v1 = { files: [{ name: n('a'), file: id }, { name: n('b'), file: id }], dirs: [] };
  const v2 = { files: [{ name: n('a'), file: id, size: 0 }, { name: n('b'), file: id, size: 2 ** 53 - 1 }], dirs: [] };
  for (const tree of [v1, v2]) {
    const enc = encodeDirTree(tree);
    t.same(decodeDirTree(enc), tree, `format ${tree === v1 ? 1 : 2} decodes to what was encoded`);
    t.equal(hex(encodeDirTree(decodeDirTree(enc))), hex(enc), `format ${tree === v1 ? 1 : 2} re-encodes to the same bytes`);
  }
  t.not(hex(encodeDirTree(v1)), hex(encodeDirTree(v2)), 'the two formats give different ids for the same files');
  t.equal(hex(encodeDirTree({ files: [], dirs: [] })), 'a26464697273806566696c657380', 'a dirtree without files is the same in both formats');
  t.throws(() => encodeDirTree({ files: [v1.files[0], v2.files[1]], dirs: [] }), /some file entries have a size and some do not/, 'the encoder refuses to mix shapes');
  t.throws(() => decodeDirTree(bytes(v.invalid.find((i: { kind: string }) => i.kind === 'dirtree_shape').hex)), /mixes \[name, id\] and \[name, id, size\]/, 'the decoder names the mix');
});

t.test('entry names', async (t) => {
  const n = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
  t.equal(badNameReason(n('ok name')), null);
  t.equal(badNameReason(n('n\nl\xff')), null, 'newline and invalid UTF-8 are fine');
  for (const bad of ['', '.', '..', 'a/b', 'a\0b', 'x'.repeat(256)]) t.not(badNameReason(n(bad)), null, JSON.stringify(bad.slice(0, 10)));
  const id = 'a'.repeat(64);
  const dup = validateDirTree({ files: [{ name: n('x'), file: id }], dirs: [{ name: n('x'), tree: id, meta: id }] });
  t.match(dup[0].problem, /both a file and a directory/);
});

t.test('decoders refuse wrong shapes with ObjectFormatError', async (t) => {
  const reg = encodeFileHeader({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 1, xattrs: [] });
  t.throws(() => decodeDirTree(reg), ObjectFormatError, 'a file header is not a dirtree');
  t.throws(() => decodeCommit(reg), ObjectFormatError, 'a file header is not a commit');
  t.throws(() => decodeFileHeader(reg.subarray(0, reg.length - 1)), ObjectFormatError, 'truncated');
  t.throws(() => encodeFileHeader({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 1.5, xattrs: [] }), RangeError, 'non-integer size');
});

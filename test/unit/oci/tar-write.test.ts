/**
 * oci/tar-write.ts: what it encodes, the tar reader (store/tar-entries.ts, tar-stream underneath)
 * reads back exactly (a fast-check property over raw-byte names and targets, binary xattrs, ids
 * past ustar's 2097151 and long paths), GNU tar lists it, and the same entries give the same bytes.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { TAR_END, type TarEntryHeader, encodeHeader, padding, paxRecord } from '../../../src/oci/tar-write.ts';
import { tarEntries } from '../../../src/store/tar-entries.ts';

function archive(entries: (TarEntryHeader & { content?: Buffer })[]): Buffer {
  return Buffer.concat([...entries.flatMap((e) => [encodeHeader(e), ...(e.content ? [e.content, Buffer.from(padding(e.content.length))] : [])]), Buffer.from(TAR_END)]);
}

t.test('pax records count their own length', async (t) => {
  for (const n of [1, 88, 89, 90, 989, 990, 9_990]) {
    const r = paxRecord('k', Buffer.alloc(n, 0x61));
    t.equal(Number(r.toString('latin1').split(' ')[0]), r.length, `a value of ${n} bytes`);
  }
});

t.test('what is written is read back exactly (property)', async (t) => {
  const name = fc.uint8Array({ minLength: 1, maxLength: 40 }).map((b) => Buffer.from(b.map((x) => (x === 0x2f || x === 0 ? 0x61 : x))));
  const path = fc.array(name, { minLength: 1, maxLength: 6 }).filter((ps) => ps.every((p) => !(p.length === 1 && p[0] === 0x2e) && !(p.length === 2 && p[0] === 0x2e && p[1] === 0x2e))).map((ps) => Buffer.concat(ps.flatMap((p, i) => (i ? [Buffer.from('/'), p] : [p]))));
  const entry = fc.record({
    path,
    type: fc.constantFrom('file', 'symlink', 'directory', 'fifo', 'hardlink') as fc.Arbitrary<TarEntryHeader['type']>,
    mode: fc.integer({ min: 0, max: 0o7777 }),
    uid: fc.oneof(fc.integer({ min: 0, max: 2 ** 21 - 1 }), fc.integer({ min: 2 ** 21, max: 2 ** 32 - 2 })),
    gid: fc.integer({ min: 0, max: 2 ** 32 - 2 }),
    content: fc.uint8Array({ maxLength: 700 }).map((b) => Buffer.from(b)),
    linkName: path,
    xattrs: fc.array(fc.tuple(fc.constantFrom('user.a', 'user.b', 'security.capability'), fc.uint8Array({ maxLength: 20 })), { maxLength: 2 }),
  });
  await fc.assert(
    fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 5 }), async (specs) => {
      const entries = specs.map((s) => {
        const xattrs = [...new Map(s.xattrs.map(([k, v]) => [k, v])).entries()].map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as [Uint8Array, Uint8Array]);
        const isFile = s.type === 'file';
        const path = s.type === 'directory' ? Buffer.concat([s.path, Buffer.from('/')]) : s.path;
        return { path, type: s.type, mode: s.mode, uid: s.uid, gid: s.gid, size: isFile ? s.content.length : 0, mtime: 1_800_000_000, ...(s.type === 'symlink' || s.type === 'hardlink' ? { linkName: s.linkName } : {}), xattrs, ...(isFile ? { content: s.content } : {}) };
      });
      const got: unknown[] = [];
      for await (const e of tarEntries(Readable.from([archive(entries)]), { where: 'property', path: 'property' })) {
        const chunks: Buffer[] = [];
        for await (const c of e.chunks('x')) chunks.push(Buffer.from(c));
        got.push({ path: e.name.toString('hex'), type: e.header.type, mode: e.header.mode, uid: e.header.uid, gid: e.header.gid, link: e.linkName.toString('hex'), xattrs: e.xattrs.map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).toString('hex')]), content: Buffer.concat(chunks).toString('hex') });
      }
      const want = entries.map((e) => ({
        path: Buffer.from(e.path).toString('hex'),
        type: { file: 'file', symlink: 'symlink', directory: 'directory', fifo: 'fifo', hardlink: 'link' }[e.type],
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        link: Buffer.from('linkName' in e && e.linkName ? e.linkName : Buffer.alloc(0)).toString('hex'),
        xattrs: e.xattrs.map(([k, v]) => [Buffer.from(k).toString(), Buffer.from(v).toString('hex')]),
        content: 'content' in e && e.content ? e.content.toString('hex') : '',
      }));
      t.same(got, want);
    }),
    { numRuns: 200 },
  );
});

t.test('GNU tar reads it, and the same entries give the same bytes', async (t) => {
  const entries = [
    { path: Buffer.from('./'), type: 'directory' as const, mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 1_800_000_000 },
    { path: Buffer.from(`usr/share/${'d'.repeat(120)}/${'f'.repeat(120)}`), type: 'file' as const, mode: 0o644, uid: 3_000_000, gid: 7, size: 3, mtime: 1_800_000_000, content: Buffer.from('abc'), xattrs: [[Buffer.from('user.bin'), Buffer.from([0, 255])]] as [Uint8Array, Uint8Array][] },
    { path: Buffer.from('usr/bin/link'), type: 'hardlink' as const, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_800_000_000, linkName: Buffer.from(`usr/share/${'d'.repeat(120)}/${'f'.repeat(120)}`) },
  ];
  const a = archive(entries);
  t.ok(a.equals(archive(entries)), 'deterministic');
  const listing = execFileSync('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-tvvf', '-'], { input: a, encoding: 'utf8' });
  t.match(listing, /3000000\/7 +3 \S+ \S+ usr\/share\/d{120}\/f{120}/, 'the long path and the large uid');
  t.match(listing, /user\.bin/, 'the xattr');
  t.match(listing, /^h.* usr\/bin\/link link to usr\/share\//m, 'the hard link');
});

/**
 * store/tar-entries.ts: what tar-stream decodes lossily comes out exact. A defect found by the
 * export round trip: tar-stream applies a pax header's path, linkpath and size but not its uid
 * and gid, so an owner past ustar's 2097151 (written only in pax) came in as 2097151.
 */
import t from 'tap';
import { Readable } from 'node:stream';
import * as tarStream from 'tar-stream';
import { tarEntries } from '../../../src/store/tar-entries.ts';
import { TAR_END, encodeHeader, padding } from '../../../src/oci/tar-write.ts';

async function tarOf(entries: { name: string; uid?: number; pax?: Record<string, string>; content?: string }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on('end', () => resolve()));
  for (const e of entries) pack.entry({ name: e.name, uid: e.uid ?? 0, gid: e.uid ?? 0, pax: e.pax }, e.content ?? '');
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

t.test('pax uid and gid win over the ustar fields', async (t) => {
  const tar = await tarOf([
    { name: 'big', uid: 2097151, pax: { uid: '3000000', gid: '4000000' } },
    { name: 'small', uid: 7 },
    { name: 'not-a-number', uid: 5, pax: { uid: '12x' } },
  ]);
  const seen: [string, number | undefined, number | undefined][] = [];
  for await (const e of tarEntries(Readable.from([tar]), { where: 'test', path: 'test' })) {
    seen.push([e.name.toString(), e.header.uid, e.header.gid]);
    e.skip();
  }
  t.same(seen, [['big', 3000000, 4000000], ['small', 7, 7], ['not-a-number', 5, 5]]);
});

t.test('names, link targets and xattr values that are not UTF-8 stay raw bytes (tar-write.ts in, tar-entries.ts out)', async (t) => {
  const name = Buffer.from([0x61, 0xe9]);
  const target = Buffer.concat([Buffer.from('/usr/'), Buffer.from([0xff, 0xfe])]);
  const value = Buffer.from([0x00, 0xff, 0x80]);
  const tar = Buffer.concat([
    encodeHeader({ path: name, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 0, xattrs: [[Buffer.from('user.bin'), value]] }),
    Buffer.from('x'),
    padding(1),
    encodeHeader({ path: Buffer.from('l'), type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0, linkName: target }),
    TAR_END,
  ]);
  const got: [number[], number[], [string, number[]][]][] = [];
  for await (const e of tarEntries(Readable.from([tar]), { where: 'test', path: 'test' })) {
    got.push([[...e.name], [...e.linkName], e.xattrs.map(([k, v]) => [Buffer.from(k).toString(), [...v]])]);
    e.skip();
  }
  t.same(got, [[[...name], [], [['user.bin', [...value]]]], [[0x6c], [...target], []]], 'names, targets and xattr values as their bytes');
});

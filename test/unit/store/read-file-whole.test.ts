/**
 * Repo.readFileWhole (the delta generator's read: one piece, inflated in one call) gives what
 * readFile's stream gives, and refuses every damaged archive object readFile refuses.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { Repo } from '../../../src/store/repo.ts';
import { Transaction } from '../../../src/store/transaction.ts';
import { type FileHeader, encodeFileHeader } from '../../../src/store/object.ts';
import { type TapTest, rejectsCode, tempDir } from '../../helpers.ts';

const reg = (size: number): FileHeader => ({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size, xattrs: [] });

async function stored(t: TapTest, mode: 'archive' | 'bare-user', content: Buffer) {
  const repo = await Repo.init(join(tempDir(t), 'r'), mode);
  const txn = await Transaction.begin(repo);
  const id = await txn.writeFile(reg(content.length), { stream: (async function* () {
    yield content;
  })() });
  await txn.commit();
  return { repo, id };
}

async function streamed(repo: Repo, id: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of (await repo.readFile(id)).content()) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

for (const mode of ['archive', 'bare-user'] as const) {
  t.test(`${mode}: the same header and bytes as readFile`, async (t) => {
    // Large enough for many of readFile's chunks, compressible and not.
    for (const content of [Buffer.alloc(0), Buffer.from('motd\n'), Buffer.concat([Buffer.alloc(300_000, 'a'), Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7919) & 0xff))])]) {
      const { repo, id } = await stored(t, mode, content);
      const whole = await repo.readFileWhole(id);
      t.same(whole.header, (await repo.readFile(id)).header, `${content.length} bytes: header`);
      t.ok(whole.content.equals(content), `${content.length} bytes: content`);
      t.ok(whole.content.equals(await streamed(repo, id)), `${content.length} bytes: as readFile streams it`);
    }
  });
}

t.test('archive: damaged objects are OBJECT_CORRUPT, and a missing one OBJECT_MISSING', async (t) => {
  const content = Buffer.from('a line of text\n'.repeat(100));
  const { repo, id } = await stored(t, 'archive', content);
  const path = repo.objectPath('file', id);
  const good = readFileSync(path);
  const headerBytes = encodeFileHeader(reg(content.length));
  const withHeader = (header: Uint8Array, body: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(header.length);
    return Buffer.concat([len, header, body]);
  };
  const cases: [string, Buffer, RegExp][] = [
    ['trailing bytes', Buffer.concat([good, Buffer.from('junk')]), /4 bytes follow the end of the compressed content/],
    ['a truncated stream', good.subarray(0, good.length - 3), /compressed content is damaged/],
    ['a file cut before its header', good.subarray(0, 3), /truncated before its header/],
    ['a file cut inside its header', good.subarray(0, 4 + headerBytes.length - 1), /truncated inside its header/],
    ['a header length over the limit', Buffer.from([0x7f, 0, 0, 0]), /header length \d+ is over the 1 MiB limit/],
    ['content longer than the header says', withHeader(encodeFileHeader(reg(content.length - 1)), deflateRawSync(content)), /content is longer than its header's \d+ bytes/],
    ['content shorter than the header says', withHeader(encodeFileHeader(reg(content.length + 1)), deflateRawSync(content)), /has 1500 bytes, its header says 1501/],
    ['a symlink', withHeader(encodeFileHeader({ type: 'lnk', mode: 0o777, uid: 0, gid: 0, target: Buffer.from('x'), xattrs: [] }), Buffer.alloc(0)), /a lnk has no content to read/],
  ];
  for (const [what, bytes, message] of cases) {
    writeFileSync(path, bytes);
    await rejectsCode(t, repo.readFileWhole(id), 'OBJECT_CORRUPT', what, { message });
  }
  await rejectsCode(t, repo.readFileWhole('00'.repeat(32)), 'OBJECT_MISSING', 'an object not in the repo');
});

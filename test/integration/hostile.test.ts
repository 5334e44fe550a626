/**
 * Hostile repos. Objects are crafted with the library (bypassing the
 * importer's checks) and then checked through the Bun binary: fsck reports each, checkout
 * refuses before writing outside DEST, and no size field is trusted for an allocation.
 */
import t from 'tap';
import { existsSync, mkdirSync, readdirSync, writeFileSync, openSync, ftruncateSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { Repo } from '../../src/store/repo.ts';
import { Transaction } from '../../src/store/transaction.ts';
import { encodeCommit, encodeDirMeta, encodeDirTree, encodeFileHeader, type DirTree } from '../../src/store/object.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

const b = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
const META = { mode: 0o755, uid: 0, gid: 0, xattrs: [] };

/** Commits a root dirtree built by `build` (which may stage more objects) on branch main. */
async function craft(repoPath: string, build: (txn: Transaction) => Promise<DirTree>): Promise<string> {
  const repo = await Repo.open(repoPath);
  const txn = await Transaction.begin(repo);
  const meta = await txn.writeMetadata('dirmeta', encodeDirMeta(META));
  const tree = await txn.writeMetadata('dirtree', encodeDirTree(await build(txn)));
  const commit = await txn.writeMetadata('commit', encodeCommit({ root: { tree, meta }, parent: null, timestamp: 0, version: 'evil', subject: '', body: '', metadata: new Map() }));
  await txn.commit({ main: commit });
  return commit;
}

async function regular(txn: Transaction, content: string): Promise<string> {
  const data = Buffer.from(content);
  return txn.writeFile({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: data.length, xattrs: [] }, { stream: (async function* () { yield data; })() });
}

const cases: { name: string; build: (txn: Transaction, outside: string) => Promise<DirTree>; problem: RegExp }[] = [
  { name: "a dirtree entry named '..'", problem: /name '\.\.'/, build: async (txn) => ({ files: [{ name: b('..'), file: await regular(txn, 'escape') }], dirs: [] }) },
  { name: "a dirtree entry named '.'", problem: /name '\.'/, build: async (txn) => ({ files: [{ name: b('.'), file: await regular(txn, 'dot') }], dirs: [] }) },
  { name: 'an empty name', problem: /empty name/, build: async (txn) => ({ files: [{ name: b(''), file: await regular(txn, 'empty') }], dirs: [] }) },
  { name: "a name with '/'", problem: /contains '\/'/, build: async (txn) => ({ files: [{ name: b('../../etc/evil'), file: await regular(txn, 'slash') }], dirs: [] }) },
  {
    name: 'a symlink pointing outside, then a file "inside" it',
    problem: /both a file and a directory/,
    build: async (txn, outside) => {
      const link = await txn.writeFile({ type: 'lnk', mode: 0o777, uid: 0, gid: 0, target: b(outside), xattrs: [] });
      const inner = await txn.writeMetadata('dirtree', encodeDirTree({ files: [{ name: b('escaped'), file: await regular(txn, 'written through a symlink') }], dirs: [] }));
      const meta = await txn.writeMetadata('dirmeta', encodeDirMeta(META));
      return { files: [{ name: b('link'), file: link }], dirs: [{ name: b('link'), tree: inner, meta }] };
    },
  },
];

for (const c of cases) {
  t.test(`hostile: ${c.name}`, async (t) => {
    const dir = tempDir(t);
    const outside = join(dir, 'outside');
    mkdirSync(outside);
    const repo = join(dir, 'repo');
    await larchOk(['init', '--repo', repo, '--mode', 'archive']);
    await craft(repo, (txn) => c.build(txn, outside));
    const f = await larch(['fsck', '--repo', repo, '--json']);
    t.equal(f.code, 5, 'fsck exits 5');
    const hostile = f.json.problems.filter((p: { code: string }) => p.code === 'HOSTILE_TREE');
    t.ok(hostile.length > 0, 'fsck reports a hostile tree');
    t.match(hostile[0]?.problem, c.problem, 'fsck says what is wrong');
    const dest = join(dir, 'dest');
    const co = await larch(['checkout', '--repo', repo, 'main', dest, '--json']);
    t.equal(co.code, 5, 'checkout exits 5');
    t.equal(co.json.error.code, 'HOSTILE_TREE');
    t.same(readdirSync(outside), [], 'nothing written outside DEST');
    t.notOk(existsSync(dest), 'DEST not created');
    t.notOk(existsSync(join(dir, 'escape')) || existsSync(join(dir, 'evil')), 'nothing next to DEST');
    const pull = await larch(['init', '--repo', join(dir, 'bare'), '--mode', 'bare-user']);
    t.equal(pull.code, 0);
    const p = await larch(['pull-local', '--repo', join(dir, 'bare'), repo, 'main', '--json']);
    t.equal(p.json?.error?.code, 'HOSTILE_TREE', 'pull-local refuses it too');
  });
}

t.test('hostile: a declared size far larger than the data', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const content = Buffer.from('tiny');
  const huge = 2 ** 50;
  const header = encodeFileHeader({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: huge, xattrs: [] });
  // Consistent with its id (the hash covers header and content): only the size lies.
  const id = createHash('sha256').update(header).update(content).digest('hex');
  await craft(repo, async () => ({ files: [{ name: b('big'), file: id }], dirs: [] }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  writeFileSync(join(repo, 'objects', id.slice(0, 2), `${id.slice(2)}.filez`), Buffer.concat([len, header, deflateRawSync(content)]));
  const f = await larch(['fsck', '--repo', repo, '--json']);
  t.equal(f.code, 5);
  t.match(f.json.problems[0].problem, new RegExp(`declared size ${huge} bytes, content is 4 bytes`));
  t.equal(f.json.problems[0].path, '/big');
  const co = await larch(['checkout', '--repo', repo, 'main', join(dir, 'dest'), '--json']);
  t.equal(co.json.error.code, 'OBJECT_CORRUPT', 'checkout refuses it');
  t.notOk(existsSync(join(dir, 'dest')), 'and leaves nothing behind');
});

t.test('hostile: a metadata object larger than the limit is refused without being read', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const fake = 'ab'.repeat(32);
  await craft(repo, async (txn) => {
    const meta = await txn.writeMetadata('dirmeta', encodeDirMeta(META));
    return { files: [], dirs: [{ name: b('huge'), tree: fake, meta }] };
  });
  // A sparse 65 MiB "dirtree": refusing it must not cost 65 MiB of memory.
  const fd = openSync(join(repo, 'objects', 'ab', `${fake.slice(2)}.dirtree`), 'w');
  ftruncateSync(fd, 65 * 1024 * 1024);
  closeSync(fd);
  const f = await larch(['fsck', '--repo', repo, '--json']);
  t.equal(f.code, 5);
  const prob = f.json.problems.find((p: { id: string }) => p.id === fake);
  t.match(prob?.problem, /over the 67108864-byte limit/);
  t.equal(prob?.path, '/huge');
});

/**
 * Signed object sizes: dirtree format 2 records each file's size. New repos
 * write it, a repo made before it keeps format 1 until switched; fsck and checkout refuse a
 * size that is not the object's; a delta between a format-1 and a format-2 commit applies.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { larch, larchOk, snapshotTree, diffSnapshots, tempDir } from '../helpers.ts';
import { decodeCommit, decodeDirTree, encodeCommit, encodeDirTree } from '../../src/store/object.ts';
import { Repo } from '../../src/store/repo.ts';
import { Transaction } from '../../src/store/transaction.ts';

function makeTree(dir: string, name: string, tool: string): string {
  const tree = join(dir, name);
  mkdirSync(join(tree, 'usr', 'bin'), { recursive: true });
  writeFileSync(join(tree, 'usr', 'bin', 'tool'), tool);
  writeFileSync(join(tree, 'usr', 'bin', 'other'), 'another file\n');
  mkdirSync(join(tree, 'etc'));
  writeFileSync(join(tree, 'etc', 'config'), 'key=value\n');
  return tree;
}

const config = (repo: string) => JSON.parse(readFileSync(join(repo, 'config.json'), 'utf8'));

/** The file entries of the root's /usr/bin dirtree of a branch. */
async function binEntries(repoPath: string, branch: string) {
  const repo = await Repo.open(repoPath);
  const commit = await repo.readCommit((await repo.readRef(branch))!);
  const root = await repo.readDirTree(commit.root.tree);
  const usr = await repo.readDirTree(root.dirs.find((d) => Buffer.from(d.name).toString() === 'usr')!.tree);
  return (await repo.readDirTree(usr.dirs[0].tree)).files;
}

t.test('init writes format 2; a repo without the setting keeps format 1 until switched', async (t) => {
  const dir = tempDir(t);
  const tree = makeTree(dir, 'tree', 'the tool binary\n');
  const fresh = join(dir, 'fresh');
  const init = await larchOk(['init', '--repo', fresh, '--mode', 'archive', '--json']);
  t.equal(init.json.dirtree_format, 2, 'init --json reports the format');
  t.same(config(fresh), { larch: 1, mode: 'archive', dirtree_format: 2 });
  await larchOk(['commit', '--repo', fresh, '-b', 'main', '--tree', tree, '--version', '1', '--timestamp', '0']);
  t.same(
    (await binEntries(fresh, 'main')).map((f) => [Buffer.from(f.name).toString(), f.size]),
    [['other', 13], ['tool', 16]],
    'a new repo lists each file with its size',
  );

  // A repo made before format 2: config.json has no dirtree_format.
  const old = join(dir, 'old');
  await larchOk(['init', '--repo', old, '--mode', 'archive']);
  writeFileSync(join(old, 'config.json'), JSON.stringify({ larch: 1, mode: 'archive' }, null, 2) + '\n');
  const c1 = await larchOk(['commit', '--repo', old, '-b', 'main', '--tree', tree, '--version', '1', '--timestamp', '0', '--json']);
  t.ok((await binEntries(old, 'main')).every((f) => f.size === undefined), 'an existing repo keeps writing format 1');
  t.equal((await larchOk(['init', '--repo', old, '--mode', 'archive', '--json'])).json.dirtree_format, 1, 'init without the option changes nothing');
  t.same(config(old), { larch: 1, mode: 'archive' }, 'and leaves config.json as it was');

  const sw = await larchOk(['init', '--repo', old, '--mode', 'archive', '--dirtree-format', '2', '--json']);
  t.equal(sw.json.dirtree_format, 2, 'the switch');
  t.same(config(old), { larch: 1, mode: 'archive', dirtree_format: 2 });
  const c2 = await larchOk(['commit', '--repo', old, '-b', 'main', '--tree', tree, '--version', '1', '--timestamp', '0', '--json']);
  t.not(c2.json.commit, c1.json.commit, 'the same tree in format 2 is another commit');
  t.ok((await binEntries(old, 'main')).every((f) => typeof f.size === 'number'), 'after the switch, format 2');

  const bad = await larch(['init', '--repo', old, '--mode', 'archive', '--dirtree-format', '3']);
  t.equal(bad.code, 2, '--dirtree-format 3: USAGE');
  t.match(bad.stderr, /--dirtree-format must be 1 or 2, got '3'/);
  writeFileSync(join(old, 'config.json'), JSON.stringify({ larch: 1, mode: 'archive', dirtree_format: 7 }));
  const corrupt = await larch(['fsck', '--repo', old, '--json']);
  t.equal(corrupt.json?.error?.code ?? corrupt.json?.code, 'REPO_CORRUPT', 'an unknown dirtree_format in config.json is REPO_CORRUPT');
});

t.test('a format-2 tree listing a wrong size: fsck reports it, checkout refuses it', async (t) => {
  const dir = tempDir(t);
  const tree = makeTree(dir, 'tree', 'the tool binary\n'.repeat(100));
  const repoPath = join(dir, 'repo');
  await larchOk(['init', '--repo', repoPath, '--mode', 'bare-user']);
  await larchOk(['commit', '--repo', repoPath, '-b', 'main', '--tree', tree, '--version', '1']);
  t.equal((await larch(['fsck', '--repo', repoPath])).code, 0, 'the honest tree passes');

  // Rewrite /usr/bin with tool's size one byte short, and a commit naming the lie.
  const repo = await Repo.open(repoPath);
  const headId = (await repo.readRef('main'))!;
  const head = await repo.readCommit(headId);
  const root = await repo.readDirTree(head.root.tree);
  const usrEntry = root.dirs.find((d) => Buffer.from(d.name).toString() === 'usr')!;
  const usr = await repo.readDirTree(usrEntry.tree);
  const bin = await repo.readDirTree(usr.dirs[0].tree);
  const tool = bin.files.find((f) => Buffer.from(f.name).toString() === 'tool')!;
  t.equal(tool.size, 1600);
  const txn = await Transaction.begin(repo);
  const binId = await txn.writeMetadata('dirtree', encodeDirTree({ ...bin, files: bin.files.map((f) => (f === tool ? { ...f, size: 1599 } : f)) }));
  const usrId = await txn.writeMetadata('dirtree', encodeDirTree({ ...usr, dirs: [{ ...usr.dirs[0], tree: binId }] }));
  const rootId = await txn.writeMetadata('dirtree', encodeDirTree({ ...root, dirs: root.dirs.map((d) => (d === usrEntry ? { ...d, tree: usrId } : d)) }));
  const lie = await txn.writeMetadata('commit', encodeCommit({ ...head, root: { tree: rootId, meta: head.root.meta }, parent: headId }));
  await txn.commit({ main: lie });
  t.equal(decodeCommit(await repo.readMetadataBytes('commit', lie)).root.tree, rootId);

  const r = await larch(['fsck', '--repo', repoPath, '--json']);
  t.equal(r.code, 5, 'fsck: exit 5');
  const prob = r.json.problems.find((p: { id: string }) => p.id === binId);
  t.ok(prob, 'fsck names the dirtree');
  t.equal(prob?.code, 'OBJECT_CORRUPT');
  t.equal(prob?.path, '/usr/bin/tool', 'and the path');
  t.match(prob?.problem, new RegExp(`lists file ${tool.file} with size 1599 bytes, its content is 1600 bytes`));
  t.equal(r.json.problems.length, 1, 'nothing else is reported');

  const co = await larch(['checkout', '--repo', repoPath, 'main', join(dir, 'co'), '--json']);
  t.equal(co.code, 5, 'checkout: exit 5');
  t.match(co.stderr, /is 1600 bytes, its tree says 1599/);

  const other = join(dir, 'other');
  await larchOk(['init', '--repo', other, '--mode', 'bare-user']);
  const pull = await larch(['pull-local', '--repo', other, repoPath, lie, '--json']);
  t.equal(pull.code, 5, 'a pull of the lying tree: exit 5');
  t.match(pull.json?.error?.message, new RegExp(`file ${tool.file} at '/usr/bin/tool' in '.*' is 1600 bytes, its signed tree says 1599`));
  t.notOk(await (await Repo.open(other)).hasObject('commit', lie), 'and nothing of it is kept');
});

t.test('deltas between a format-1 and a format-2 commit, both ways', async (t) => {
  const dir = tempDir(t);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive', '--dirtree-format', '1']);
  const commit = async (name: string, tool: string) =>
    (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', makeTree(dir, name, tool), '--version', name, '--sign-key', join(dir, 'vendor.key'), '--json'])).json.commit as string;
  const v1 = await commit('v1', 'the tool binary\n'.repeat(200));
  await larchOk(['init', '--repo', server, '--mode', 'archive', '--dirtree-format', '2']);
  const v2 = await commit('v2', 'the tool binary, fixed\n'.repeat(200));
  await larchOk(['init', '--repo', server, '--mode', 'archive', '--dirtree-format', '1']);
  const v3 = await commit('v3', 'the tool binary, fixed again\n'.repeat(200));

  for (const [from, to, label, tree] of [[v1, v2, '1 -> 2', 'v2'], [v2, v3, '2 -> 1', 'v3']]) {
    const device = join(dir, `device-${tree}`);
    await larchOk(['init', '--repo', device, '--mode', 'bare-user']);
    await larchOk(['pull-local', '--repo', device, server, from]);
    const file = join(dir, `delta-${tree}`);
    await larchOk(['delta', 'generate', '--repo', server, '--from', from, '--to', to, '--sign-key', join(dir, 'vendor.key'), '--out', file]);
    const applied = await larchOk(['delta', 'apply', '--repo', device, file, '--key', join(dir, 'vendor.pub'), '--ref', 'os', '--json']);
    t.equal(applied.json.to, to, `${label}: the delta brings the commit`);
    t.equal((await larch(['fsck', '--repo', device])).code, 0, `${label}: fsck passes`);
    await larchOk(['checkout', '--repo', device, 'os', join(dir, `co-${tree}`)]);
    t.same(diffSnapshots(await snapshotTree(join(dir, tree)), await snapshotTree(join(dir, `co-${tree}`)), true), [], `${label}: the checkout is the tree`);
  }
  const device = join(dir, 'device-v2');
  const sizes = (await binEntries(device, 'os')).map((f) => f.size);
  t.same(sizes, [13, 4600], 'the format-2 commit kept its sizes through the delta');
});

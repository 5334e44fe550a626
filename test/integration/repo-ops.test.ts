/** prune and pull-local: what is kept, what is deleted, and that copies are verified. */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { IS_ROOT, diffSnapshots, larch, larchOk, snapshotTree, tempDir } from '../helpers.ts';

async function history(dir: string, mode: string, versions: number) {
  const repo = join(dir, `repo-${mode}`);
  const tree = join(dir, `tree-${mode}`);
  mkdirSync(join(tree, 'usr'), { recursive: true });
  await larchOk(['init', '--repo', repo, '--mode', mode]);
  const ids = [];
  for (let v = 1; v <= versions; v++) {
    writeFileSync(join(tree, 'usr', `only-in-${v}`), `content ${v}\n`.repeat(50));
    writeFileSync(join(tree, 'usr', 'common'), 'same in every version\n');
    ids.push((await larchOk(['commit', '--repo', repo, '-b', 'main', '--tree', tree, '--version', String(v), '--json'])).json.commit);
  }
  return { repo, tree, ids };
}

t.test('prune --keep deletes old history and exactly what only it used', async (t) => {
  const dir = tempDir(t);
  const { repo, ids } = await history(dir, 'archive', 4);
  const dry = (await larchOk(['prune', '--repo', repo, '--keep', '2', '--dry-run', '--json'])).json;
  t.ok(dry.objects_deleted > 0, 'dry run counts');
  t.equal((await larchOk(['log', '--repo', repo, 'main', '--json'])).json.length, 4, 'dry run deletes nothing');
  const r = (await larchOk(['prune', '--repo', repo, '--keep', '2', '--json'])).json;
  t.equal(r.commits_kept, 2);
  t.equal(r.objects_deleted, dry.objects_deleted, 'the dry run predicted it');
  const log = (await larchOk(['log', '--repo', repo, 'main', '--json'])).json;
  t.same(log.map((c: { commit: string }) => c.commit), [ids[3], ids[2]], 'two newest kept');
  t.equal((await larch(['fsck', '--repo', repo])).code, 0, 'fsck clean after prune');
  t.equal((await larch(['show', '--repo', repo, ids[0], '--json'])).json.error.code, 'NOT_FOUND', 'old commit gone');
  await larchOk(['checkout', '--repo', repo, 'main', join(dir, 'co')]);
  t.same(readdirSync(join(dir, 'co', 'usr')).sort(), ['common', 'only-in-1', 'only-in-2', 'only-in-3', 'only-in-4'], 'the kept tree is whole');
  const again = (await larchOk(['prune', '--repo', repo, '--json'])).json;
  t.equal(again.objects_deleted, 0, 'nothing more to delete');
});

t.test('pull-local: archive -> bare-user -> archive keeps the commit and its signature', async (t) => {
  const dir = tempDir(t);
  const { repo, tree, ids } = await history(dir, 'archive', 2);
  await larchOk(['keygen', '--out', join(dir, 'k')]);
  await larchOk(['sign', '--repo', repo, '--sign-key', join(dir, 'k.key'), 'main']);
  const dev = join(dir, 'device');
  await larchOk(['init', '--repo', dev, '--mode', IS_ROOT ? 'bare' : 'bare-user']);
  const p = (await larchOk(['pull-local', '--repo', dev, repo, 'main', '--json'])).json;
  t.equal(p.commit, ids[1]);
  t.equal((await larch(['verify', '--repo', dev, '--key', join(dir, 'k.pub'), 'main'])).code, 0, 'signature came along');
  t.equal((await larch(['fsck', '--repo', dev])).code, 0, 'fsck clean');
  const again = (await larchOk(['pull-local', '--repo', dev, repo, 'main', '--json'])).json;
  t.equal(again.objects_written, 0, 'pulling again writes nothing');
  t.equal(again.objects_reused, p.objects_written + p.objects_reused, 'and counts every object as reused (files too)');
  await larchOk(['checkout', '--repo', dev, 'main', join(dir, 'co')]);
  t.same(diffSnapshots(await snapshotTree(tree), await snapshotTree(join(dir, 'co'))), [], 'checkout equals the tree');
  const back = join(dir, 'back');
  await larchOk(['init', '--repo', back, '--mode', 'archive']);
  await larchOk(['pull-local', '--repo', back, dev, 'main']);
  t.equal((await larchOk(['show', '--repo', back, 'main', '--json'])).json.commit, ids[1], 'same id after a round trip');
});

t.test('pull-local refuses a corrupt source object and keeps nothing of the pull', async (t) => {
  const dir = tempDir(t);
  const { repo } = await history(dir, 'archive', 1);
  const obj = (await larchOk(['ls', '--repo', repo, 'main', '/usr', '--json'])).json.find((e: { path: string }) => e.path === '/usr/common').object;
  const p = join(repo, 'objects', obj.slice(0, 2), `${obj.slice(2)}.filez`);
  const bytes = readFileSync(p);
  bytes[bytes.length - 4] ^= 0x10;
  writeFileSync(p, bytes);
  const dev = join(dir, 'device');
  await larchOk(['init', '--repo', dev, '--mode', 'bare-user']);
  const r = await larch(['pull-local', '--repo', dev, repo, 'main', '--json']);
  t.equal(r.json.error.code, 'OBJECT_CORRUPT');
  t.match(r.json.error.message, /\/usr\/common/, 'names the path');
  t.same((await larchOk(['refs', '--repo', dev, '--json'])).json, [], 'no ref');
  const objects = readdirSync(join(dev, 'objects')).flatMap((d) => readdirSync(join(dev, 'objects', d)));
  t.same(objects, [], 'no object of the failed pull was kept');
});

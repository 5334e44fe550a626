/**
 * Issue 16's defects "no product or hardware binding" and "the delta path stores objects and the
 * commit before it checks the commit's own signature". One vendor key signs two products' repos;
 * a product-A device is offered product B's repo (and repos whose commits are of another
 * architecture or hardware) at its own remote's path, and refuses each before anything is
 * written. A delta signed by the vendor that carries an unsigned or foreign-signed commit leaves
 * the device's repo as it was.
 */
import t from 'tap';
import { existsSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { diffSnapshots, larch, larchOk, snapshotTree, tempDir } from '../helpers.ts';
import { REF, expectFail, makeTree } from '../device-helpers.ts';

t.test('a product-A device refuses another product, architecture or hardware, and unsigned commits in signed deltas', async (t) => {
  const dir = tempDir(t);
  const key = join(dir, 'vendor');
  const other = join(dir, 'other');
  await larchOk(['keygen', '--out', key]);
  await larchOk(['keygen', '--out', other]);
  const trees = [1, 2].map((v) => {
    const tree = join(dir, `tree${v}`);
    makeTree(tree, v);
    return tree;
  });
  let time = 1_700_000_000;
  /** A repo (its own collection id, or none) with one signed commit of `tree` on REF, published. */
  const product = async (name: string, collection: string | null, commitArgs: string[], tree = trees[1]) => {
    const repo = join(dir, name);
    await larchOk(['init', '--repo', repo, '--mode', 'archive', ...(collection ? ['--collection-id', collection] : [])]);
    const c = await larchOk(['commit', '--repo', repo, '-b', REF, '--tree', tree, '--owner', '0:0', '--sign-key', `${key}.key`, '--timestamp', String((time += 1000)), '--json', ...commitArgs]);
    await larchOk(['publish', '--repo', repo, '--sign-key', `${key}.key`]);
    return { repo, commit: c.json.commit as string };
  };

  // Product A: collection com.example.a, amd64, hardware board-a. The device records all three.
  const a = await product('a', 'com.example.a', ['--version', '1', '--compatible', 'board-a', '--metadata', 'larch.architecture=amd64'], trees[0]);
  const shown = await larchOk(['show', '--repo', a.repo, a.commit, '--json']);
  t.equal(shown.json.metadata['larch.collection_id'], 'com.example.a', 'a commit of the repo carries its collection id');
  t.equal(shown.json.metadata['larch.compatible'], 'board-a', 'commit --compatible sets larch.compatible');
  // The device's remote is a path whose target the test switches, as a wrong server or mirror would.
  const remote = join(dir, 'remote');
  const serve = (repo: string) => {
    rmSync(remote, { force: true });
    symlinkSync(repo, remote);
  };
  serve(a.repo);
  const dev = join(dir, 'dev');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', remote, '--ref', REF, '--keys', `${key}.pub`, '--bootloader', 'uboot']);
  const config = () => JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8'));
  const provisioned = config();
  t.match(provisioned, { collection_id: 'com.example.a', compatible: 'board-a', architecture: 'amd64' }, 'provision records the summary collection id and the commit architecture and compatible id');

  // The other repos, published after A's (their serials are not below the one the device holds).
  const b = await product('b', 'com.example.b', ['--version', '2', '--compatible', 'board-b', '--metadata', 'larch.architecture=arm64']);
  const arm = await product('arm', null, ['--version', '2', '--compatible', 'board-a', '--metadata', 'larch.architecture=arm64']);
  const hw = await product('hw', null, ['--version', '2', '--compatible', 'board-b', '--metadata', 'larch.architecture=amd64']);
  const older = await product('older', null, ['--version', '2']);
  // v2 in A itself: unsigned, in a delta the vendor signed; and a delta file to a commit signed by another key.
  const unsigned = (await larchOk(['commit', '--repo', a.repo, '-b', REF, '--tree', trees[1], '--owner', '0:0', '--version', '2', '--timestamp', String((time += 1000)), '--json'])).json.commit as string;
  await larchOk(['delta', 'generate', '--repo', a.repo, '--from', a.commit, '--to', unsigned, '--sign-key', `${key}.key`]);
  const foreign = (await larchOk(['commit', '--repo', a.repo, '-b', 'os/foreign', '--tree', trees[1], '--owner', '0:0', '--version', '3', '--parent', a.commit, '--sign-key', `${other}.key`, '--json'])).json.commit as string;
  const foreignDelta = join(dir, 'foreign.delta');
  await larchOk(['delta', 'generate', '--repo', a.repo, '--from', a.commit, '--to', foreign, '--sign-key', `${key}.key`, '--out', foreignDelta]);

  const repoState = () => snapshotTree(join(dev, 'larch/repo'));
  const before = await repoState();
  const refuses = async (repo: string, reason: string, device: string, offered: string, commands: string[][]) => {
    serve(repo);
    for (const args of commands) {
      const r = await larch([...args, '--sysroot', dev, '--json']);
      expectFail(t, r, 'REFUSED', `${reason}: ${args[0]}`);
      t.match(r.json?.error?.data, { reason, device, offered }, `${reason}: ${args[0]} names both values`);
      t.equal(r.code, 14, `${reason}: ${args[0]} exits 14`);
    }
    t.same(diffSnapshots(before, await repoState()), [], `${reason}: the device repo is unchanged`);
    t.notOk(existsSync(join(dev, 'larch/deploy/B.json')), `${reason}: nothing staged (slot B has no deployment)`);
  };

  await refuses(b.repo, 'wrong-collection', 'com.example.a', 'com.example.b', [['check'], ['upgrade'], ['deploy', '2']]);
  t.equal(config().summary_serial, provisioned.summary_serial, "wrong-collection: the other product's summary did not raise the serial floor");
  // Without a collection id in the summary, the commit's architecture and hardware still bind it
  // (that summary is accepted: its serial is the floor from then on).
  await refuses(arm.repo, 'wrong-architecture', 'amd64', 'arm64', [['check'], ['upgrade']]);
  await refuses(hw.repo, 'incompatible', 'board-a', 'board-b', [['upgrade']]);

  // A delta signed by the vendor, carrying a commit nobody signed: refused, nothing stored.
  await larchOk(['publish', '--repo', a.repo, '--sign-key', `${key}.key`]);
  serve(a.repo);
  const floor = config().summary_serial;
  const up = await larch(['upgrade', '--sysroot', dev, '--json']);
  expectFail(t, up, 'SIGNATURE_MISSING', 'an unsigned commit in a signed delta');
  t.same(diffSnapshots(before, await repoState()), [], 'unsigned commit: the device repo is unchanged (no object, no commit)');
  t.notOk(existsSync(join(dev, 'larch/deploy/B.json')), 'unsigned commit: nothing staged');
  t.ok(config().summary_serial >= floor, 'unsigned commit: the serial floor only moved up');
  // The same delta given by hand to the device's repo.
  const byHand = await larch(['delta', 'apply', '--repo', join(dev, 'larch/repo'), join(a.repo, 'deltas', `${a.commit}-${unsigned}`), '--key', `${key}.pub`, '--json']);
  expectFail(t, byHand, 'SIGNATURE_MISSING', 'delta apply of a signed delta carrying an unsigned commit');
  t.equal(byHand.json?.error?.data?.reason, 'commit-unsigned', 'delta apply: data.reason commit-unsigned');
  t.same(diffSnapshots(before, await repoState()), [], 'delta apply (unsigned commit): the device repo is unchanged');

  // delta apply on the device's repo: the commit signed by a key the device does not trust.
  const applied = await larch(['delta', 'apply', '--repo', join(dev, 'larch/repo'), foreignDelta, '--key', `${key}.pub`, '--json']);
  expectFail(t, applied, 'SIGNATURE_INVALID', 'delta apply of a commit signed by an untrusted key');
  t.equal(applied.json?.error?.data?.reason, 'commit-untrusted', 'delta apply: data.reason commit-untrusted');
  t.same(diffSnapshots(before, await repoState()), [], 'delta apply (untrusted commit): the device repo is unchanged');

  // An older commit (no binding in it, no collection id in the summary) is accepted as before.
  await larchOk(['publish', '--repo', older.repo, '--sign-key', `${key}.key`]);
  serve(older.repo);
  const ok = await larchOk(['upgrade', '--sysroot', dev, '--download-only', '--json']);
  t.equal(ok.json.result, 'downloaded', 'a commit and summary without binding fields are accepted');
  t.equal(ok.json.to.commit, older.commit, 'the older-style commit was downloaded');
});

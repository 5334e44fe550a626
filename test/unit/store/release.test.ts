/**
 * The repo's release counter and ref binding (store/release.ts, formats.md §12.1): every commit
 * gets larch.ref and larch.release one above the repo's highest, across branches; R/release keeps
 * the counter when a ref goes; a ref head with a higher release (pulled in) counts; --release
 * must be above the highest unless forced; compose's no-change check still sees an unchanged head.
 */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../../../src/store/repo.ts';
import { REF_KEY, RELEASE_KEY, commitRelease, highestRelease } from '../../../src/store/release.ts';
import { createCommit } from '../../../src/store/write-commit.ts';
import { rejectsCode, tempDir } from '../../helpers.ts';

async function setup(t: Parameters<typeof tempDir>[0]) {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'a'), 'a\n');
  const repo = await Repo.init(join(dir, 'repo'), 'archive');
  const commit = (branch: string, extra: Partial<Parameters<typeof createCommit>[1]> = {}) => createCommit(repo, { source: { tree }, branch, version: '1', xattrs: false, owner: { uid: 0, gid: 0 }, ...extra });
  return { dir, tree, repo, commit };
}

t.test('releases go up per repo, across branches; larch.ref names the branch', async (t) => {
  const { repo, commit } = await setup(t);
  const a = await commit('os/stable');
  const b = await commit('os/beta');
  const c = await commit('os/stable', { timestamp: 5 });
  t.same([a.release, b.release, c.release], [1, 2, 3]);
  const meta = (await repo.readCommit(b.commit)).metadata;
  t.equal(meta.get(RELEASE_KEY), 2);
  t.equal(meta.get(REF_KEY), 'os/beta');
  t.equal(readFileSync(join(repo.path, 'release'), 'utf8'), '3\n', 'R/release');
  await repo.writeRef('os/stable', null);
  await repo.writeRef('os/beta', null);
  t.equal(await highestRelease(repo), 3, 'a deleted ref never lowers the counter');
  t.equal((await commit('os/new')).release, 4);
});

t.test('a ref head with a higher release (pulled in from another repo) counts; no R/release reads as 0', async (t) => {
  const { repo, commit } = await setup(t);
  const high = await commit('os/stable', { release: 41 });
  writeFileSync(join(repo.path, 'release'), '0\n');
  t.equal(await highestRelease(repo), 41);
  t.equal((await commit('os/other')).release, 42);
  t.equal(commitRelease((await repo.readCommit(high.commit)).metadata), 41);
});

t.test('--release must be above the highest unless forced', async (t) => {
  const { commit } = await setup(t);
  await commit('os/stable', { release: 7 });
  await rejectsCode(t, commit('os/stable', { release: 7 }), 'INVALID_INPUT', 'equal to the highest', { data: { release: 7, highest: 7 } });
  t.equal((await commit('os/stable', { release: 6, forceRelease: true, timestamp: 9 })).release, 6, '--force takes it');
  t.equal((await commit('os/stable', { timestamp: 10 })).release, 8, 'the next one is above the highest, not above the head');
});

t.test("an unchanged tree and metadata is still the head (compose's no-change check), whatever the release", async (t) => {
  const { commit } = await setup(t);
  const first = await commit('os/stable', { unlessUnchanged: true, timestamp: 1 });
  const again = await commit('os/stable', { unlessUnchanged: true, timestamp: 2 });
  t.same([again.changed, again.commit, again.release], [false, first.commit, 1]);
  t.equal((await commit('os/stable', { unlessUnchanged: true, version: '2' })).release, 2, 'a change is a new release');
});

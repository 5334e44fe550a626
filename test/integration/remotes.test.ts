/**
 * Named remotes and rebase (issue 20, must-show 1), through the Bun binary against two servers:
 * a device on os/stable adds the beta server with the beta key, rebases to os/beta (its /etc
 * and /var kept, the origin of each deployment in status), and comes back to os/stable once
 * stable has a release above beta's: below it the release floor refuses, and a stable commit
 * signed by the beta key alone is refused under the stable remote's trust. A rollback of a
 * staged rebase makes the device follow the channel it runs again.
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, expectFail, makeTree, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

const BETA = 'os/beta';

t.test('rebase from os/stable to os/beta on another server and back; the beta key is not trusted for stable', async (t) => {
  const stable = await vendor(t);
  const beta = await vendor(t);
  const v1 = await stable.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', stable.url, '--ref', REF, '--keys', `${stable.key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);

  // Beta's release 2, on its own ref and server, signed by its own key; its release counter
  // above stable's (a vendor that runs two servers keeps one counter: docs/fleet.md).
  const betaTree = join(beta.dir, 'beta-tree');
  makeTree(betaTree, 2);
  const b2 = (await larchOk(['commit', '--repo', beta.repo, '-b', BETA, '--tree', betaTree, '--version', '2', '--subject', 'beta 2', '--sign-key', `${beta.key}.key`, '--owner', '0:0', '--timestamp', '1700002000', '--release', '10', '--json'])).json.commit as string;
  await larchOk(['publish', '--repo', beta.repo, '--sign-key', `${beta.key}.key`]);

  // Local state the rebase must keep.
  writeFileSync(join(dev, 'larch/deploy/A/etc/local-only.conf'), 'mine\n');
  mkdirSync(join(dev, 'var/lib/app'), { recursive: true });
  writeFileSync(join(dev, 'var/lib/app/data.db'), 'precious\n');

  t.equal((await larch(['rebase', '--sysroot', dev, 'beta:os/beta'])).json?.error?.code ?? 'NOT_FOUND', 'NOT_FOUND', 'an unknown remote is NOT_FOUND');
  const added = await larchOk(['remote', 'add', '--sysroot', dev, 'beta', beta.url, '--keys', `${beta.key}.pub`, '--json']);
  t.match(added.json, { name: 'beta', url: beta.url, kind: 'http', following: false, trust: { from: 'own', version: null } });
  expectFail(t, await larch(['remote', 'add', '--sysroot', dev, 'beta', beta.url, '--json']), 'EXISTS', 'a taken name');
  expectFail(t, await larch(['remote', 'add', '--sysroot', dev, 'Bad/Name', beta.url, '--json']), 'USAGE', 'a bad name');
  let list = (await larchOk(['remote', 'list', '--sysroot', dev, '--json'])).json.remotes;
  t.same(list.map((r: any) => [r.name, r.url, r.following, r.trust.from]), [['origin', stable.url, true, 'own'], ['beta', beta.url, false, 'own']], 'remote list --json: both, origin followed');

  // A rebase that is rolled back before it boots: the device follows what it runs again.
  const staged = await larchOk(['rebase', '--sysroot', dev, 'beta:os/beta', '--json']);
  t.match(staged.json, { result: 'staged', to: { slot: 'B', commit: b2, version: '2' }, following: { remote: 'beta', ref: BETA } });
  t.match(await status(dev), { following: 'beta', ref: BETA, remote: beta.url, pending: { slot: 'B', origin: { name: 'beta', ref: BETA, remote: beta.url } } });
  t.match(await larchOk(['rollback', '--sysroot', dev, '--json']), { json: { result: 'cancelled' } });
  t.match(await status(dev), { following: 'origin', ref: REF, remote: stable.url }, 'the cancelled rebase: the device follows os/stable on origin again');

  // The rebase, booted.
  await larchOk(['rebase', '--sysroot', dev, 'beta:os/beta']);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
  let s = await status(dev);
  t.match(s, { following: 'beta', ref: BETA, booted: { slot: 'B', commit: b2, origin: { name: 'beta', ref: BETA } }, rollback: { slot: 'A', commit: v1, origin: { name: 'origin', ref: REF, remote: stable.url } } }, 'status: the origin of every deployment');
  t.equal(readFileSync(join(dev, 'larch/deploy/B/etc/local-only.conf'), 'utf8'), 'mine\n', '/etc edits kept');
  t.equal(readFileSync(join(dev, 'var/lib/app/data.db'), 'utf8'), 'precious\n', '/var kept');
  t.match((await larchOk(['status', '--sysroot', dev])).stdout, /from beta \(.*\) os\/beta/, 'the text status names the remote');
  list = (await larchOk(['remote', 'list', '--sysroot', dev, '--json'])).json.remotes;
  t.same(list.map((r: any) => [r.name, r.following]), [['origin', false], ['beta', true]], 'remote list: beta followed now');
  expectFail(t, await larch(['remote', 'delete', '--sysroot', dev, 'beta', '--json']), 'REFUSED', 'the followed remote cannot be deleted');
  expectFail(t, await larch(['remote', 'delete', '--sysroot', dev, 'origin', '--json']), 'REFUSED', 'origin cannot be deleted');
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'no-update' }, 'upgrade follows os/beta on beta now: nothing newer');

  // Back to stable: a release below beta's (the floor, 10) is refused before anything is downloaded.
  await stable.release(3);
  const low = await larch(['rebase', '--sysroot', dev, 'origin:os/stable', '--json']);
  expectFail(t, low, 'REFUSED', 'stable release 2, below the floor');
  t.equal(low.json?.error?.data?.reason, 'below-release-floor');
  t.match(await status(dev), { following: 'beta', ref: BETA, pending: null }, 'a refused rebase changes nothing');

  // A stable commit (a release above the floor) signed by the beta key alone: refused under origin's trust.
  await stable.release(4, { signKey: beta.key, commitArgs: ['--release', '11'] });
  const untrusted = await larch(['rebase', '--sysroot', dev, 'origin:os/stable', '--json']);
  expectFail(t, untrusted, 'SIGNATURE_INVALID', 'a commit signed by a key only beta trusts, on the stable remote');
  t.match(untrusted.json?.error, { message: /is not signed by a trusted key/, data: { reason: 'untrusted' } });
  t.match(await status(dev), { following: 'beta', pending: null });

  // Stable's next release, properly signed: the way back.
  const v5 = await stable.release(5);
  const noRef = await larch(['rebase', '--sysroot', dev, 'os/stable', '--json']);
  expectFail(t, noRef, 'NOT_FOUND', 'REF alone is a ref of the followed remote, and beta serves no os/stable');
  t.same(noRef.json?.error?.data?.refs, [BETA], 'the refusal lists the refs it serves');
  const back = await larchOk(['rebase', '--sysroot', dev, 'origin:os/stable', '--json']);
  t.match(back.json, { result: 'staged', to: { slot: 'A', commit: v5, version: '5' }, following: { remote: 'origin', ref: REF } });
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { outcome: 'confirmed' } });
  s = await status(dev);
  t.match(s, { following: 'origin', ref: REF, remote: stable.url, booted: { slot: 'A', commit: v5, origin: { name: 'origin', ref: REF } }, rollback: { slot: 'B', origin: { name: 'beta' } } });
  t.equal(readFileSync(join(dev, 'larch/deploy/A/etc/local-only.conf'), 'utf8'), 'mine\n', '/etc edits kept on the way back');
  t.match((await larchOk(['rebase', '--sysroot', dev, 'origin:os/stable', '--json'])).json, { result: 'no-change' }, 'rebase to what is followed: no change');

  // beta is not followed now, but slot B came from it.
  expectFail(t, await larch(['remote', 'delete', '--sysroot', dev, 'beta', '--json']), 'REFUSED', 'a remote a deployment came from');
  t.match((await larchOk(['remote', 'delete', '--sysroot', dev, 'beta', '--force', '--json'])).json, { deleted: 'beta' });
  t.same((await larchOk(['remote', 'list', '--sysroot', dev, '--json'])).json.remotes.map((r: any) => r.name), ['origin']);
  t.notOk(existsSync(join(dev, 'larch/remotes/beta')), "the remote's keys are gone with it");
});

t.test('a rebase to a file:// copy of the repo whose slot falls back: the device follows the channel it runs again', async (t) => {
  const stable = await vendor(t);
  await stable.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', stable.url, '--ref', REF, '--keys', `${stable.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  // A copy of the vendor repo on a mounted stick (file://; no keys: the origin's trust), followed under another name.
  await larchOk(['remote', 'add', '--sysroot', dev, 'mirror', `file://${stable.repo}`]);
  const v2 = await stable.release(2);
  t.match((await larchOk(['rebase', '--sysroot', dev, 'mirror:os/stable', '--json'])).json, { result: 'staged', to: { slot: 'B', commit: v2 }, following: { remote: 'mirror' } });
  t.match((await larchOk(['remote', 'list', '--sysroot', dev, '--json'])).json.remotes, [{ name: 'origin', following: false }, { name: 'mirror', following: true, trust: { from: 'origin' } }]);
  for (let i = 1; i <= 3; i++) t.match((await larchOk(['sim-boot', '--sysroot', dev, '--unhealthy', '--json'])).json, { slot: 'B', check: { outcome: 'retry' } }, `try ${i}: unhealthy`);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { fell_back: true, from: 'B' } });
  t.match(await status(dev), { following: 'origin', ref: REF, booted: { slot: 'A', origin: { name: 'origin' } } }, 'after the fallback the device follows origin again');
  const journal = readFileSync(join(dev, 'larch/journal.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.match(journal.filter((e) => e.event === 'rebase').map((e) => e.data), [{ remote: 'mirror', restored: false }, { remote: 'origin', restored: true }], 'journaled: the rebase, then its undoing');
});

/**
 * Package layering failures leave the device as it was (issue 17, must-show 5): a failing
 * maintainer script, an unresolvable dependency and a full disk each end with a clear error
 * (LAYER_FAILED with data.reason, or NO_SPACE) and nothing staged: the deployments, the boot
 * files and env, and the repo's refs are exactly as before, and the device boots its deployment.
 */
import t from 'tap';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, status, tmpfs, vendor } from '../device-helpers.ts';
import { diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir, testNeeding } from '../helpers.ts';
import { aptRepo, layeringCannot, layeringWorld, realDebs, setDeviceSources, tinyDeb } from '../layering-helpers.ts';

/** Everything a failed layering must leave as it was. */
async function deviceState(dev: string) {
  return {
    deploy: await snapshotTree(join(dev, 'larch/deploy')),
    boot: await snapshotTree(join(dev, 'boot')),
    refs: (await larchOk(['refs', '--repo', join(dev, 'larch/repo'), '--json'])).json,
  };
}

async function expectUntouched(t: Test, dev: string, before: Awaited<ReturnType<typeof deviceState>>, what: string): Promise<void> {
  const after = await deviceState(dev);
  t.same(diffSnapshots(before.deploy, after.deploy), [], `${what}: deployments untouched`);
  t.same(diffSnapshots(before.boot, after.boot), [], `${what}: boot files and env untouched`);
  t.same(after.refs, before.refs, `${what}: no new ref in the repo`);
  t.notOk(existsSync(join(dev, 'larch/layering/build')), `${what}: the isolated root is gone`);
  const s = await status(dev);
  t.equal(s.pending, null, `${what}: nothing staged`);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { healthy: true } }, `${what}: the device still boots slot A`);
}

testNeeding(t, 'layering failures leave the device as it was', layeringCannot(), { timeout: 900_000 }, async (t) => {
  const work = tempDir(t, 'larch-layering-fail-');
  const debs = join(work, 'debs');
  const failing = tinyDeb(debs, { name: 'larch-test-failing', version: '1.0', postinst: 'echo "larch-test-failing: cannot configure" >&2\nexit 1' });
  const unresolvable = tinyDeb(debs, { name: 'larch-test-unresolvable', version: '1.0', depends: 'larch-test-missing (>= 1)' });
  const repo = await aptRepo(t, join(work, 'apt'), [failing, unresolvable, ...realDebs()]);
  const mnt = join(work, 'mnt');
  tmpfs(t, mnt, '1g');
  const w = await layeringWorld(t, { deviceParent: mnt });
  const dev = w.dev;
  setDeviceSources(join(dev, 'larch/deploy/A'), repo.line);
  const before = await deviceState(dev);

  const script = await larch(['install', 'larch-test-failing', '--sysroot', dev, '--json']);
  t.equal(script.code, 15, 'failing postinst: exit 15');
  t.match(script.json?.error, { code: 'LAYER_FAILED', data: { reason: 'script-failed' }, message: /larch-test-failing/ }, 'LAYER_FAILED script-failed, naming the package');
  await expectUntouched(t, dev, before, 'failing postinst');

  const deps = await larch(['install', 'larch-test-unresolvable', '--sysroot', dev, '--json']);
  t.equal(deps.code, 15, 'unresolvable dependency: exit 15');
  t.match(deps.json?.error, { code: 'LAYER_FAILED', data: { reason: 'unresolvable' }, message: /larch-test-missing/ }, 'LAYER_FAILED unresolvable, naming the missing dependency');
  await expectUntouched(t, dev, before, 'unresolvable dependency');

  const missing = await larch(['install', 'larch-test-nonexistent', '--sysroot', dev, '--json']);
  t.match(missing.json?.error, { code: 'LAYER_FAILED', data: { reason: 'not-found' } }, 'a package in no source: LAYER_FAILED not-found');

  // A full disk: the sysroot's filesystem keeps 3 MiB free, less than building jq's layer takes.
  const usedKiB = Number(sh(`df -k --output=used '${mnt}' | tail -1`).trim());
  sh(`mount -o remount,size=${usedKiB + 3 * 1024}k '${mnt}'`);
  const full = await larch(['install', 'jq', '--sysroot', dev, '--json']);
  t.equal(full.code, 8, 'full disk: exit 8');
  t.match(full.json?.error, { code: 'NO_SPACE' }, `NO_SPACE (${full.json?.error?.message})`);
  t.match(full.json?.error?.hint, /nothing was staged|cleanup/, 'the hint says what to do');
  await expectUntouched(t, dev, before, 'full disk');
});

t.test('a derived (larch.local) commit offered by a server is refused, even signed', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const meta = join(v.dir, 'local.json');
  writeFileSync(meta, JSON.stringify({ 'larch.local': true }));
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const forged = await v.release(2, { commitArgs: ['--metadata-json', meta] });
  const r = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(r.code, 14, 'exit 14');
  t.match(r.json?.error, { code: 'REFUSED', data: { reason: 'local-commit-from-remote', commit: forged } }, 'REFUSED local-commit-from-remote');
  t.equal((await status(dev)).pending, null, 'nothing staged');
  const p = await larch(['provision', '--sysroot', join(tempDir(t), 'device2'), '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--json']);
  t.match(p.json?.error, { code: 'REFUSED', data: { reason: 'local-commit-from-remote' } }, 'provision refuses it too');
});

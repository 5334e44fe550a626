/**
 * deploy's target (issue 20, must-show 3 in part): a unique commit id prefix, searched in the
 * ref's whole history on the remote; the answer names the version staged and the newest; a
 * commit the device has already deploys with no remote at all. The ambiguous prefix is
 * test/unit/agent/deploy-target.test.ts (two real commits sharing 4 hex digits are luck).
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, expectFail, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

t.test('deploy by id prefix over the whole history, the newest named; offline for a commit the device has', async (t) => {
  const v = await vendor(t);
  const [v1, v2, v3] = [await v.release(1), await v.release(2), await v.release(3)];
  await v.release(4);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'grub', '--version', '1']);
  await larchOk(['sim-boot', '--sysroot', dev]);

  const text = await larchOk(['deploy', '--sysroot', dev, v2.slice(0, 10)]);
  t.match(text.stdout, /^staged version 2 in slot B.*\nnewest available: version 4 /, 'the text answer names the version staged and the newest');
  const d = await larchOk(['deploy', '--sysroot', dev, v3.slice(0, 8), '--json']);
  t.match(d.json, { result: 'staged', to: { slot: 'B', commit: v3, version: '3' }, newest: { version: '4' } }, 'an 8-digit prefix of release 3, one commit below the head');
  expectFail(t, await larch(['deploy', '--sysroot', dev, 'fedcba98', '--json']), 'NOT_FOUND', 'a prefix of no commit');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });

  // No route to the server: release 1, in slot A, deploys from the device's repo.
  const config = join(dev, 'larch/config.json');
  writeFileSync(config, readFileSync(config, 'utf8').replace(v.url, 'http://127.0.0.1:9'));
  const offline = await larchOk(['deploy', '--sysroot', dev, '1', '--allow-downgrade', '--json']);
  t.match(offline.json, { result: 'staged', to: { slot: 'A', commit: v1, version: '1' }, newest: null }, 'deployed without the remote');
  t.match(await status(dev), { pending: { slot: 'A', commit: v1 } });
  const remote = await larch(['deploy', '--sysroot', dev, '2', '--json']);
  t.equal(remote.json?.error?.code, 'IO', `a release the device does not have needs the remote: ${remote.json?.error?.message}`);
});

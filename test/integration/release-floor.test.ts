/**
 * Anti-rollback without a clock and ref binding, through the Bun binary (issue 16, Build 4):
 * a device that booted release 7 good refuses release 6 by upgrade (through a delta), deploy,
 * deploy --allow-downgrade below the vendor floor (larch.min_release), rollback, and at boot
 * (sim-boot runs bootloaderChoose, which the real scripts answer to in board/boot-cases.json);
 * a commit made for os/beta served as os/stable is refused; rollback with no vendor floor still
 * works and lowers the floor, so the old slot boots.
 */
import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

/** A device provisioned (U-Boot env) with the vendor's head, booted once through sim-boot. */
async function device(t: Test, v: Vendor): Promise<string> {
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

const env = async (dev: string) => (await larchOk(['bootenv', 'list', '--uboot', join(dev, 'boot/fw_env.config'), '--lock', join(dev, 'larch/env.lock'), '--json'])).json.vars;
const floorFile = (dev: string) => JSON.parse(readFileSync(join(dev, 'larch/release-floor.json'), 'utf8'));
const hasCommit = (dev: string, id: string) => existsSync(join(dev, 'larch/repo/objects', id.slice(0, 2), `${id.slice(2)}.commit`));

async function refused(t: Test, args: string[], data: Record<string, unknown>, what: string): Promise<void> {
  const r = await larch([...args, '--json']);
  t.equal(r.code, 14, `${what}: exit 14 (REFUSED)`);
  t.match(r.json?.error, { code: 'REFUSED', data }, `${what}: ${r.json?.error?.message}`);
}

t.test('a device that booted release 7 good refuses release 6: upgrade through a delta, deploy, --allow-downgrade below the vendor floor, rollback, and at boot', async (t) => {
  const v = await vendor(t);
  const c6 = await v.release(6, { commitArgs: ['--release', '6'] });
  const dev = await device(t, v);
  t.match(floorFile(dev), { format: 1, floor: 6, commit: c6, reason: 'marked-good' }, 'the first boot good sets the floor');
  t.match(await env(dev), { BOOT_RELEASES: '6 6 0' }, 'and the boot env: floor, slot A, slot B');

  // Release 7 says the vendor allows no downgrade below 7 (larch.min_release).
  const meta = join(v.dir, 'min7.json');
  writeFileSync(meta, JSON.stringify({ 'larch.min_release': 7 }));
  const c7 = await v.release(7, { commitArgs: ['--metadata-json', meta] });
  t.match((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json, { result: 'staged', to: { commit: c7 } });
  t.match(await env(dev), { BOOT_RELEASES: '6 6 7' }, 'staging writes the release of slot B');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { outcome: 'confirmed' } });
  t.match(floorFile(dev), { floor: 7, commit: c7 }, 'booting release 7 good raises the floor');
  t.match(await env(dev), { BOOT_RELEASES: '7 6 7' });

  // The head becomes release 6 again (a key that signs it, version and time newer), with a delta from 7.
  const deltasBefore = readFileSync(join(v.dir, 'access.log'), 'utf8').match(/\/deltas\//g)?.length ?? 0;
  const bad = await v.release(8, { commitArgs: ['--release', '6', '--force'] });
  await refused(t, ['upgrade', '--sysroot', dev], { reason: 'below-release-floor', release: 6, floor: 7, commit: bad }, 'upgrade');
  t.notOk(hasCommit(dev, bad), 'nothing was stored: refused on the commit object alone');
  t.equal(readFileSync(join(v.dir, 'access.log'), 'utf8').match(/\/deltas\//g)?.length ?? 0, deltasBefore, 'the delta to it was never fetched');
  await refused(t, ['deploy', '--sysroot', dev, '8'], { reason: 'below-release-floor', release: 6, floor: 7, commit: bad }, 'deploy 8 (a newer version, release 6)');
  await refused(t, ['deploy', '--sysroot', dev, '6'], { reason: 'downgrade', commit: c6 }, 'deploy 6 (an older version: the version check, as before)');
  await refused(t, ['deploy', '--sysroot', dev, '6', '--allow-downgrade'], { reason: 'below-release-floor', release: 6, floor: 7, min_release: 7 }, 'deploy 6 --allow-downgrade (vendor floor 7)');
  await refused(t, ['rollback', '--sysroot', dev], { reason: 'below-release-floor', release: 6, floor: 7, min_release: 7, slot: 'A' }, 'rollback to slot A (release 6)');
  t.match(await status(dev), { booted: { slot: 'B', commit: c7 }, pending: null }, 'nothing staged');
  t.match(floorFile(dev), { floor: 7 }, 'the floor stays');

  // The boot path: slot A (release 6, good) put first by hand, as an agent without the floor could.
  await larchOk(['bootenv', 'set', '--uboot', join(dev, 'boot/fw_env.config'), '--lock', join(dev, 'larch/env.lock'), 'BOOT_ORDER=A B']);
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', rescue: false }, 'the bootloader passes over slot A, below the floor');
});

t.test('a commit made for os/beta, served as os/stable, is refused; rollback with no vendor floor goes back and lowers the floor, so the old slot boots', async (t) => {
  const v = await vendor(t);
  const c1 = await v.release(1);
  const dev = await device(t, v);
  const tree = join(v.dir, 'v1');
  const beta = (await larchOk(['commit', '--repo', v.repo, '-b', 'os/beta', '--tree', tree, '--version', '2', '--sign-key', `${v.key}.key`, '--owner', '0:0', '--json'])).json;
  t.equal(beta.release, 2, 'the release counter is per repo: os/beta takes 2 after os/stable 1');
  const stableRef = join(v.repo, 'refs/heads', REF);
  writeFileSync(stableRef, `${beta.commit}\n`);
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  await refused(t, ['upgrade', '--sysroot', dev], { reason: 'wrong-ref', ref: REF, commit_ref: 'os/beta', commit: beta.commit }, 'upgrade');
  t.notOk(hasCommit(dev, beta.commit), 'nothing was stored');
  t.match(await status(dev), { pending: null });

  // Back to os/stable's own history: its next commit is release 3, above os/beta's 2.
  writeFileSync(stableRef, `${c1}\n`);
  const c3 = await v.release(3);
  await larchOk(['upgrade', '--sysroot', dev]);
  await larchOk(['sim-boot', '--sysroot', dev]);
  t.match(floorFile(dev), { floor: 3, commit: c3 });
  t.match((await larchOk(['rollback', '--sysroot', dev, '--json'])).json, { result: 'rolled-back', slot: 'A' });
  t.match(floorFile(dev), { floor: 1, commit: c1, reason: 'rollback' }, 'the floor follows the operator down');
  t.match(await env(dev), { BOOT_RELEASES: '1 1 3', BOOT_ORDER: 'A B' });
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'A', check: { outcome: 'already-good' } }, 'slot A boots');
});

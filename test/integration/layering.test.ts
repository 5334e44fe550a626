/**
 * Package layering on a simulated device (issue 17, must-shows 2 and 3; docs/layering.md): a
 * vendor base from real Debian packages in the tree-layout contract, a local apt repository
 * over HTTP on 127.0.0.1, and the device verbs: install (from the repo, with dependencies the
 * base lacks; from a .deb with no network), override replace, override remove, override reset,
 * uninstall, each staged, booted with sim-boot and confirmed, checked in the deployment's files
 * and the derived commit's metadata; then vendor upgrades that keep the layer (offline too), a
 * conflicting base refused, and --drop-failing-layers.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Test, status } from '../device-helpers.ts';
import { larch, larchOk, sh, tempDir, testNeeding } from '../helpers.ts';
import { aptRepo, layeringCannot, layeringWorld, realDebs, setDeviceSources, tinyDeb } from '../layering-helpers.ts';

/** A deployment's commit metadata, read with larch show (status's layered fields are "seeing"'s). */
async function commitMeta(dev: string, commit: string): Promise<Record<string, any>> {
  return (await larchOk(['show', '--repo', join(dev, 'larch/repo'), commit, '--json'])).json.metadata;
}

/** Boots the staged slot with sim-boot and checks it came up healthy and confirmed. */
async function bootStaged(t: Test, dev: string, slot: string, what: string): Promise<void> {
  const boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot, check: { healthy: true } }, `${what}: slot ${slot} boots healthy`);
  const s = await status(dev);
  t.equal(s.booted.slot, slot, `${what}: slot ${slot} is booted`);
  t.equal(s.booted.good, true, `${what}: and confirmed good`);
}

const dpkgStatus = (deployment: string) => readFileSync(join(deployment, 'usr/lib/sysimage/dpkg/status'), 'utf8');
const installed = (deployment: string, name: string) => new RegExp(`^Package: ${name.replace(/[+.]/g, '\\$&')}\\nStatus: install ok installed\\n(?:.+\\n)*?Version: (.+)$`, 'm').exec(dpkgStatus(deployment))?.[1] ?? null;

testNeeding(t, 'layering: install, override, uninstall, reset, upgrades', layeringCannot(), { timeout: 600_000 }, async (t) => {
  const work = tempDir(t, 'larch-layering-');
  const debs = join(work, 'debs');
  const hello2 = tinyDeb(debs, { name: 'larch-test-hello', version: '2.0' });
  const local = tinyDeb(debs, { name: 'larch-test-local', version: '1.0', postinst: 'useradd --system --no-create-home --shell /usr/sbin/nologin larchtestsvc' });
  const repo = await aptRepo(t, join(work, 'apt'), realDebs());

  const w = await layeringWorld(t);
  const { dev } = w;
  const v1 = w.commits[1];
  setDeviceSources(join(dev, 'larch/deploy/A'), repo.line);
  const deployment = (slot: string) => join(dev, 'larch/deploy', slot);

  // 1. install from the HTTP apt repo: jq, with libjq1 and libonig5 the base lacks.
  const dry = await larchOk(['install', 'jq', '--sysroot', dev, '--dry-run', '--json']);
  t.match(dry.json, { result: 'dry-run', base: { commit: v1 } }, 'install --dry-run');
  t.same(dry.json.changes.added.map((p: any) => p.name).sort(), ['jq', 'libjq1', 'libonig5'], 'dry run: jq and its two dependencies would be added');
  t.equal((await status(dev)).pending, null, 'dry run: nothing staged');
  const inst = await larchOk(['install', 'jq', '--sysroot', dev, '--json']);
  t.match(inst.json, { result: 'staged', to: { slot: 'B', version: '1' }, base: { commit: v1, version: '1' } }, 'install jq: staged in slot B');
  const meta = await commitMeta(dev, inst.json.to.commit);
  t.match(meta, { 'larch.local': true, 'larch.base.commit': v1, 'larch.base.version': '1' }, 'the derived commit names its base');
  t.match(meta['larch.layered'], [{ name: 'jq', version: /^1\.6/ }], 'larch.layered: jq with its version (not its dependencies)');
  await bootStaged(t, dev, 'B', 'install jq');
  t.ok(existsSync(join(deployment('B'), 'usr/bin/jq')), 'jq is in the deployment');
  t.ok(installed(deployment('B'), 'libonig5'), "libonig5 is in the deployment's dpkg database");
  t.equal(sh(`echo '{"a":[1,2]}' | chroot '${deployment('B')}' /usr/bin/jq -c '.a|length'`).trim(), '2', 'the layered jq runs in the deployment');
  t.notOk(installed(deployment('A'), 'jq'), 'the base slot A is untouched');
  const layeredStatus = (await status(dev)).booted;
  t.match(layeredStatus, { layered: ['jq'], overrides: { replaced: [], removed: [] }, base: { commit: v1, version: '1' }, version: '1' }, "status --json reads the engine's derived commit (the contract's fields)");
  t.equal(layeredStatus.signed_by.length, 1, "signed_by: the base's verified signer");

  // 2. install a local .deb with no network: the apt server is gone; jq comes from the cache.
  repo.stop();
  // With PATH=/bin, as the demo board's console shell has it: chroot is in /usr/sbin (HIL scenario
  // layer failed with 'chroot: not found' until the isolated root added the sbin directories).
  const loc = await larchOk(['install', local, '--sysroot', dev, '--json'], { env: { PATH: '/bin' } });
  t.match(loc.json, { result: 'staged', to: { slot: 'A' }, request: { packages: ['jq'], local_packages: ['larch-test-local'] } }, 'install FILE.deb offline: staged in slot A');
  await bootStaged(t, dev, 'A', 'install a local .deb');
  t.equal(readFileSync(join(deployment('A'), 'usr/share/larch-test-local/version'), 'utf8'), '1.0\n', "the local package's file is in the deployment");
  t.ok(existsSync(join(deployment('A'), 'usr/bin/jq')), 'jq is still layered (rebuilt offline from the cached .deb files)');
  t.match(readFileSync(join(deployment('A'), 'etc/passwd'), 'utf8'), /^larchtestsvc:/m, "its postinst's system user reached the device's /etc/passwd (tree /etc, then the merge)");
  t.match((await commitMeta(dev, loc.json.to.commit))['larch.layered'], [{ name: 'jq' }, { name: 'larch-test-local', version: '1.0' }], 'larch.layered: both, sorted');

  // 3. override replace: the base's hello 1.0 by 2.0.
  const rep = await larchOk(['override', 'replace', hello2, '--sysroot', dev, '--json']);
  t.match(rep.json, { result: 'staged', to: { slot: 'B' } }, 'override replace: staged');
  t.match((await commitMeta(dev, rep.json.to.commit))['larch.overrides.replaced'], [{ name: 'larch-test-hello', version: '2.0', base_version: '1.0' }], 'larch.overrides.replaced');
  await bootStaged(t, dev, 'B', 'override replace');
  t.equal(readFileSync(join(deployment('B'), 'usr/share/larch-test-hello/version'), 'utf8'), '2.0\n', 'hello 2.0 in the deployment');
  t.equal(installed(deployment('B'), 'larch-test-hello'), '2.0', "and in its dpkg database");

  // 4. a new vendor base keeps the layer and the override, offline (the apt server is still down).
  await w.release(2);
  const up = await larchOk(['upgrade', '--sysroot', dev, '--json']);
  t.match(up.json, { result: 'staged', to: { slot: 'A', commit: w.commits[2], version: '2' }, layered: { dropped: [] } }, 'upgrade to base 2: staged with the layer re-applied');
  const upMeta = await commitMeta(dev, up.json.layered.commit);
  t.match(upMeta, { 'larch.base.commit': w.commits[2], 'larch.base.version': '2', 'larch.local': true }, 'the new derived commit is built on base 2');
  await bootStaged(t, dev, 'A', 'upgrade with layers');
  t.equal((await status(dev)).booted.commit, up.json.layered.commit, 'the booted deployment is the derived commit');
  t.equal((await larchOk(['check', '--sysroot', dev, '--json'])).json.available, false, 'check: no update (the booted base is the head)');
  t.equal((await larchOk(['upgrade', '--sysroot', dev, '--json'])).json.result, 'no-update', 'upgrade: no-update, nothing rebuilt');
  t.ok(existsSync(join(deployment('A'), 'usr/share/larch-test-newbase/version')), "base 2's new package is there");
  t.ok(existsSync(join(deployment('A'), 'usr/bin/jq')), 'jq kept');
  t.ok(existsSync(join(deployment('A'), 'usr/share/larch-test-local/version')), 'the local package kept');
  t.equal(installed(deployment('A'), 'larch-test-hello'), '2.0', 'the override kept');

  // 5. override remove of a base package, then override reset brings the base's packages back.
  const rm = await larchOk(['override', 'remove', 'larch-test-newbase', '--sysroot', dev, '--json']);
  t.match(rm.json, { result: 'staged', to: { slot: 'B' }, request: { override_remove: ['larch-test-newbase'], override_replace: ['larch-test-hello'] } }, 'override remove: staged');
  t.match((await commitMeta(dev, rm.json.to.commit))['larch.overrides.removed'], [{ name: 'larch-test-newbase', version: '1.0' }], 'larch.overrides.removed');
  await bootStaged(t, dev, 'B', 'override remove');
  t.notOk(existsSync(join(deployment('B'), 'usr/share/larch-test-newbase')), 'the removed package is gone from the deployment');
  t.equal(installed(deployment('B'), 'larch-test-newbase'), null, 'and from its dpkg database');
  const reset = await larchOk(['override', 'reset', '--sysroot', dev, '--json']);
  t.match(reset.json, { result: 'staged', to: { slot: 'A' }, request: { override_remove: [], override_replace: [] } }, 'override reset: staged');
  await bootStaged(t, dev, 'A', 'override reset');
  t.equal(installed(deployment('A'), 'larch-test-hello'), '1.0', "the base's hello 1.0 is back");
  t.equal(installed(deployment('A'), 'larch-test-newbase'), '1.0', 'the removed package is back');

  // 6. a base that conflicts with the layer is refused; the device stays where it is.
  await w.release(3);
  const before = await status(dev);
  const refused = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(refused.code, 15, 'conflicting base: exit 15');
  t.match(refused.json?.error, { code: 'LAYER_FAILED', data: { reason: 'removes-base', removes: ['larch-test-rival'] } }, 'LAYER_FAILED: the layer would remove the base package larch-test-rival');
  t.match(refused.json?.error?.hint, /--drop-failing-layers/, 'the hint names --drop-failing-layers');
  const after = await status(dev);
  t.equal(after.pending, null, 'nothing staged');
  t.same(after.booted, before.booted, 'the booted deployment is the same');
  const dropped = await larchOk(['upgrade', '--drop-failing-layers', '--sysroot', dev, '--json']);
  t.match(dropped.json, { result: 'staged', to: { commit: w.commits[3] }, layered: { dropped: ['larch-test-local'] } }, '--drop-failing-layers: staged, saying what was dropped');
  await bootStaged(t, dev, 'B', 'upgrade dropping a layer');
  t.ok(existsSync(join(deployment('B'), 'usr/share/larch-test-rival/version')), "base 3's package is there");
  t.notOk(existsSync(join(deployment('B'), 'usr/share/larch-test-local')), 'the dropped package is not');
  t.ok(existsSync(join(deployment('B'), 'usr/bin/jq')), 'jq kept');

  // 7. uninstall the rest: the vendor base itself comes back (its signed commit, no origin).
  const un = await larchOk(['uninstall', 'jq', '--sysroot', dev, '--json']);
  t.match(un.json, { result: 'staged', to: { slot: 'A', commit: w.commits[3] } }, 'uninstall: the vendor commit staged');
  await bootStaged(t, dev, 'A', 'uninstall');
  t.notOk(existsSync(join(deployment('A'), 'usr/bin/jq')), 'jq is gone');
  t.notOk(existsSync(join(dev, 'larch/deploy/A.origin.json')), 'the slot has no origin file: no layering');
  t.same((await status(dev)).booted.signed_by.length, 1, 'the vendor base is deployed as signed');
  const fsck = await larch(['fsck', '--repo', join(dev, 'larch/repo'), '--json']);
  t.equal(fsck.code, 0, "fsck: the device's repo, derived commits and all, is sound");
  t.same(fsck.json?.problems, [], 'fsck: no problem');
});

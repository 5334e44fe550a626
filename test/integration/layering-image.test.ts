/**
 * Package layering on a device provisioned from the demo image definition (issue 17, must-show
 * 2; docs/layering.md): images/qemu-x86_64-grub.toml composed as a vendor composes it (`larch
 * compose --repo --sign-key --cache .cache/compose`), published, served over HTTP on 127.0.0.1,
 * provisioned into a simulated sysroot and booted; then, on that device, each staged, booted with
 * sim-boot and confirmed by the deployment's own agent, and seen in `status` (JSON and text) and
 * `db diff`: `install jq` from a local apt repository over HTTP (libjq1 and libonig5, which the
 * demo base lacks, come with it), `install` of a local .deb with the repository gone, `override
 * replace` of the base's netbase by a rebuilt one of another version, `override remove` of the
 * base's tzdata; then `override reset` and `uninstall` bring the vendor's base back.
 */
import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Test, status } from '../device-helpers.ts';
import { larchOk, sh, tempDir, testNeeding } from '../helpers.ts';
import { aptRepo, composedDeb, demoDevice, demoLayeringCannot, realDebs, repackDeb, setDeviceSources, tinyDeb } from '../layering-helpers.ts';

/** Boots the staged slot with sim-boot; the deployment's agent ran boot-check and confirmed it. */
async function bootStaged(t: Test, dev: string, slot: string, what: string): Promise<void> {
  const boot = (await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json;
  t.match(boot, { slot, check: { healthy: true, outcome: 'confirmed' } }, `${what}: slot ${slot} boots healthy and is confirmed`);
  t.equal(boot.agent_path, join(dev, 'larch/deploy', slot, 'usr/bin/larch'), `${what}: by the agent the image carries`);
  const s = await status(dev);
  t.equal(s.booted.slot, slot, `${what}: slot ${slot} is booted`);
  t.equal(s.booted.good, true, `${what}: and marked good`);
}

/** The booted deployment's lines of the human `status`: its header and its indented lines. */
function bootedText(text: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith('* booted '));
  const end = lines.findIndex((l, i) => i > start && !l.startsWith('    '));
  return lines.slice(start, end).join('\n');
}

type Pkg = { name: string; version: string; architecture: string };
const sorted = (ps: Pkg[]) => [...ps].sort((a, b) => `${a.name} ${a.architecture}`.localeCompare(`${b.name} ${b.architecture}`));
const names = (ps: { name: string }[]) => ps.map((p) => p.name).sort();
const dbList = async (dev: string, which: string): Promise<Pkg[]> => (await larchOk(['db', 'list', '--sysroot', dev, which, '--json'])).json.packages;
const dbDiff = async (dev: string, from: string, to: string) => (await larchOk(['db', 'diff', '--sysroot', dev, from, to, '--json'])).json;
/** The version of name installed in a deployment's tree by its own dpkg database (null: not installed; a removed package's conffiles may stay). */
function installed(deployment: string, name: string): string | null {
  const [state, version] = sh(`dpkg-query --admindir='${deployment}/usr/lib/sysimage/dpkg' -W -f='\${db:Status-Status} \${Version}' '${name}' 2>/dev/null || true`).split(' ');
  return state === 'installed' ? version : null;
}

testNeeding(t, 'layering on a device provisioned from images/qemu-x86_64-grub.toml', demoLayeringCannot(), { timeout: 1_200_000 }, async (t) => {
  const work = tempDir(t, 'larch-layering-image-');
  const started = Date.now();
  const since = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
  const { composed, dev } = await demoDevice(t, work);
  const base = composed.commit;
  t.comment(`composed ${composed.packages.length} packages and provisioned the device: ${since()}`);
  const deployment = (slot: string) => join(dev, 'larch/deploy', slot);
  const basePkg = (name: string) => composed.packages.find((p) => p.name === name);

  // The base as the device sees it: the composed package list, and none of jq's closure.
  const baseList = await dbList(dev, 'booted');
  t.same(sorted(baseList), sorted(composed.packages), 'db list of the booted deployment: the composed closure');
  for (const p of ['jq', 'libjq1', 'libonig5']) t.notOk(baseList.some((b) => b.name === p), `the demo base lacks ${p}`);
  const netbase = basePkg('netbase');
  const tzdata = basePkg('tzdata');
  t.ok(netbase && tzdata, 'the base has netbase and tzdata (the definition lists them)');
  t.equal(installed(deployment('A'), 'tzdata'), tzdata!.version, "the tree's own dpkg database agrees");

  // The device's apt sources are the admin's: only the local repository (a local /etc edit). The
  // vendor's tree may name others (the build host's): they go, so the test needs no Internet.
  const repo = await aptRepo(t, join(work, 'apt'), realDebs());
  const vendorSources = sh(`cd '${deployment('A')}/etc/apt' && ls -d sources.list sources.list.d/* 2>/dev/null || true`).split('\n').filter(Boolean);
  t.comment(`the vendor's apt sources in the demo tree: ${vendorSources.join(', ') || 'none'}`);
  sh(`rm -f '${deployment('A')}/etc/apt/sources.list' '${deployment('A')}'/etc/apt/sources.list.d/*`);
  setDeviceSources(deployment('A'), repo.line);

  // 1. install jq from the HTTP repository: libjq1 and libonig5 come with it.
  const inst = (await larchOk(['install', 'jq', '--sysroot', dev, '--json'])).json;
  t.match(inst, { result: 'staged', to: { slot: 'B' }, base: { commit: base, version: '2026.1' } }, 'install jq: staged in slot B');
  t.same(names(inst.changes.added), ['jq', 'libjq1', 'libonig5'], 'apt added jq and the two dependencies the base lacks');
  t.comment(`install jq staged: ${since()}`);
  await bootStaged(t, dev, 'B', 'install jq');
  t.same(readdirSync(join(deployment('B'), 'etc/apt/sources.list.d')), ['test.list'], "the admin's apt sources reached the new deployment (the /etc merge), the vendor's did not come back");
  t.notOk(existsSync(join(deployment('B'), 'etc/apt/sources.list')), 'no sources.list either');
  t.equal(sh(`echo '{"a":[1,2,3]}' | chroot '${deployment('B')}' /usr/bin/jq -c '.a|length'`).trim(), '3', "the layered jq runs in the deployment's tree");
  let s = await status(dev);
  t.match(s.booted, { commit: inst.to.commit, version: '2026.1', base: { commit: base, version: '2026.1' }, layered: ['jq'], overrides: { replaced: [], removed: [] }, local: true }, 'status --json: booted is layered with jq on the vendor base');
  t.match(s.rollback, { commit: base, layered: [], local: false }, 'the rollback is the vendor base');
  let text = bootedText((await larchOk(['status', '--sysroot', dev])).stdout);
  t.match(text, `BaseCommit: ${base} (version 2026.1)`, 'status: the base');
  t.match(text, /LayeredPackages: jq \(1\.6[^)]*\)/, 'status: jq layered, with its version');
  t.match(text, `made on this device from base 2026.1 ${base.slice(0, 12)}, signed by `, "status: made here from the vendor's signed base");
  let diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(names(diff.added), ['jq', 'libjq1', 'libonig5'], 'db diff rollback booted: jq and its dependencies added');
  t.same([diff.removed, diff.upgraded, diff.downgraded], [[], [], []], 'db diff: nothing else');

  // 2. install a local .deb with no network: the repository is gone; jq is rebuilt from the cache.
  repo.stop();
  const local = tinyDeb(join(work, 'debs'), { name: 'larch-test-local', version: '1.0' });
  const loc = (await larchOk(['install', local, '--sysroot', dev, '--json'])).json;
  t.match(loc, { result: 'staged', to: { slot: 'A' }, request: { packages: ['jq'], local_packages: ['larch-test-local'] } }, 'install FILE.deb offline: staged in slot A');
  await bootStaged(t, dev, 'A', 'install a local .deb');
  t.equal(readFileSync(join(deployment('A'), 'usr/share/larch-test-local/version'), 'utf8'), '1.0\n', "the local package's file is in the deployment");
  t.ok(existsSync(join(deployment('A'), 'usr/bin/jq')), 'jq is still there');
  s = await status(dev);
  t.match(s.booted, { base: { commit: base }, layered: ['jq', 'larch-test-local'], overrides: { replaced: [], removed: [] } }, 'status --json: both layered');
  t.match(bootedText((await larchOk(['status', '--sysroot', dev])).stdout), /LayeredPackages: jq \([^)]+\), larch-test-local \(1\.0\)/, 'status: both layered');
  diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(diff.added, [{ name: 'larch-test-local', version: '1.0', architecture: 'all' }], 'db diff rollback booted: the local package added');

  // 3. override replace: the base's netbase by the same package rebuilt as another version.
  const newVersion = `${netbase!.version}+larch1`;
  const netbase2 = repackDeb(composedDeb(netbase!, 'amd64', join(work, 'debs')), join(work, 'debs'), newVersion, { 'usr/share/larch-test/netbase-override': 'replaced\n' });
  const rep = (await larchOk(['override', 'replace', netbase2, '--sysroot', dev, '--json'])).json;
  t.match(rep, { result: 'staged', to: { slot: 'B' }, request: { override_replace: ['netbase'] } }, 'override replace netbase: staged');
  t.same(rep.overrides.replaced, [{ name: 'netbase', version: newVersion, base_version: netbase!.version }], 'override replace: the base version and the new one');
  await bootStaged(t, dev, 'B', 'override replace');
  t.equal(installed(deployment('B'), 'netbase'), newVersion, "the new netbase in the deployment's dpkg database");
  t.equal(readFileSync(join(deployment('B'), 'usr/share/larch-test/netbase-override'), 'utf8'), 'replaced\n', "and the rebuilt package's own file");
  t.ok(existsSync(join(deployment('B'), 'etc/services')), "netbase's conffiles are still in /etc");
  s = await status(dev);
  t.match(s.booted, { layered: ['jq', 'larch-test-local'], overrides: { replaced: ['netbase'], removed: [] } }, 'status --json: netbase replaced');
  t.match(bootedText((await larchOk(['status', '--sysroot', dev])).stdout), `ReplacedBasePackages: netbase ${netbase!.version} -> ${newVersion}`, 'status: the replacement');
  diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(diff.upgraded, [{ name: 'netbase', architecture: 'all', from: netbase!.version, to: newVersion }], 'db diff rollback booted: netbase upgraded');
  t.same([diff.added, diff.removed], [[], []], 'db diff: nothing else');

  // 4. override remove: tzdata, which no base package needs (apt would say so: removes-base).
  const rm = (await larchOk(['override', 'remove', 'tzdata', '--sysroot', dev, '--json'])).json;
  t.match(rm, { result: 'staged', to: { slot: 'A' }, request: { override_remove: ['tzdata'], override_replace: ['netbase'] } }, 'override remove tzdata: staged');
  t.same(rm.overrides.removed, [{ name: 'tzdata', version: tzdata!.version }], 'override remove: tzdata at the base version');
  await bootStaged(t, dev, 'A', 'override remove');
  t.equal(installed(deployment('A'), 'tzdata'), null, "tzdata is not in the deployment's dpkg database");
  t.notOk(existsSync(join(deployment('A'), 'usr/share/zoneinfo/Europe/Paris')), 'nor its files');
  s = await status(dev);
  t.match(s.booted, { overrides: { replaced: ['netbase'], removed: ['tzdata'] } }, 'status --json: tzdata removed');
  t.match(bootedText((await larchOk(['status', '--sysroot', dev])).stdout), `RemovedBasePackages: tzdata ${tzdata!.version}`, 'status: the removal');
  diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(diff.removed, [{ name: 'tzdata', version: tzdata!.version, architecture: 'all' }], 'db diff rollback booted: tzdata removed');
  t.same([diff.added, diff.upgraded, diff.downgraded], [[], [], []], 'db diff: nothing else');

  // 5. override reset: the base's netbase and tzdata come back; the layered packages stay.
  const reset = (await larchOk(['override', 'reset', '--sysroot', dev, '--json'])).json;
  t.match(reset, { result: 'staged', to: { slot: 'B' }, request: { packages: ['jq'], local_packages: ['larch-test-local'], override_replace: [], override_remove: [] } }, 'override reset: staged');
  await bootStaged(t, dev, 'B', 'override reset');
  t.equal(installed(deployment('B'), 'netbase'), netbase!.version, "the base's netbase is back");
  t.equal(installed(deployment('B'), 'tzdata'), tzdata!.version, "the base's tzdata is back");
  s = await status(dev);
  t.match(s.booted, { layered: ['jq', 'larch-test-local'], overrides: { replaced: [], removed: [] } }, 'status --json: no override');
  text = bootedText((await larchOk(['status', '--sysroot', dev])).stdout);
  t.notMatch(text, /ReplacedBasePackages|RemovedBasePackages/, 'status: no override lines');
  diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(diff.downgraded, [{ name: 'netbase', architecture: 'all', from: newVersion, to: netbase!.version }], "db diff rollback booted: netbase back to the base's");
  t.same(diff.added, [{ name: 'tzdata', version: tzdata!.version, architecture: 'all' }], 'tzdata added back');
  const vsBase = (await larchOk(['db', 'diff', '--sysroot', dev, base, 'booted', '--json'])).json;
  t.same(names(vsBase.added), ['jq', 'larch-test-local', 'libjq1', 'libonig5'], 'db diff base booted: only the layered packages');
  t.same([vsBase.removed, vsBase.upgraded, vsBase.downgraded], [[], [], []], 'db diff base booted: no override left');

  // 6. uninstall both: nothing left, so the vendor's commit itself is staged and booted.
  const un = (await larchOk(['uninstall', 'jq', 'larch-test-local', '--sysroot', dev, '--json'])).json;
  t.match(un, { result: 'staged', to: { slot: 'A', commit: base } }, 'uninstall: the vendor commit staged');
  await bootStaged(t, dev, 'A', 'uninstall');
  s = await status(dev);
  t.match(s.booted, { commit: base, base: { commit: base }, layered: [], overrides: { replaced: [], removed: [] }, local: false }, 'status --json: the vendor base, nothing layered');
  t.equal(s.booted.signed_by.length, 1, 'deployed as signed by the vendor');
  t.notOk(existsSync(join(dev, 'larch/deploy/A.origin.json')), 'no origin file: the slot is not layered');
  t.notMatch(bootedText((await larchOk(['status', '--sysroot', dev])).stdout), /BaseCommit|LayeredPackages|made on this device/, 'status: no layer lines');
  t.same(sorted(await dbList(dev, 'booted')), sorted(composed.packages), 'db list: the composed closure again');
  t.match((await larchOk(['db', 'diff', '--sysroot', dev, base, 'booted'])).stdout, /No package changes/, 'db diff base booted: no package changes');
  diff = await dbDiff(dev, 'rollback', 'booted');
  t.same(names(diff.removed), ['jq', 'larch-test-local', 'libjq1', 'libonig5'], 'db diff rollback booted: the layer removed');
  t.notOk(existsSync(join(deployment('A'), 'usr/bin/jq')), 'jq is gone from the deployment');
  t.comment(`the whole story: ${since()}`);
});

/**
 * Seeing a layered device (issue 17, Build 4): `status` (JSON and text) shows each deployment's
 * base, layered packages and overrides; `db diff --sysroot` compares deployments, layer
 * included; `check` and `upgrade --dry-run` preview the new base with the layer re-applied;
 * malformed layer metadata is a clear error, never a crash. The derived commits are staged by
 * stageDerived (device-helpers.ts), as the layering engine stages them.
 */
import t from 'tap';
import { join } from 'node:path';
import { larch, larchOk, tempDir } from '../helpers.ts';
import { REF, expectFail, packagesJson, stageDerived, status, vendor } from '../device-helpers.ts';

const pkg = (name: string, version: string) => ({ name, version, architecture: 'amd64' });
const V1: [string, string, string][] = [['busybox', '1:1.35.0-4', 'amd64'], ['hostname', '3.23', 'amd64'], ['libc6', '2.36-9', 'amd64'], ['nano', '7.2-1', 'amd64'], ['openssl', '3.0.11-1', 'amd64']];
const V2: [string, string, string][] = [['busybox', '1:1.36.1-1', 'amd64'], ['hostname', '3.23', 'amd64'], ['less', '590-2', 'amd64'], ['libc6', '2.36-9+deb12u7', 'amd64'], ['nano', '7.2-1', 'amd64'], ['openssl', '3.0.14-1', 'amd64']];
/** The layer: htop (with a dependency the base lacks), openssl replaced by an older build, nano removed. */
const LAYER = { layered: [{ name: 'htop', version: '3.2.2-2' }], overrides: { replaced: [{ name: 'openssl', version: '3.0.13-1', base_version: '3.0.11-1' }], removed: [{ name: 'nano', version: '7.2-1' }] } };
const LAYERED_LIST = [pkg('busybox', '1:1.35.0-4'), pkg('hostname', '3.23'), pkg('htop', '3.2.2-2'), pkg('libc6', '2.36-9'), pkg('libncursesw6', '6.4-4'), pkg('openssl', '3.0.13-1')];
const NO_LAYER = { layered: [], overrides: { replaced: [], removed: [] }, local: false, layer_error: null };

t.test('status, db diff and the upgrade preview of a layered device; malformed layer metadata', async (t) => {
  const v = await vendor(t);
  const dir = tempDir(t);
  const v1 = await v.release(1, { commitArgs: ['--metadata-json', packagesJson(dir, 'v1', V1)] });
  const dev = join(dir, 'dev');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2, { commitArgs: ['--metadata-json', packagesJson(dir, 'v2', V2)] });

  await t.test('an unlayered booted and pending deployment: base is the commit itself, nothing layered', async (t) => {
    await larchOk(['upgrade', '--sysroot', dev]);
    const s = await status(dev);
    t.match(s.booted, { commit: v1, version: '1', base: { commit: v1, version: '1' }, ...NO_LAYER });
    t.match(s.pending, { commit: v2, version: '2', base: { commit: v2, version: '2' }, ...NO_LAYER });
    const text = (await larchOk(['status', '--sysroot', dev])).stdout;
    t.notMatch(text, /BaseCommit|LayeredPackages|ReplacedBasePackages|RemovedBasePackages|made on this device/, 'no layer lines for vendor commits');
  });

  const derived = await stageDerived(dev, v1, LAYER, LAYERED_LIST);

  await t.test('a layered pending deployment: JSON fields, rpm-ostree-like text, db diff against the booted one', async (t) => {
    const s = await status(dev);
    t.match(s.pending, { commit: derived, version: '1', base: { commit: v1, version: '1' }, layered: ['htop'], overrides: { replaced: ['openssl'], removed: ['nano'] }, local: true, layer_error: null });
    t.same(s.pending.layer_packages, { layered: LAYER.layered, ...LAYER.overrides }, 'the layer with versions');
    t.match(s.booted, { commit: v1, ...NO_LAYER }, 'the booted vendor commit is not layered');
    t.same(s.deployments.find((d: { label: string }) => d.label === 'staged').layered, ['htop'], 'deployments[] carry the fields too');
    const text = (await larchOk(['status', '--sysroot', dev])).stdout;
    const pending = text.slice(text.indexOf('  pending'));
    t.match(pending, `BaseCommit: ${v1} (version 1)`);
    t.match(pending, 'LayeredPackages: htop (3.2.2-2)');
    t.match(pending, 'ReplacedBasePackages: openssl 3.0.11-1 -> 3.0.13-1');
    t.match(pending, 'RemovedBasePackages: nano 7.2-1');
    t.match(pending, new RegExp(`made on this device from base 1 ${v1.slice(0, 12)}, signed by \\S`), "the trust of a derived commit is its base's");
    t.notMatch(text.slice(0, text.indexOf('  pending')), /BaseCommit/, 'the booted deployment has no layer lines');

    const diff = (await larchOk(['db', 'diff', '--sysroot', dev, '--json'])).json;
    t.match(diff, { from: { commit: v1, deployment: 'booted' }, to: { commit: derived, version: '1', deployment: 'pending' } }, 'default: booted -> pending');
    t.same(diff.added, [pkg('htop', '3.2.2-2'), pkg('libncursesw6', '6.4-4')], 'the layered package and its dependency');
    t.same(diff.removed, [pkg('nano', '7.2-1')], 'the removed override');
    t.same(diff.upgraded, [{ name: 'openssl', architecture: 'amd64', from: '3.0.11-1', to: '3.0.13-1' }], 'the replaced override');
    const textDiff = (await larchOk(['db', 'diff', '--sysroot', dev, 'booted', 'pending'])).stdout;
    t.match(textDiff, /from: booted [0-9a-f]{64} \(1\)\nto: {3}pending [0-9a-f]{64} \(1\)\nUpgraded:\n  openssl 3.0.11-1 -> 3.0.13-1\nRemoved:\n  nano 7.2-1 amd64\nAdded:\n  htop 3.2.2-2 amd64\n  libncursesw6 6.4-4 amd64\n/);
    t.same((await larchOk(['db', 'list', '--sysroot', dev, 'pending', '--json'])).json.packages, LAYERED_LIST, 'db list of a deployment: the whole tree');
    expectFail(t, await larch(['db', 'diff', '--sysroot', dev, 'booted', 'rollback', '--json']), 'NOT_FOUND', 'no rollback deployment yet');
    expectFail(t, await larch(['db', 'diff', '--sysroot', dev, '--repo', v.repo, 'booted', 'pending', '--json']), 'USAGE', '--repo and --sysroot together');
  });

  await t.test('booted layered, rollback not; check and upgrade --dry-run re-apply the layer on the new base', async (t) => {
    await larchOk(['sim-boot', '--sysroot', dev]);
    const s = await status(dev);
    t.match(s.booted, { slot: 'B', commit: derived, version: '1', base: { commit: v1, version: '1' }, layered: ['htop'], overrides: { replaced: ['openssl'], removed: ['nano'] }, local: true });
    t.match(s.rollback, { commit: v1, base: { commit: v1 }, ...NO_LAYER });
    t.same((await larchOk(['db', 'diff', '--sysroot', dev, 'rollback', 'booted', '--json'])).json.added.map((p: { name: string }) => p.name), ['htop', 'libncursesw6']);

    // v2 with the layer: busybox and libc6 upgraded, less added; htop and its dependency kept; nano
    // still removed; v2's openssl 3.0.14-1 is newer than the override's 3.0.13-1 (a note), which stays.
    const expected = {
      upgraded: [{ name: 'busybox', architecture: 'amd64', from: '1:1.35.0-4', to: '1:1.36.1-1' }, { name: 'libc6', architecture: 'amd64', from: '2.36-9', to: '2.36-9+deb12u7' }],
      downgraded: [],
      added: [pkg('less', '590-2')],
      removed: [],
    };
    const layer = { base: { commit: v1, version: '1' }, reapplied: { layered: ['htop'], replaced: ['openssl'], removed: ['nano'] }, notes: [{ name: 'openssl', reason: 'base-not-older', message: "openssl: the new base has 3.0.14-1, not older than the override's 3.0.13-1" }] };
    const check = (await larchOk(['check', '--sysroot', dev, '--json'])).json;
    t.match(check, { available: true, booted: { commit: derived, version: '1' }, update: { commit: v2 } });
    t.same(check.packages, expected, 'check: base and layer together');
    t.same(check.layer, layer, 'check: what is re-applied, and the override the new base caught up with');
    const dry = (await larchOk(['upgrade', '--dry-run', '--sysroot', dev, '--json'])).json;
    t.match(dry, { result: 'dry-run', to: { commit: v2 } });
    t.same(dry.packages, expected, 'upgrade --dry-run: the same diff');
    t.same(dry.layer, layer);
    const text = (await larchOk(['check', '--sysroot', dev])).stdout;
    t.match(text, /Re-applied on the new base \(the booted deployment is layered on version 1\):\n {2}layered: htop\n {2}replaced: openssl\n {2}removed: nano\n {2}note: openssl: the new base has 3.0.14-1/);
    t.notMatch(text, /Removed:/, 'the layered packages are not shown as removed');
  });

  await t.test('malformed layer metadata: status reports it, the preview refuses it with the key named', async (t) => {
    const bad = await stageDerived(dev, v1, LAYER, LAYERED_LIST, { 'larch.layered': 'htop' });
    const s = await status(dev);
    t.match(s.pending, { commit: bad, base: { commit: bad }, layered: [], overrides: { replaced: [], removed: [] } }, 'pending: shown without a layer');
    t.match(s.pending.layer_error, /larch\.layered is not an array: "htop"/);
    t.match((await larchOk(['status', '--sysroot', dev])).stdout, /LAYER UNKNOWN: .*larch\.layered is not an array/);
    await larchOk(['sim-boot', '--sysroot', dev]);
    t.match((await status(dev)).rollback, { commit: derived, layered: ['htop'] }, 'the layered deployment is the rollback now');
    const r = await larch(['check', '--sysroot', dev, '--json']);
    expectFail(t, r, 'INVALID_INPUT', 'check with a malformed booted layer');
    t.equal(r.code, 4, 'exit 4');
    t.match(r.json.error.message, new RegExp(`the booted commit ${bad}: layer metadata larch.layered is not an array`));
    t.ok(r.json.error.hint, 'with a hint');
  });
});

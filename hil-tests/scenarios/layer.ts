/**
 * (layer) Package layering on a booted board (issue 17, must-show 4): the board's apt sources name
 * a repository on the host holding Debian's jq, libjq1 and libonig5; `larch install jq` builds
 * base + jq in the isolated root (the tree's own apt and dpkg, chrooted in a mount and PID
 * namespace) and stages it; after the reboot into it, boot-check confirms it and jq runs. Then
 * the host's apt repository goes away (the device is offline for apt), the vendor publishes a new
 * base, and `larch upgrade` re-applies the layer from the device's cached lists and .deb files:
 * after the reboot the new base's files are there and jq still runs.
 */
import { join } from 'node:path';
import { AptRepo, debVersion, layerDebs } from '../lib/apt-repo.ts';
import { formatBoots } from '../lib/boot-table.ts';
import type { BootResult } from '../lib/device.ts';
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';

/**
 * apt and dpkg in the guest under TCG, and larch hashing the whole tree twice (the verified
 * checkout of the base, the commit of the derived tree), take minutes: bounded, with room.
 */
const LAYER_BUILD_MS = 30 * 60_000;
/** A boot to boot-check takes 10-30 s under TCG, more under load. */
const BOOT_MS = 10 * 60_000;

/** What the board says about its space and memory (the build needs room on the sysroot beside the repo). */
async function resources(ctx: Ctx, when: string): Promise<void> {
  const df = await ctx.shell.run('df -m /sysroot | tail -n 1');
  const mem = await ctx.shell.run('busybox free -m | busybox grep -i mem');
  ctx.note(`${when}: sysroot ${df.out.trim().split(/\s+/).slice(1, 4).join('/')} MiB size/used/free; memory ${mem.out.trim().split(/\s+/).slice(1, 4).join('/')} MiB total/used/free`);
}

/** jq is there, is jq's version, and computes (libjq1 and libonig5 load). */
async function jqRuns(ctx: Ctx, label: string, upstream: string): Promise<void> {
  const v = await ctx.shell.run('jq --version');
  expectThat(v.code === 0 && v.out.trim() === `jq-${upstream}`, `${label}: 'jq --version' exited ${v.code} and printed ${JSON.stringify(v.out)}, expected jq-${upstream}`);
  const sum = await ctx.shell.run(`echo '{"hil":[1,2,3],"re":"larch-layer"}' | jq -c '[(.hil | add), (.re | test("l[a-z]+-l"))]'`);
  expectThat(sum.code === 0 && sum.out.trim() === '[6,true]', `${label}: jq did not compute (a library missing?): exit ${sum.code}, ${JSON.stringify(sum.out)}`);
}

/** One try on the slot, confirmed by boot-check, the commit expected. */
function expectConfirmed(r: BootResult, label: string, slot: 'A' | 'B', commit: string, version: string): void {
  expectThat(r.boots.length === 1 && r.boots[0].slot === slot && r.boots[0].wrote, `${label}: expected the bootloader to spend a try on slot ${slot}, saw ${formatBoots(r.boots)}`);
  expectThat(r.check.slot === slot && r.check.healthy && r.check.outcome === 'confirmed', `${label}: expected boot-check to confirm slot ${slot}, got ${JSON.stringify(r.check)}`);
  expectThat(r.check.commit === commit && r.check.version === version, `${label}: booted ${r.check.version} (${r.check.commit}), expected ${version} (${commit})`);
}

export const layerScenario: Scenario = {
  id: 'layer',
  name: 'package layering: larch install jq from an apt repo, reboot into it, jq runs; a new base re-applies it offline, jq still runs',
  variants: 1,
  async run(ctx) {
    const debs = layerDebs();
    const jqDeb = debs.find((d) => /\/jq_[^/]*\.deb$/.test(d));
    expectThat(jqDeb, `no jq .deb among ${debs.join(', ')}`);
    // jq --version prints the upstream version: the Debian version without epoch and revision.
    const upstream = debVersion(jqDeb).replace(/^\d+:/, '').replace(/-[^-]*$/, '');
    const apt = new AptRepo(join(ctx.workDir, 'apt'));
    await apt.start(debs);
    try {
      // The admin's apt sources: a local /etc edit of the booted deployment, which the build reads.
      await ctx.shell.ok(`mkdir -p /etc/apt/sources.list.d && echo '${apt.sourcesLine()}' > /etc/apt/sources.list.d/hil.list && sync`);
      const absent = await ctx.shell.run('command -v jq || ls /usr/bin/jq');
      expectThat(absent.code !== 0, `the factory image already has jq: ${absent.out}`);
      await resources(ctx, 'before install');

      // 1. install: apt resolves jq's dependencies on the booted base, dpkg installs them in the isolated root.
      let started = Date.now();
      const inst = await ctx.larch('install jq', LAYER_BUILD_MS);
      const installSeconds = (Date.now() - started) / 1000;
      expectThat(inst.result === 'staged' && inst.to?.slot === 'B', `larch install jq: expected staged in slot B, got ${JSON.stringify(inst).slice(0, 800)}`);
      const added = (inst.changes?.added ?? []).map((p: { name: string }) => p.name).sort();
      expectThat(JSON.stringify(added) === JSON.stringify(['jq', 'libjq1', 'libonig5']), `larch install jq: apt's plan should add jq, libjq1 and libonig5, it added ${JSON.stringify(added)}`);
      expectThat(inst.base?.commit === ctx.base.commit && inst.to.commit !== ctx.base.commit, `larch install jq: expected a derived commit on the factory base ${ctx.base.commit.slice(0, 12)}, got ${JSON.stringify({ base: inst.base, to: inst.to })}`);
      const fetched = apt.requests.filter((p) => p.endsWith('.deb')).length;
      expectThat(fetched === 3, `larch install jq: the board should have fetched 3 .deb files from the host's repo, it asked for ${JSON.stringify(apt.requests)}`);
      ctx.note(`install jq: staged layered commit ${inst.to.commit.slice(0, 12)} on base ${inst.base.version} in slot B in ${installSeconds.toFixed(0)} s (added ${inst.changes.added.map((p: { name: string; version: string }) => `${p.name} ${p.version}`).join(', ')}; ${apt.requests.length} requests to the host's apt repo)`);
      await resources(ctx, 'after install');

      const r1 = await ctx.reboot('reboot into the layered deployment', { timeoutMs: BOOT_MS });
      expectConfirmed(r1, 'reboot into the layered deployment', 'B', inst.to.commit, ctx.base.version);
      await jqRuns(ctx, 'layered deployment', upstream);
      let st = await ctx.status();
      expectThat(st.booted?.slot === 'B' && st.booted.local === true && st.booted.layered?.includes('jq'), `layered deployment: status should show booted slot B, local, layered jq: ${JSON.stringify(st.booted).slice(0, 800)}`);
      expectThat(st.booted.base?.commit === ctx.base.commit && st.booted.base?.version === ctx.base.version, `layered deployment: status booted.base should be the factory base: ${JSON.stringify(st.booted.base)}`);
      ctx.note(`layered deployment: slot B confirmed, jq-${upstream} runs, status layered ${JSON.stringify(st.booted.layered)} on base ${st.booted.base.version}`);

      // 2. Offline for apt: the host's repository is gone; the re-apply must use the device's cache.
      await apt.stop();
      const before = apt.requests.length;
      const v = ctx.compose('good');
      started = Date.now();
      const up = await ctx.larch('upgrade --reboot', LAYER_BUILD_MS);
      const upgradeSeconds = (Date.now() - started) / 1000;
      expectThat(up.result === 'staged' && up.to?.slot === 'A' && up.to?.version === v.version, `larch upgrade: expected ${v.version} staged in slot A, got ${JSON.stringify(up).slice(0, 800)}`);
      expectThat(up.layered && typeof up.layered.commit === 'string' && up.layered.commit !== v.commit && up.layered.dropped?.length === 0, `larch upgrade: expected the layer re-applied on ${v.version} (layered.commit a derived commit, nothing dropped), got layered ${JSON.stringify(up.layered)}`);
      expectThat(apt.requests.length === before, 'larch upgrade: the host apt repo was stopped, yet it answered requests');
      ctx.note(`upgrade to ${v.version} with the host's apt repo stopped: layer re-applied from the device's cache, commit ${up.layered.commit.slice(0, 12)}, staged in slot A in ${upgradeSeconds.toFixed(0)} s`);

      const r2 = await ctx.reboot('reboot into the new base with the layer', { timeoutMs: BOOT_MS });
      expectConfirmed(r2, 'reboot into the new base with the layer', 'A', up.layered.commit, v.version);
      const shipped = await ctx.shell.ok('cat /usr/share/hil/version /etc/hil-vendor.conf');
      expectThat(shipped.trim() === `${v.version}\nvendor ${v.version}`, `new base: its files are not there: ${shipped}`);
      await jqRuns(ctx, 'new base with the layer', upstream);
      st = await ctx.status();
      expectThat(st.booted?.slot === 'A' && st.booted.local === true && st.booted.layered?.includes('jq'), `new base: status should show booted slot A, local, layered jq: ${JSON.stringify(st.booted).slice(0, 800)}`);
      expectThat(st.booted.base?.commit === v.commit && st.booted.base?.version === v.version && st.booted.version === v.version, `new base: status booted.base should be ${v.version} (${v.commit.slice(0, 12)}): ${JSON.stringify({ base: st.booted.base, version: st.booted.version })}`);
      expectThat(st.rollback?.slot === 'B' && st.rollback?.base?.version === ctx.base.version, `new base: the rollback slot should be the layered factory base: ${JSON.stringify(st.rollback).slice(0, 500)}`);
      ctx.note(`new base: slot A confirmed, /usr/share/hil/version ${v.version}, jq-${upstream} still runs, status base ${st.booted.base.version} layered ${JSON.stringify(st.booted.layered)}`);
      await resources(ctx, 'at the end');
    } finally {
      await apt.stop();
    }
  },
};

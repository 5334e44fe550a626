/**
 * (a) Boot, upgrade over HTTP from the host's `larch serve`, reboot into the new tree, which
 * boot-check finds healthy and marks good; a power cycle then boots it again with no env write
 * (board/boot-cases.json case b-marked-good).
 */
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';
import { formatBoots } from '../lib/boot-table.ts';

export async function upgradeAndConfirm(ctx: Ctx, label: string, opts: { agent?: string } = {}): Promise<{ version: string; commit: string; slot: 'A' | 'B' }> {
  const before = await ctx.status();
  const v = ctx.compose('good', opts.agent);
  const up = await ctx.larch('upgrade --reboot');
  expectThat(up.result === 'staged', `larch upgrade: expected result staged, got ${JSON.stringify(up).slice(0, 500)}`);
  const target: 'A' | 'B' = before.booted.slot === 'A' ? 'B' : 'A';
  const r = await ctx.reboot(label);
  expectThat(r.boots.length === 1 && r.boots[0].slot === target && r.boots[0].wrote, `${label}: expected the bootloader to spend a try on slot ${target}, saw ${formatBoots(r.boots)}`);
  expectThat(r.check.slot === target && r.check.healthy && r.check.outcome === 'confirmed', `${label}: expected boot-check to confirm slot ${target}, got ${JSON.stringify(r.check)}`);
  expectThat(r.check.commit === v.commit && r.check.version === v.version, `${label}: booted ${r.check.version} (${r.check.commit}), expected ${v.version}`);
  const st = await ctx.status();
  expectThat(st.booted?.slot === target && st.boot?.slots?.[target]?.good === true, `${label}: status does not show slot ${target} booted and good: ${JSON.stringify(st.boot)}`);
  const shipped = await ctx.shell.ok('cat /usr/share/hil/version /etc/hil-vendor.conf');
  expectThat(shipped.trim() === `${v.version}\nvendor ${v.version}`, `${label}: the new tree's files are not there: ${shipped}`);
  ctx.note(`${label}: ${before.booted.version} -> ${v.version} in slot ${target}, marked good (download ${up.download?.via ?? '?'} ${up.download?.bytes ?? '?'} bytes)`);
  return { version: v.version, commit: v.commit, slot: target };
}

export const upgrade: Scenario = {
  id: 'a',
  name: 'upgrade over HTTP, reboot, healthy, marked good',
  variants: 1,
  async run(ctx) {
    const up = await upgradeAndConfirm(ctx, 'reboot into the upgrade');
    const again = await ctx.powerOnAsCase('b-marked-good', 1, 'power cycle on the confirmed tree');
    expectThat(again.check.version === up.version && again.check.outcome === 'already-good', `power cycle: expected ${up.version} already good, got ${JSON.stringify(again.check)}`);
  },
};

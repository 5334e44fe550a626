/**
 * (b) Bad updates fall back by themselves: an update whose required health check fails (boot-check
 * reboots until the tries are spent), then one whose kernel panics (panic=10 resets the board).
 * Both end on the old tree within the tries, as board/boot-cases.json case
 * upgrade-b-fails-falls-back-to-a says, and the agent reports the fallback.
 */
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';
import type { VariantKind } from '../lib/fixture.ts';

async function badUpdate(ctx: Ctx, kind: VariantKind, label: string): Promise<void> {
  const before = await ctx.status();
  const good = before.booted;
  const v = ctx.compose(kind);
  const up = await ctx.larch('upgrade --reboot');
  expectThat(up.result === 'staged', `${label}: larch upgrade: expected staged, got ${JSON.stringify(up).slice(0, 500)}`);
  // 3 tries on the new slot, then the good one: 4 bootloader runs, no help from the harness.
  const r = await ctx.powerOnAsCase('upgrade-b-fails-falls-back-to-a', 4, label, { timeoutMs: 900_000 });
  if (kind === 'bad-kernel') expectThat(r.panics >= 3, `${label}: expected 3 kernel panics, saw ${r.panics}`);
  if (kind === 'bad-health') expectThat(r.retries.length === 3 && r.retries.every((c) => !c.healthy && c.outcome === 'retry'), `${label}: expected 3 unhealthy boot-checks asking for a reboot, saw ${JSON.stringify(r.retries.map((c) => c.outcome))}`);
  expectThat(r.check.slot === good.slot && r.check.commit === good.commit && r.check.healthy, `${label}: expected the old tree ${good.version} healthy in slot ${good.slot}, got ${JSON.stringify(r.check)}`);
  expectThat(r.check.fell_back === true && r.check.from !== null && r.check.from !== good.slot, `${label}: boot-check did not report the fallback: ${JSON.stringify(r.check)}`);
  const st = await ctx.status();
  expectThat(st.last_boot?.fell_back === true, `${label}: status.last_boot does not report the fallback: ${JSON.stringify(st.last_boot)}`);
  const failed = st.boot?.slots?.[r.check.from!];
  expectThat(failed && failed.good === false && failed.tries_left === 0, `${label}: the failed slot should be not good with 0 tries: ${JSON.stringify(failed)}`);
  const hist = await ctx.larch<any>('history --limit 20');
  const entries: any[] = Array.isArray(hist) ? hist : (hist.entries ?? hist.history ?? []);
  expectThat(entries.some((e) => e.event === 'fallback' && e.version !== v.version), `${label}: no fallback event in larch history: ${JSON.stringify(entries.map((e) => e.event))}`);
  ctx.note(`${label}: ${v.version} failed ${kind === 'bad-kernel' ? `(${r.panics} kernel panics)` : '(required health check)'}; back on ${good.version} in slot ${good.slot} after ${r.seconds.toFixed(0)} s; fallback reported`);
}

export const badUpdateScenario: Scenario = {
  id: 'b',
  name: 'bad updates (failing health check, panicking kernel) fall back by themselves',
  variants: 2,
  async run(ctx) {
    await badUpdate(ctx, 'bad-health', 'health check fails');
    await badUpdate(ctx, 'bad-kernel', 'kernel panics');
  },
};

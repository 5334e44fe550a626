/**
 * (c) Power cuts at random moments during an upgrade (download, slot write, /etc merge, env
 * write, the reboot and first boot of the new tree): after each one the board boots a complete
 * tree (the old one or the new one, never a mix), boot-check finds it healthy, the repo's objects
 * (the deployments are hardlinks of them) pass `larch fsck`; and at the end an upgrade completes.
 */
import { type Ctx, type Scenario, expectThat } from '../lib/scenario.ts';
import { LARCH } from '../lib/device.ts';
import { upgradeAndConfirm } from './upgrade.ts';

/** Cut moments spread over the upgrade's duration: one per equal share, at a random point in it (pure). */
export function cutMoments(n: number, spanMs: number, random: () => number = Math.random): number[] {
  return Array.from({ length: n }, (_, i) => Math.round(((i + random()) / n) * spanMs));
}

const CUTS = Number(process.env.HIL_CUTS ?? 10);
const FSCK_EVERY = Number(process.env.HIL_FSCK_EVERY ?? 5);

export const powerCutScenario: Scenario = {
  id: 'c',
  name: `power cuts at ${CUTS} random moments during upgrades`,
  async run(ctx: Ctx) {
    const known = new Map<string, string>(); // commit -> version of every tree the board may boot
    const first = await ctx.status();
    known.set(first.booted.commit, first.booted.version);
    // The span covers the upgrade and the reboot into the new tree; it grows when an upgrade finishes late.
    let spanMs = Number(process.env.HIL_CUT_SPAN_MS ?? 40_000);
    // Fractions of the span, one in each 1/CUTS share, so the cuts fall at different moments.
    const plan = cutMoments(CUTS, 1_000_000).map((m) => m / 1_000_000);
    let target: { commit: string; version: string } | null = null;
    for (let i = 0; i < CUTS; i++) {
      const st = await ctx.status();
      if (!target || st.booted.commit === target.commit) {
        target = ctx.compose('good');
        known.set(target.commit, target.version);
      }
      const at = Math.round(plan[i] * spanMs);
      ctx.board.console.skipAll();
      const started = Date.now();
      // Not through Shell.run: the command is cut, its end never comes.
      await ctx.board.console.send(`${LARCH} upgrade --reboot --json; echo @@UP''DONE@@; sync; busybox reboot -f`);
      let finished = -1;
      const done = ctx.board.console.expect(/^@@UPDONE@@$/m, at + 1, 'upgrade end').then(
        () => (finished = Date.now() - started),
        () => {},
      );
      await new Promise((r) => setTimeout(r, Math.max(0, at - (Date.now() - started))));
      await ctx.board.powerOff();
      await done;
      if (finished >= 0 && finished > spanMs / 2) spanMs = Math.round(finished * 1.5);
      // A late cut that still fell inside the upgrade: the board is slower than the span assumed;
      // stretch it so the last cuts also reach the slot switch and the first boot of the new tree.
      else if (finished < 0 && at >= spanMs * 0.75) spanMs = Math.round(spanMs * 1.3);
      const phase = finished >= 0 ? `after the upgrade ended (${(finished / 1000).toFixed(1)} s), during the reboot` : 'during the upgrade';
      const r = await ctx.powerOn(`boot after cut ${i + 1}`, { timeoutMs: 600_000 });
      const version = r.check.commit ? known.get(r.check.commit) : undefined;
      expectThat(version !== undefined && r.check.healthy, `cut ${i + 1} at ${(at / 1000).toFixed(1)} s ${phase}: booted ${JSON.stringify(r.check)}, not a known healthy tree`);
      expectThat(r.check.outcome === 'confirmed' || r.check.outcome === 'already-good', `cut ${i + 1}: boot-check outcome ${r.check.outcome}`);
      // fsck reads every object (over a minute under TCG): every FSCK_EVERY cuts and after the last.
      // Objects are never rewritten in place, so a torn one left by any earlier cut is still there.
      let checked = '';
      if ((i + 1) % FSCK_EVERY === 0 || i === CUTS - 1) {
        const fsck = await ctx.shell.run(`${LARCH} fsck --repo /sysroot/larch/repo --json`, 900_000);
        expectThat(fsck.code === 0, `cut ${i + 1}: larch fsck of the board's repo failed:\n${fsck.out.slice(-1500)}`);
        checked = ', fsck clean';
      }
      ctx.note(`cut ${i + 1} at ${(at / 1000).toFixed(1)} s ${phase}: booted ${version} in slot ${r.check.slot} (${r.check.outcome})${checked}`);
    }
    // The moment larch says "staged", with no sync after it: what it acknowledged must survive.
    const now = await ctx.status();
    if (!target || now.booted.commit === target.commit) {
      target = ctx.compose('good');
      known.set(target.commit, target.version);
    }
    const staged = await ctx.larch('upgrade');
    expectThat(staged.result === 'staged', `upgrade before the last cut: expected staged, got ${JSON.stringify(staged).slice(0, 400)}`);
    await ctx.board.powerOff();
    if (ctx.board.readBootEnv) {
      const env = await ctx.board.readBootEnv();
      expectThat(env !== null, `a power cut right after 'larch upgrade' returned staged left the bootloader env unreadable on the boot partition (see console.log; the boot partition's filesystem was not flushed)`);
    }
    const last = await ctx.powerOn('boot after the cut right after staged', { timeoutMs: 600_000 });
    expectThat(last.check.commit === target.commit && last.check.healthy, `a power cut right after 'larch upgrade' returned staged: expected the staged ${target.version} to boot, booted ${JSON.stringify(last.check)} after ${JSON.stringify(last.boots)}`);
    ctx.note(`cut ${CUTS + 1} right after larch upgrade returned staged (no sync): booted the staged ${target.version} (${last.check.outcome})`);

    const final = await upgradeAndConfirm(ctx, 'upgrade after the cuts');
    ctx.note(`after ${CUTS} cuts an upgrade to ${final.version} completed`);
  },
};

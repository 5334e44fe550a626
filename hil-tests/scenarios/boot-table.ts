/**
 * The whole of board/boot-cases.json on the board's real bootloader: for each case the env is
 * written onto the board's storage, then for each boot the board is powered on until the
 * bootloader prints its `larch: slot=` line, and cut. The slot, rescue flag and write must be the
 * case's, the env read back must be the case's, and bootloaderChoose() (what `larch sim-boot`
 * runs) must predict the same from the env actually on the board.
 *
 * Two ways to reach the env:
 * - from the host while the board is off (QEMU: the disk image). On systemd-boot the env is
 *   larch's entries on the ESP (read and written as the same variables), the row's
 *   `systemd_boot` fields apply, the prediction is blsChoose's on the entries, and the slots are
 *   compared decoded.
 * - from the board's own shell (a real board, whose env is on its flash; U-Boot and GRUB): the
 *   factory image boots once, stages slot B (a deployment of the same commit, so every boot
 *   reaches Linux) and creates the hold file, which makes the initramfs skip boot-check. After
 *   each table boot the board boots once more to a shell; that boot changes the env by its
 *   bootloader step alone, which bootloaderChoose predicts from the table's env, so its line and
 *   the env read from the shell check the table's env after the boot. The same shell then
 *   restores the table's env for the next boot.
 */
import { BOOTLOADER_LINE, parseBootLine } from '../lib/device.ts';
import { type BootCase, boardBoot, compareBoots, compareEnv, compareSlots, formatBoots, larchVars, predictBlsBoots, predictBoots } from '../lib/boot-table.ts';
import { type Ctx, HilError, type Scenario, expectThat } from '../lib/scenario.ts';
import { HOLD_FILE, HOLD_LINE, ShellEnv } from '../lib/shell-env.ts';

type CaseEnv = Record<string, string> | 'missing' | 'corrupt';

/** Why a case is not run on this board (null: it is). */
function notRunHere(c: BootCase, bootloader: string): string | null {
  // A board backend writes one env; the torn-copy, marker-file, zeroed and single-copy cases
  // need the storage laid out byte by byte: board-scripts.test.ts runs them on the same bootloaders.
  if (c.previous || c.lkg_marker || c.env === 'zero' || c.uboot_layout || (c.only && c.only !== bootloader)) {
    return 'needs a torn copy, the LKG marker file, a raw layout or another bootloader; test/integration/board-scripts.test.ts runs it on real U-Boot and GRUB, test/unit/bootcount/bls.test.ts through the systemd-boot mapping';
  }
  return null;
}

export const bootTableScenario: Scenario = {
  id: 'table',
  name: 'board/boot-cases.json on the real bootloader (and bootloaderChoose on the same env)',
  raw: true,
  async run(ctx) {
    const only = process.env.HIL_CASES?.split(',');
    if (only) {
      const unknown = only.filter((n) => !ctx.cases.some((c) => c.name === n));
      expectThat(unknown.length === 0, `HIL_CASES names no case of board/boot-cases.json: ${unknown.join(', ')}`);
    }
    const cases: BootCase[] = [];
    for (const c of ctx.cases) {
      if (only && !only.includes(c.name)) continue;
      const why = notRunHere(c, ctx.board.bootloader);
      if (why) ctx.note(`case ${c.name}: not run here (${why})`);
      else cases.push(c);
    }
    const boots = ctx.board.readBootEnv && ctx.board.writeBootEnv ? await hostTable(ctx, cases) : await shellTable(ctx, cases);
    ctx.note(`${boots} power-ons across ${cases.length} cases agree with the table`);
  },
};

/** Power on until the bootloader's line, then cut: nothing after the bootloader runs. */
async function bootloaderOnly(ctx: Ctx, what: string) {
  ctx.board.console.skipAll();
  const started = Date.now();
  await ctx.board.powerOn();
  const m = await ctx.board.console.expect(BOOTLOADER_LINE, 120_000, `${what}: the bootloader's larch: slot= line`);
  const seconds = (Date.now() - started) / 1000;
  await ctx.board.powerOff();
  return { seen: parseBootLine(m), seconds };
}

/** The env read and written from the host while the board is off (QEMU). */
async function hostTable(ctx: Ctx, cases: BootCase[]): Promise<number> {
  const board = ctx.board;
  const bls = board.bootloader === 'systemd-boot';
  let boots = 0;
  for (const c of cases) {
    await board.powerOff();
    await board.writeBootEnv!(c.env as CaseEnv);
    let expectedEnv: Record<string, string> | null = typeof c.env === 'object' ? c.env : null;
    for (const [i, row] of c.boots.entries()) {
      const want = boardBoot(row, board.bootloader);
      const before = (await board.readBootEnv!()) ?? new Map<string, string>();
      const predicted = bls && board.readBootEntries ? predictBlsBoots(await board.readBootEntries(), 1) : predictBoots(before, 1).boots;
      const p = compareBoots(predicted, [want]);
      expectThat(p.length === 0, `case ${c.name}, boot ${i + 1}: bootloaderChoose on the env read from the board disagrees with the table: ${p.join('; ')}`);
      const { seen, seconds } = await bootloaderOnly(ctx, `case ${c.name} boot ${i + 1}`);
      boots++;
      const problems = compareBoots([seen], [want]);
      expectThat(problems.length === 0, `case ${c.name}, boot ${i + 1}: ${problems.join('; ')}`);
      if (want.wrote) expectedEnv = want.env ?? null;
      const after = await board.readBootEnv!();
      if (expectedEnv) {
        expectThat(after !== null, `case ${c.name}, boot ${i + 1}: the env on the board cannot be read back`);
        const diff = bls ? compareSlots(larchVars(after), expectedEnv) : compareEnv(larchVars(after), expectedEnv);
        expectThat(diff.length === 0, `case ${c.name}, boot ${i + 1}: env after the boot: ${diff.join('; ')}`);
      }
      if (i === 0) ctx.boots.push({ label: `bootloader line (${c.name})`, seconds });
    }
    ctx.note(`${c.name}: ${formatBoots(c.boots.map((b) => boardBoot(b, board.bootloader)))} as the table says`);
  }
  return boots;
}

/** The env read and written from the board's own shell (a real board). Counts the table's boots, not the read-back boots. */
async function shellTable(ctx: Ctx, cases: BootCase[]): Promise<number> {
  const { board, shell } = ctx;
  if (board.bootloader === 'systemd-boot') {
    throw new HilError("table through the board's shell is built for U-Boot and GRUB boards; on systemd-boot run it on QEMU (hil-tests/run.ts --board qemu-x86_64-uefi), whose ESP the harness reads while the board is off");
  }
  const first = await ctx.powerOn('first boot (factory image)');
  expectThat(first.check.slot === 'A' && first.check.healthy, `first boot: expected the factory image healthy in slot A, got ${JSON.stringify(first.check)}`);
  // Slot B gets a deployment of the same commit, so a boot the table sends to B reaches a shell too.
  const staged = await ctx.larch('kargs --append hil.table=1');
  expectThat(staged.result === 'staged' && staged.slot === 'B', `larch kargs (to give slot B a deployment): expected staged in slot B, got ${JSON.stringify(staged)}`);
  const env = await ShellEnv.open(shell, board.bootloader as 'uboot' | 'grub');
  ctx.note(`env from the board's shell: ${env.target.copies.map((c) => `${c.path}@${c.offset}`).join(', ')}${env.target.owned ? '' : " (the board's own env: larch's variables only)"}`);
  await shell.ok(`touch ${HOLD_FILE} && sync`);
  let native: string | null = null;
  let boots = 0;
  for (const c of cases) {
    if (!env.target.owned && typeof c.env === 'string') {
      ctx.note(`case ${c.name}: not run here (a ${c.env} env on the board's own env storage: U-Boot would boot its built-in env)`);
      continue;
    }
    /** The table's env on the board now (null: none valid), checked right after it was written. */
    let expected: Record<string, string> | null = typeof c.env === 'object' ? c.env : null;
    await restore(c, c.env as CaseEnv, expected);
    for (const [i, row] of c.boots.entries()) {
      const want = boardBoot(row, board.bootloader);
      const where = `case ${c.name}, boot ${i + 1}`;
      const p = compareBoots(predictBoots(envMap(expected), 1).boots, [want]);
      expectThat(p.length === 0, `${where}: bootloaderChoose on the env written to the board disagrees with the table: ${p.join('; ')}`);
      await shell.ok('sync');
      await board.powerOff();
      const { seen, seconds } = await bootloaderOnly(ctx, where);
      boots++;
      const problems = compareBoots([seen], [want]);
      expectThat(problems.length === 0, `${where}: ${problems.join('; ')}`);
      if (want.wrote) expected = want.env ?? null;
      if (i === 0) ctx.boots.push({ label: `bootloader line (${c.name})`, seconds });

      // The read-back boot: its bootloader step is predicted from the table's env after boot i.
      const step = predictBoots(envMap(expected), 1);
      board.console.skipAll();
      await board.powerOn();
      const line = parseBootLine(await board.console.expect(BOOTLOADER_LINE, 120_000, `${where}: the read-back boot's bootloader line`));
      await board.console.expect(HOLD_LINE, 240_000, `${where}: the read-back boot reaching the initramfs's hold (${HOLD_FILE})`);
      await shell.ready();
      const lp = compareBoots([line], step.boots);
      expectThat(lp.length === 0, `${where}: the read-back boot, one bootloader step from the table's env after boot ${i + 1}: ${lp.join('; ')}`);
      const after = await env.read();
      if (expected || step.boots[0].wrote) {
        expectThat(after !== null, `${where}: the env on the board has no valid copy after the read-back boot`);
        const diff = compareEnv(larchVars(after), larchVars(step.env));
        expectThat(diff.length === 0, `${where}: the env after boot ${i + 1} and one more bootloader step: ${diff.join('; ')}`);
      } else {
        expectThat(after === null, `${where}: the env was ${c.env} and no boot wrote, yet it reads as ${JSON.stringify(after && larchVars(after))}`);
      }
      native = (await crossCheck(after, where)) ?? native;
      if (i < c.boots.length - 1) await restore(c, expected ?? (c.env as CaseEnv), expected);
    }
    ctx.note(`${c.name}: ${formatBoots(c.boots.map((b) => boardBoot(b, board.bootloader)))} as the table says`);
  }
  await shell.ok(`rm -f ${HOLD_FILE} && sync`);
  ctx.note(native ? `every env read was cross-checked with the board's ${native}` : "the board's image has no fw_printenv/grub-editenv: the env was read with larch bootenv only (CI cross-checks it with both tools)");
  return boots;

  /** Writes `target` from the shell and reads it back: the table's variables, or no valid env. */
  async function restore(c: BootCase, target: CaseEnv, vars: Record<string, string> | null): Promise<void> {
    await env.write(target);
    const back = await env.read();
    if (vars) {
      expectThat(back !== null, `case ${c.name}: the env written from the board's shell reads as no env`);
      const diff = compareEnv(larchVars(back), vars);
      expectThat(diff.length === 0, `case ${c.name}: the env written from the board's shell reads back as: ${diff.join('; ')}`);
    } else {
      expectThat(back === null, `case ${c.name}: the ${String(target)} env written from the board's shell still reads as ${JSON.stringify(back && larchVars(back))}`);
    }
  }

  /** The board's own tool agrees with larch bootenv (null: the image has no such tool). */
  async function crossCheck(after: Map<string, string> | null, where: string): Promise<string | null> {
    const n = await env.readNative();
    if (!n) return null;
    if (after === null) expectThat(n.vars === null || Object.keys(larchVars(n.vars)).length === 0, `${where}: ${n.tool} reads larch variables from an env larch bootenv finds invalid`);
    else {
      expectThat(n.vars !== null, `${where}: ${n.tool} cannot read the env larch bootenv reads`);
      const diff = compareEnv(larchVars(n.vars), larchVars(after));
      expectThat(diff.length === 0, `${where}: ${n.tool} and larch bootenv disagree: ${diff.join('; ')}`);
    }
    return n.tool;
  }
}

function envMap(vars: Record<string, string> | null): Map<string, string> {
  return new Map(Object.entries(vars ?? {}));
}

/**
 * The whole of board/boot-cases.json on the board's real bootloader: for each case the env is
 * written onto the board's storage while it is off, then for each boot the board is powered on
 * until the bootloader prints its `larch: slot=` line, and cut. The slot, rescue flag and write
 * must be the case's, the env read back must be the case's, and bootloaderChoose() (what
 * `larch sim-boot` runs) must predict the same from the env actually on the board. On
 * systemd-boot the env is larch's entries on the ESP (read and written as the same variables),
 * the row's `systemd_boot` fields apply, the prediction is blsChoose's on the entries, and the
 * slots are compared decoded. Needs a backend that can read and write the env (QEMU); a real
 * board skips it.
 */
import { BOOTLOADER_LINE, parseBootLine } from '../lib/device.ts';
import { boardBoot, compareBoots, compareEnv, compareSlots, formatBoots, larchVars, predictBlsBoots, predictBoots } from '../lib/boot-table.ts';
import { type Scenario, expectThat } from '../lib/scenario.ts';

export const bootTableScenario: Scenario = {
  id: 'table',
  name: 'board/boot-cases.json on the real bootloader (and bootloaderChoose on the same env)',
  raw: true,
  async run(ctx) {
    const { board } = ctx;
    if (!board.readBootEnv || !board.writeBootEnv) {
      ctx.note('skipped: this backend cannot read or write the env on the board storage');
      return;
    }
    const only = process.env.HIL_CASES?.split(',');
    let boots = 0;
    for (const c of ctx.cases) {
      if (only && !only.includes(c.name)) continue;
      // A board backend writes one env; the torn-copy, marker-file, zeroed and single-copy cases
      // need the storage laid out byte by byte: board-scripts.test.ts runs them on the same bootloaders.
      if (c.previous || c.lkg_marker || c.env === 'zero' || c.uboot_layout || (c.only && c.only !== board.bootloader)) {
        ctx.note(`case ${c.name}: not run here (needs a torn copy, the LKG marker file, a raw layout or another bootloader); test/integration/board-scripts.test.ts runs it on real U-Boot and GRUB, test/unit/bootcount/bls.test.ts through the systemd-boot mapping`);
        continue;
      }
      const bls = board.bootloader === 'systemd-boot';
      await board.powerOff();
      await board.writeBootEnv(c.env as Record<string, string> | 'missing' | 'corrupt');
      let expectedEnv: Record<string, string> | null = typeof c.env === 'object' ? c.env : null;
      for (const [i, row] of c.boots.entries()) {
        const want = boardBoot(row, board.bootloader);
        const before = (await board.readBootEnv()) ?? new Map<string, string>();
        const predicted = bls && board.readBootEntries ? predictBlsBoots(await board.readBootEntries(), 1) : predictBoots(before, 1).boots;
        const p = compareBoots(predicted, [want]);
        expectThat(p.length === 0, `case ${c.name}, boot ${i + 1}: bootloaderChoose on the env read from the board disagrees with the table: ${p.join('; ')}`);
        board.console.skipAll();
        const started = Date.now();
        await board.powerOn();
        const m = await board.console.expect(BOOTLOADER_LINE, 120_000, `case ${c.name} boot ${i + 1}: the bootloader's larch: slot= line`);
        const seconds = (Date.now() - started) / 1000;
        await board.powerOff();
        boots++;
        const seen = parseBootLine(m);
        const problems = compareBoots([seen], [want]);
        expectThat(problems.length === 0, `case ${c.name}, boot ${i + 1}: ${problems.join('; ')}`);
        if (want.wrote) expectedEnv = want.env ?? null;
        const after = await board.readBootEnv();
        if (expectedEnv) {
          expectThat(after !== null, `case ${c.name}, boot ${i + 1}: the env on the board cannot be read back`);
          const diff = bls ? compareSlots(larchVars(after), expectedEnv) : compareEnv(larchVars(after), expectedEnv);
          expectThat(diff.length === 0, `case ${c.name}, boot ${i + 1}: env after the boot: ${diff.join('; ')}`);
        }
        if (i === 0) ctx.boots.push({ label: `bootloader line (${c.name})`, seconds });
      }
      ctx.note(`${c.name}: ${formatBoots(c.boots.map((b) => boardBoot(b, board.bootloader)))} as the table says`);
    }
    ctx.note(`${boots} power-ons across ${ctx.cases.length} cases agree with the table`);
  },
};

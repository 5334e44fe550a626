/**
 * `npm run hil`: builds each board's image, runs the scenarios on it, prints the report.
 *
 *   node --import tsx hil-tests/run.ts [--board B[,B]] [--scenario ID[,ID]] [--config board.toml]
 *                                      [--work-dir DIR [--reuse]] [--json FILE] [--keep] [--help]
 *
 * HELP below is the manual; hil-tests/README.md the long form.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatReport } from './lib/report.ts';
import { QEMU_PROFILES } from './lib/qemu.ts';
import { runHil } from './lib/runner.ts';
import { live } from './lib/scenario.ts';
import { SCENARIOS } from './lib/scenarios.ts';

const HELP = `NAME
  hil-tests/run.ts - run the hardware-in-the-loop scenarios on QEMU boards or a real board

SYNOPSIS
  node --import tsx hil-tests/run.ts [--board B[,B...]] [--scenario ID[,ID...]]
                                     [--config BOARD.toml] [--work-dir DIR [--reuse]]
                                     [--json FILE] [--keep]

DESCRIPTION
  Builds each board's disk image with 'larch image build' (images/BOARD.toml), serves a vendor
  repo with 'larch serve', and runs each scenario on a freshly flashed board: power, serial
  console and the device's own shell, nothing else. Prints a report (scenario, PASS/FAIL,
  seconds, boot times) and where the console logs are. hil-tests/README.md says what each
  scenario checks and how to wire a real board.

OPTIONS
  --board B[,B...]      QEMU boards (default: every one this host can run; the others are
                        listed as skipped): ${Object.keys(QEMU_PROFILES).join(', ')}
  --scenario ID[,ID...] scenarios (default: all): ${SCENARIOS.map((s) => s.id).join(', ')}
  --config BOARD.toml   a real board instead of QEMU: its serial device, power and flash
                        commands, and the board profile its image is built for
                        (hil-tests/README.md, "A real board")
  --work-dir DIR        keep everything here: images, each scenario's repo and serve log,
                        console.log (default: a temporary directory, removed when all passed)
  --reuse               take the image an earlier run left in --work-dir
  --json FILE           also write the report as JSON
  --keep                keep the temporary work directory even when everything passed
  --help                this text

ENVIRONMENT
  HIL_CUTS (power cuts in scenario c, default 10), HIL_FSCK_EVERY (default 5), HIL_CASES
  (board/boot-cases.json case names for 'table'), HIL_DEVICE_LARCH / HIL_DEVICE_LARCH_ARM64
  (another larch binary for the board).

EXIT STATUS
  0 every scenario passed; 1 a scenario failed; 2 a usage or set-up error (unknown board or
  scenario, a missing tool, a bad config file).

EXAMPLES
  node --import tsx hil-tests/run.ts --board qemu-x86_64-uefi --scenario a,b,bless
  node --import tsx hil-tests/run.ts --config lab/gateway-1.toml --scenario a,b,table
`;

// Ctrl-C or a CI timeout: cut the boards' power and stop the servers, so no QEMU is left running.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`hil: ${signal}: powering off and stopping`);
    void Promise.allSettled([...[...live.boards].map((b) => b.powerOff()), ...[...live.servers].map((s) => s.stop())]).then(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      board: { type: 'string' },
      scenario: { type: 'string' },
      config: { type: 'string' },
      'work-dir': { type: 'string' },
      json: { type: 'string' },
      keep: { type: 'boolean' },
      reuse: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const workDir = values['work-dir'] ? resolve(values['work-dir']) : mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-hil-'));
  mkdirSync(workDir, { recursive: true });
  const result = await runHil({ boards: values.board?.split(','), scenarios: values.scenario?.split(','), config: values.config, workDir, reuse: values.reuse });
  console.log(formatReport(result.reports, result));
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2) + '\n');
  const ok = result.reports.length > 0 && result.reports.every((r) => r.ok);
  if (ok && !values.keep && !values['work-dir']) rmSync(workDir, { recursive: true, force: true });
  else console.log(`work dir kept (console logs, serve logs, images): ${workDir}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`hil: ${(e as Error).message}`);
    process.exit(2);
  },
);

/**
 * `npm run hil`: builds each board's image, then runs the scenarios on it and prints the report.
 *
 *   node --import tsx hil-tests/run.ts [--board B[,B]] [--scenario a,b,c,d,table] [--config board.toml]
 *                                      [--work-dir DIR [--reuse]] [--json FILE] [--keep]
 *
 * Without --board: every QEMU board that `larch image build` knows and this host can run.
 * --config runs on a real board instead (hil-tests/README.md). --reuse takes the image an earlier
 * run left in --work-dir. Exit 0 when every scenario passed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Board } from './lib/board.ts';
import { parseBoardConfig } from './lib/config.ts';
import { HOST_LARCH, ROOT, buildBaseImage } from './lib/fixture.ts';
import { QEMU_PROFILES, QemuBoard } from './lib/qemu.ts';
import { formatReport } from './lib/report.ts';
import { type ScenarioReport, runScenario } from './lib/scenario.ts';
import { SCENARIOS } from './lib/scenarios.ts';
import { SerialBoard } from './lib/serial.ts';

const { values } = parseArgs({
  options: {
    board: { type: 'string' },
    scenario: { type: 'string' },
    config: { type: 'string' },
    'work-dir': { type: 'string' },
    json: { type: 'string' },
    keep: { type: 'boolean' },
    reuse: { type: 'boolean' },
  },
});

/** Why a QEMU board cannot run here (null: it can). */
function qemuBoardProblem(board: string): string | null {
  const p = QEMU_PROFILES[board];
  if (!p) return `unknown board (known: ${Object.keys(QEMU_PROFILES).join(', ')})`;
  const known = spawnSync(HOST_LARCH, ['image', 'build', '--help'], { encoding: 'utf8' }).stdout;
  if (!known.includes(board)) return `larch image build does not know --board ${board} yet`;
  if (!existsSync(join(ROOT, 'images', `${board}.toml`))) return `images/${board}.toml is missing`;
  if (spawnSync('sh', ['-c', `command -v ${p.qemu}`]).status !== 0) return `${p.qemu} is not installed`;
  if (p.architecture === 'arm64' && !existsSync(join(ROOT, 'dist', 'larch-arm64'))) return 'dist/larch-arm64 is missing (node scripts/build.mjs linux-arm64)';
  return null;
}

async function main(): Promise<number> {
  const started = Date.now();
  if (!existsSync(HOST_LARCH)) throw new Error(`${HOST_LARCH} is missing: run node scripts/build.mjs linux-x64`);
  const work = values['work-dir'] ? resolve(values['work-dir']) : mkdtempSync(join(process.env.LARCH_TEST_TMP ?? tmpdir(), 'larch-hil-'));
  mkdirSync(work, { recursive: true });
  const wanted = values.scenario ? values.scenario.split(',') : SCENARIOS.map((s) => s.id);
  const unknown = wanted.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.id).join(', ')})`);
  const scenarios = SCENARIOS.filter((s) => wanted.includes(s.id));

  const reports: ScenarioReport[] = [];
  const images: { board: string; seconds: number }[] = [];
  const skipped: string[] = [];
  const targets: { name: string; make: (dir: string) => Promise<{ board: Board; base: Awaited<ReturnType<typeof buildBaseImage>> }> }[] = [];

  if (values.config) {
    const file = resolve(values.config);
    const config = parseBoardConfig(readFileSync(file, 'utf8'), file);
    const profile = QEMU_PROFILES[config.imageBoard];
    if (!profile) throw new Error(`${file}: image_board '${config.imageBoard}' is not a board larch image build knows`);
    targets.push({
      name: config.name,
      make: async (dir) => ({
        base: await buildBaseImage(config.imageBoard, profile.architecture, dir, { serverHost: config.serverHost, listenHost: config.listenHost }),
        board: new SerialBoard(config, join(dir, 'console.log')),
      }),
    });
  } else {
    const boards = values.board ? values.board.split(',') : Object.keys(QEMU_PROFILES);
    for (const name of boards) {
      const problem = qemuBoardProblem(name);
      if (problem) {
        if (values.board) throw new Error(`board ${name}: ${problem}`);
        skipped.push(`${name}: ${problem}`);
        continue;
      }
      targets.push({
        name,
        make: async (dir) => {
          const base = await buildBaseImage(name, QEMU_PROFILES[name].architecture, dir, { reuse: values.reuse });
          return { base, board: new QemuBoard({ board: name, disk: join(dir, 'disk.img'), workDir: dir, logPath: join(dir, 'console.log'), larchBin: HOST_LARCH }) };
        },
      });
    }
  }

  for (const target of targets) {
    const dir = join(work, target.name);
    mkdirSync(dir, { recursive: true });
    console.log(`== ${target.name}: building the image (work dir ${dir})`);
    const { board, base } = await target.make(dir);
    images.push({ board: target.name, seconds: base.seconds });
    console.log(`   ${base.version} (${base.commit.slice(0, 12)}) in ${base.seconds.toFixed(0)} s; console log ${board.console.logPath}`);
    try {
      for (const s of scenarios) {
        console.log(`== ${target.name}: scenario ${s.id}: ${s.name}`);
        const r = await runScenario(s, { board, base, workDir: dir });
        reports.push(r);
        console.log(`   ${r.ok ? 'PASS' : 'FAIL'} in ${r.seconds.toFixed(0)} s${r.error ? `: ${r.error.split('\n')[0]}` : ''}`);
      }
    } finally {
      await board.close();
    }
  }

  const totalSeconds = (Date.now() - started) / 1000;
  console.log(formatReport(reports, { totalSeconds, images, skipped }));
  if (values.json) writeFileSync(values.json, JSON.stringify({ totalSeconds, images, skipped, reports }, null, 2) + '\n');
  const ok = reports.length > 0 && reports.every((r) => r.ok);
  if (ok && !values.keep && !values['work-dir']) rmSync(work, { recursive: true, force: true });
  else console.log(`work dir kept: ${work}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`hil: ${(e as Error).message}`);
    process.exit(2);
  },
);

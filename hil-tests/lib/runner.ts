/**
 * Runs scenarios on boards: builds each board's image once, then every scenario on a freshly
 * flashed board. Used by run.ts (`npm run hil`) and by the CI's tap file (ci.test.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { type BoardProfile, parseBoardProfile } from '../../src/image/profile.ts';
import type { Board } from './board.ts';
import { type SerialBoardConfig, parseBoardConfig } from './config.ts';
import { type BaseImage, HOST_LARCH, ROOT, buildBaseImage, warmVariantTrees } from './fixture.ts';
import { QEMU_PROFILES, QemuBoard } from './qemu.ts';
import { type ScenarioReport, runScenario } from './scenario.ts';
import { SCENARIOS } from './scenarios.ts';
import { SerialBoard } from './serial.ts';

export interface HilOptions {
  /** QEMU boards (default: every one this host can run). */
  boards?: string[];
  /** Scenario ids (default: all). */
  scenarios?: string[];
  /** A real board's config file instead of QEMU. */
  config?: string;
  workDir: string;
  /** Take the image an earlier run left in workDir. */
  reuse?: boolean;
  log?: (line: string) => void;
}

export interface HilResult {
  reports: ScenarioReport[];
  images: { board: string; seconds: number }[];
  skipped: string[];
  totalSeconds: number;
}

/** Why a QEMU board cannot run here (null: it can). */
export function qemuBoardProblem(board: string): string | null {
  const p = QEMU_PROFILES[board];
  if (!p) return `unknown board (known: ${Object.keys(QEMU_PROFILES).join(', ')})`;
  if (!existsSync(HOST_LARCH)) return `${HOST_LARCH} is missing (node scripts/build.mjs linux-x64)`;
  const known = spawnSync(HOST_LARCH, ['image', 'build', '--help'], { encoding: 'utf8' }).stdout;
  if (!known.includes(board)) return `larch image build does not know --board ${board} yet`;
  if (!existsSync(join(ROOT, 'images', `${board}.toml`))) return `images/${board}.toml is missing`;
  for (const tool of [p.qemu, 'mcopy', 'mkfs.vfat', 'mkfs.ext4', 'sfdisk', 'cpio']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  if (p.bootloader === 'grub' && spawnSync('sh', ['-c', 'command -v grub-mkimage']).status !== 0) return 'grub-mkimage is not installed (grub-pc-bin)';
  if (p.uefi && !existsSync(p.uefi.code)) return `${p.uefi.code} is missing (ovmf)`;
  if (p.architecture === 'arm64' && !existsSync(join(ROOT, 'dist', 'larch-arm64'))) return 'dist/larch-arm64 is missing (node scripts/build.mjs linux-arm64)';
  const native = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
  const foreign = spawnSync('dpkg', ['--print-foreign-architectures'], { encoding: 'utf8' }).stdout.split('\n');
  if (native !== p.architecture && !foreign.includes(p.architecture)) return `the host's apt has no ${p.architecture} indexes (dpkg --add-architecture ${p.architecture} && apt-get update)`;
  return null;
}

/** The board profile a lab config names (board/profiles/NAME.toml), checked against what the config says. */
export function labProfile(config: SerialBoardConfig, file: string): BoardProfile {
  const path = join(ROOT, 'board', 'profiles', `${config.profile}.toml`);
  if (!existsSync(path)) throw new Error(`${file}: profile '${config.profile}' is not a board profile (no ${path}; known: ${readdirSync(join(ROOT, 'board', 'profiles')).filter((n) => n.endsWith('.toml')).map((n) => n.slice(0, -5)).join(', ')})`);
  const profile = parseBoardProfile(readFileSync(path, 'utf8'), config.profile, path);
  if (config.bootloader !== undefined && config.bootloader !== profile.bootloader) throw new Error(`${file}: bootloader '${config.bootloader}' is not the profile's ('${profile.bootloader}' in ${path})`);
  if (profile.architecture !== 'amd64' && profile.architecture !== 'arm64') throw new Error(`${file}: profile '${config.profile}' is for ${profile.architecture}; the harness builds larch for amd64 and arm64`);
  return profile;
}

export async function runHil(opts: HilOptions): Promise<HilResult> {
  const started = Date.now();
  const log = opts.log ?? ((line: string) => console.log(line));
  const wanted = opts.scenarios ?? SCENARIOS.map((s) => s.id);
  const unknown = wanted.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.id).join(', ')})`);
  const scenarios = SCENARIOS.filter((s) => wanted.includes(s.id));
  const reports: ScenarioReport[] = [];
  const images: { board: string; seconds: number }[] = [];
  const skipped: string[] = [];
  /** definition: the image definition the board's image and every variant are composed from. */
  const targets: { name: string; definition: string; make: (dir: string) => Promise<{ board: Board; base: BaseImage }> }[] = [];

  if (opts.config) {
    const file = resolve(opts.config);
    const config = parseBoardConfig(readFileSync(file, 'utf8'), file);
    const profile = labProfile(config, file);
    const definition = config.definition === undefined ? undefined : resolve(dirname(file), config.definition);
    const firmwareDir = config.firmwareDir === undefined ? undefined : resolve(dirname(file), config.firmwareDir);
    targets.push({
      name: config.name,
      definition: definition ?? join(ROOT, 'images', `${profile.name}.toml`),
      make: async (dir) => ({
        base: await buildBaseImage(profile.name, profile.architecture as 'amd64' | 'arm64', dir, { serverHost: config.serverHost, listenHost: config.listenHost, reuse: opts.reuse, definition, firmwareDir }),
        board: new SerialBoard(config, profile.bootloader, join(dir, 'console.log')),
      }),
    });
  } else {
    for (const name of opts.boards ?? Object.keys(QEMU_PROFILES)) {
      const problem = qemuBoardProblem(name);
      if (problem) {
        if (opts.boards) throw new Error(`board ${name}: ${problem}`);
        skipped.push(`${name}: ${problem}`);
        continue;
      }
      targets.push({
        name,
        definition: join(ROOT, 'images', `${name}.toml`),
        make: async (dir) => {
          const base = await buildBaseImage(name, QEMU_PROFILES[name].architecture, dir, { reuse: opts.reuse });
          return { base, board: new QemuBoard({ board: name, disk: join(dir, 'disk.img'), workDir: dir, logPath: join(dir, 'console.log'), larchBin: HOST_LARCH }) };
        },
      });
    }
  }

  // The most versions one scenario composes: their trees are built while the image is built and the board boots.
  const variants = Math.max(0, ...scenarios.map((s) => s.variants ?? 0));
  for (const target of targets) {
    const dir = join(opts.workDir, target.name);
    mkdirSync(dir, { recursive: true });
    const warmUp = warmVariantTrees(target.definition, variants, join(dir, 'tree-warm-up'));
    log(`== ${target.name}: building the image (work dir ${dir})${variants > 0 ? `; the trees of ${variants} variant(s) in the background` : ''}`);
    let made: { board: Board; base: BaseImage };
    try {
      made = await target.make(dir);
    } catch (e) {
      warmUp.stop();
      throw e;
    }
    const { board, base } = made;
    images.push({ board: target.name, seconds: base.seconds });
    log(`   ${base.version} (${base.commit.slice(0, 12)}) in ${base.seconds.toFixed(0)} s; console log ${board.console.logPath}`);
    try {
      for (const s of scenarios) {
        if (s.bootloaders && !s.bootloaders.includes(board.bootloader)) {
          skipped.push(`${target.name} ${s.id}: only for ${s.bootloaders.join(', ')} boards (this one boots ${board.bootloader})`);
          continue;
        }
        log(`== ${target.name}: scenario ${s.id}: ${s.name}`);
        const r = await runScenario(s, { board, base, workDir: dir });
        reports.push(r);
        log(`   ${r.ok ? 'PASS' : 'FAIL'} in ${r.seconds.toFixed(0)} s${r.error ? `: ${r.error.split('\n')[0]}` : ''}`);
      }
    } finally {
      warmUp.stop();
      await board.close();
    }
  }
  return { reports, images, skipped, totalSeconds: (Date.now() - started) / 1000 };
}

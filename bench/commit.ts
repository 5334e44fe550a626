/**
 * `larch commit` against `ostree commit` on the same real tree (Debian packages, see corpus.ts),
 * in one run: wall time and peak RSS of each command, median of N runs, as ratios larch/ostree.
 *
 *   node --import tsx bench/commit.ts [--smoke] [--json] [--reps N] [--runtime bun|node]
 *
 * For each repo mode (archive, bare-user, bare) and each tool: a fresh repo, a first commit of
 * the tree (every object new), then a second commit of the same tree into the same repo (every
 * object already there). Default owners and xattrs for both tools. The tree is read once
 * beforehand so both tools start from a warm page cache, and `sync` runs (untimed) before every
 * timed command so one run's writeback does not land in the next one's time.
 *
 * The Bun binary is copied into the work directory first, so a rebuild of dist/larch during
 * the run cannot mix two builds in one table. --json prints the results as JSON on stdout
 * (the table still goes to stderr).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FULL_PACKAGES, ROOT, SMOKE_PACKAGES, buildCorpus, type Corpus, workDir } from './corpus.ts';

type Tool = 'larch' | 'ostree';
type Mode = 'archive' | 'bare-user' | 'bare';
type Step = 'first' | 'second';

interface Sample {
  seconds: number;
  peakMiB: number;
}
interface Row {
  mode: Mode;
  commit: Step;
  tool: Tool;
  /** Medians over the runs. */
  seconds: number;
  peakMiB: number;
  /** Size of the repo after this commit (median), as `du -sb`. */
  repoMiB: number;
  runs: Sample[];
  /** larch / ostree, on larch's rows. */
  ratio?: { seconds: number; peakMiB: number };
  /** `larch commit --json` stats of the last run, on larch's rows. */
  larchStats?: { objects_written: number; objects_reused: number; bytes_written: number };
}

const BIN = join(ROOT, 'dist', 'larch');
const NODE_ENTRY = join(ROOT, 'bin', 'larch.js');
const TIME = '/usr/bin/time';
const isRoot = process.getuid?.() === 0;

/** Thrown for anything that stops the run; main() prints it (after the work dir is removed). */
class BenchError extends Error {}

function fail(message: string): never {
  throw new BenchError(message);
}

function run(cmd: string, args: string[], what = `${cmd} ${args.join(' ')}`): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) fail(`${what}: ${r.error.message}`);
  if (r.status !== 0) fail(`${what} exited ${r.status}:\n${r.stderr.trim()}`);
  return r.stdout;
}

/** GNU time reports peak RSS (%M) of the command and the children it waited for. */
function ensureTools(): void {
  if (!existsSync(TIME)) {
    if (!isRoot) fail(`${TIME} is missing: install the Debian package 'time' (apt-get install time)`);
    console.error(`bench/commit: installing 'time'`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'time'], { stdio: 'inherit', env }).status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'inherit' });
      if (spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'time'], { stdio: 'inherit', env }).status !== 0) fail(`apt-get install time failed`);
    }
  }
  for (const [tool, pkg] of [['ostree', 'ostree'], ['getfattr', 'attr'], ['sync', 'coreutils'], ['tar', 'tar']]) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) fail(`'${tool}' is missing: install the Debian package '${pkg}'`);
  }
}

/** Runs argv under GNU time: wall time measured here, peak RSS from time's %M (KiB). */
function measure(argv: string[], timeFile: string): Sample & { stdout: string } {
  spawnSync('sync', { stdio: 'ignore' });
  const start = process.hrtime.bigint();
  const r = spawnSync(TIME, ['-f', '%e %M', '-o', timeFile, ...argv], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) fail(`${argv.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) fail(`${argv.join(' ')} exited ${r.status}:\n${r.stderr.trim()}`);
  const last = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1) ?? '';
  const m = /^([\d.]+) (\d+)$/.exec(last);
  if (!m) fail(`cannot parse ${TIME} output '${last}'`);
  return { seconds, peakMiB: Number(m[2]) / 1024, stdout: r.stdout };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const duMiB = (path: string) => Number(run('du', ['-sb', path]).split('\t')[0]) / 2 ** 20;

function warmPageCache(dir: string): void {
  // Through a pipe: GNU tar skips reading file data when its archive is /dev/null.
  const r = spawnSync('sh', ['-c', 'tar -cf - -C "$1" . | cat > /dev/null', 'warm', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) fail(`reading the tree ${dir} failed`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      reps: { type: 'string' },
      runtime: { type: 'string', default: 'bun' },
    },
  });
  const smoke = values.smoke ?? false;
  const reps = values.reps !== undefined ? Number(values.reps) : smoke ? 1 : 3;
  if (!Number.isInteger(reps) || reps < 1) fail(`--reps must be a positive integer, got '${values.reps}'`);
  const runtime = values.runtime;
  if (runtime !== 'bun' && runtime !== 'node') fail(`--runtime must be 'bun' or 'node', got '${runtime}'`);
  if (runtime === 'bun' && !existsSync(BIN)) fail(`${BIN} is missing: build it with 'node scripts/build.mjs'`);
  ensureTools();

  const log = (s: string) => console.error(s);
  log(`bench/commit: building the ${smoke ? 'smoke' : 'full'} corpus`);
  const corpus: Corpus = await buildCorpus(smoke ? SMOKE_PACKAGES : FULL_PACKAGES);
  const tree = corpus.dir;
  const { stats } = corpus;
  log(`bench/commit: tree ${tree}: ${(stats.bytes / 2 ** 20).toFixed(1)} MiB, ${stats.files} files, ${stats.symlinks} symlinks, ${stats.dirs} dirs (${corpus.packages.length} packages)`);

  const modes: Mode[] = isRoot ? ['archive', 'bare-user', 'bare'] : ['archive', 'bare-user'];
  if (!isRoot) log(`bench/commit: not root, so mode 'bare' is skipped (both tools need root to keep owners)`);

  const { work, cleanUp } = workDir('commit');
  const timeFile = join(work, 'time.out');
  const gitHead = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  let larchArgv: string[];
  let larchBuild: string;
  if (runtime === 'bun') {
    larchArgv = [join(work, 'larch')];
    copyFileSync(BIN, larchArgv[0]);
    larchBuild = `dist/larch built ${statSync(BIN).mtime.toISOString()}, git ${gitHead}`;
  } else {
    larchArgv = [process.execPath, NODE_ENTRY];
    larchBuild = `bin/larch.js on node ${process.version}, git ${gitHead}`;
  }
  const samples = new Map<string, { runs: Sample[]; repoMiB: number[]; larchStats?: Row['larchStats'] }>();
  const slot = (mode: Mode, step: Step, tool: Tool) => {
    const key = `${mode}/${step}/${tool}`;
    let s = samples.get(key);
    if (!s) samples.set(key, (s = { runs: [], repoMiB: [] }));
    return s;
  };

  let ostreeVersion = 'unknown';
  let larchVersion = 'unknown';
  try {
    warmPageCache(tree);
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of modes) {
        // Alternate which tool goes first, so neither always gets the cooler machine.
        const tools: Tool[] = rep % 2 === 0 ? ['larch', 'ostree'] : ['ostree', 'larch'];
        for (const tool of tools) {
          const repo = join(work, `${tool}-${mode}-${rep}`);
          if (tool === 'larch') run(larchArgv[0], [...larchArgv.slice(1), 'init', '--repo', repo, '--mode', mode]);
          else run('ostree', [`--repo=${repo}`, 'init', `--mode=${mode}`]);
          for (const step of ['first', 'second'] as const) {
            const argv =
              tool === 'larch'
                ? [...larchArgv, 'commit', '--repo', repo, '-b', 'bench', '--tree', tree, '--version', `bench.${step}`, '--json']
                : ['ostree', 'commit', `--repo=${repo}`, '-b', 'bench', `--tree=dir=${tree}`, '-s', `bench ${step}`];
            const sample = measure(argv, timeFile);
            const s = slot(mode, step, tool);
            s.runs.push({ seconds: sample.seconds, peakMiB: sample.peakMiB });
            s.repoMiB.push(duMiB(repo));
            if (tool === 'larch') {
              const j = JSON.parse(sample.stdout) as NonNullable<Row['larchStats']>;
              s.larchStats = { objects_written: j.objects_written, objects_reused: j.objects_reused, bytes_written: j.bytes_written };
            }
            log(`  rep ${rep + 1}/${reps} ${mode.padEnd(9)} ${step.padEnd(6)} ${tool.padEnd(6)} ${sample.seconds.toFixed(2)} s  ${sample.peakMiB.toFixed(1)} MiB`);
          }
          rmSync(repo, { recursive: true, force: true });
        }
      }
    }
    ostreeVersion = /Version: '([^']+)'/.exec(run('ostree', ['--version']))?.[1] ?? 'unknown';
    larchVersion = run(larchArgv[0], [...larchArgv.slice(1), '--version']).trim();
  } finally {
    cleanUp();
  }

  const rows: Row[] = [];
  for (const mode of modes) {
    for (const step of ['first', 'second'] as const) {
      const pair = (['larch', 'ostree'] as const).map((tool): Row => {
        const s = slot(mode, step, tool);
        return { mode, commit: step, tool, seconds: median(s.runs.map((r) => r.seconds)), peakMiB: median(s.runs.map((r) => r.peakMiB)), repoMiB: median(s.repoMiB), runs: s.runs, ...(s.larchStats ? { larchStats: s.larchStats } : {}) };
      });
      const [l, o] = pair;
      l.ratio = { seconds: l.seconds / o.seconds, peakMiB: l.peakMiB / o.peakMiB };
      rows.push(l, o);
    }
  }

  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) };

  // With --json the JSON goes to stdout and the table to stderr.
  const out = values.json ? log : (s: string) => console.log(s);
  const fmt = (n: number, d = 2) => n.toFixed(d);
  out(`\nlarch commit vs ostree commit, median of ${reps} run${reps > 1 ? 's' : ''}`);
  out(`larch: ${larchVersion} (${larchBuild}); ostree ${ostreeVersion}`);
  out(`tree: ${corpus.packages.length} Debian packages, ${fmt(stats.bytes / 2 ** 20, 1)} MiB, ${stats.files} files, ${stats.symlinks} symlinks, ${stats.dirs} dirs`);
  out(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM\n`);
  const header = ['mode', 'commit', 'tool', 'seconds', 'peak MiB', 'repo MiB', 'time larch/ostree', 'peak larch/ostree'];
  const body = rows.map((r) => [r.mode, r.commit, r.tool, fmt(r.seconds), fmt(r.peakMiB, 1), fmt(r.repoMiB, 1), r.ratio ? fmt(r.ratio.seconds) : '', r.ratio ? fmt(r.ratio.peakMiB) : '']);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  out(line(header));
  for (const b of body) out(line(b));
  const slower = rows.filter((r) => r.ratio && r.ratio.seconds > 1);
  out(slower.length === 0 ? '\nlarch is no slower than ostree in every case' : `\nlarch is slower than ostree in: ${slower.map((r) => `${r.mode}/${r.commit} (x${fmt(r.ratio!.seconds)})`).join(', ')}`);
  if (values.json) {
    const result = { benchmark: 'commit', smoke, reps, runtime, larchVersion, larchBuild, ostreeVersion, machine, tree: { packages: corpus.packages, ...stats }, rows };
    console.log(JSON.stringify(result, null, 2));
  }
}

await main().catch((err: unknown) => {
  console.error(`bench/commit: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

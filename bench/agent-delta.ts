/**
 * The agent's own update (issue 16, Build 5): what it costs to ship a new `larch` binary, the
 * Bun single-file executable a device runs from /usr/bin/larch, against shipping it whole.
 *
 *   node --import tsx bench/agent-delta.ts [--commits OLD..NEW] [--bun-version V] [--os-pair smoke|full|double]
 *                                          [--only code,bun,os] [--skip-bsdiff] [--json] [--larch PATH]
 *
 * Three pairs, every method on the same data, in one run:
 * - code: the same Bun (node_modules' @oven/bun-linux-x64) builds two adjacent commits that
 *   changed only src/ (default: a637f4d^..a637f4d, one line added to src/agent/remote-mqtt.ts),
 *   each from `git archive` of its commit into a temp dir, with scripts/build.mjs's flags.
 * - bun: the NEW commit of the code pair built by another Bun (default 1.4.4, fetched with
 *   `npm pack @oven/bun-linux-x64@V` into .cache/bench-bun/) against the same source built by
 *   node_modules' Bun: a runtime upgrade with no code change.
 * - os: bench/delta-corpus.ts's Debian pair (--os-pair, smoke by default) with the code pair's
 *   binaries at /usr/bin/larch (OLD in the old tree, NEW in the new), and the same pair without
 *   them: the growth of the OS delta is the agent's share.
 * On the code and bun pairs: larch's static delta (each binary committed as a tree holding
 * /usr/bin/larch), OSTree's, zstd --patch-from, xdelta3 and bsdiff on the binaries, and the NEW
 * binary whole (raw, xz -9, zstd -19). Methods, timing and peak memory as bench/delta.ts
 * (bench/delta-methods.ts); builds are setup, not timed in the tables.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, workDir } from './corpus.ts';
import { buildDeltaCorpus, describe, type CorpusKind } from './delta-corpus.ts';
import {
  BenchError, type Context, type Group, type Row, ensureTools, fail, fileBytes, fileRows, formatTable, larchRows, log, ostreeRows, problem, rowNotes, run, setRatios, toolVersions,
} from './delta-methods.ts';

const NAME = 'bench/agent-delta';
/** Two adjacent commits that changed only src/: one line added to src/agent/remote-mqtt.ts. */
const DEFAULT_COMMITS = 'a637f4d^..a637f4d';
/** The Bun the bun pair builds with besides node_modules' (1.4.5 when this was written). */
const DEFAULT_OTHER_BUN = '1.4.4';
/** The goal of issue 16: a code-only agent change costs under 1 MB of delta. */
const GOAL_BYTES = 1_000_000;
/** scripts/build.mjs's flags for linux-x64; checked against that file, so the two cannot drift apart. */
const BUILD_FLAGS = ['--compile', '--target=bun-linux-x64', '--compile-exec-argv=--smol', '--minify-syntax'];
const SECTIONS = ['code', 'bun', 'os'] as const;
type Section = (typeof SECTIONS)[number];
const FILE_GROUPS: readonly Group[] = ['zstd', 'xdelta3', 'bsdiff', 'xz', 'zstd-full'];

interface Build {
  /** What was built, for the report: commit and Bun version. */
  label: string;
  commit: string;
  bun: string;
  path: string;
  bytes: number;
  version: string;
}

function checkBuildFlags(): void {
  const script = readFileSync(join(ROOT, 'scripts', 'build.mjs'), 'utf8');
  for (const flag of BUILD_FLAGS.map((f) => f.replace('linux-x64', '${platform}'))) {
    if (!script.includes(`'${flag}'`) && !script.includes(`\`${flag}\``)) fail(`scripts/build.mjs no longer passes ${flag}: update BUILD_FLAGS in bench/agent-delta.ts to its flags`);
  }
}

/** The Bun of node_modules, or version V fetched once with `npm pack` into .cache/bench-bun/V/. */
function bunBinary(version: string | undefined): string {
  if (version === undefined) return join(ROOT, 'node_modules', '.bin', 'bun');
  const dir = join(ROOT, '.cache', 'bench-bun', version);
  const bun = join(dir, 'package', 'bin', 'bun');
  if (!existsSync(bun)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    log(`${NAME}: npm pack @oven/bun-linux-x64@${version}`);
    const tgz = run(['npm', 'pack', '--silent', `@oven/bun-linux-x64@${version}`, '--pack-destination', dir]).trim().split('\n').at(-1) ?? '';
    run(['tar', '-xzf', join(dir, tgz), '-C', dir]);
    rmSync(join(dir, tgz), { force: true });
    chmodSync(bun, 0o755);
  }
  return bun;
}

/** Builds the agent of `commit` with `bun` as scripts/build.mjs does, in a temp dir holding `git archive` of the commit. */
function buildAgent(work: string, commit: string, bun: string, out: string): Build {
  const sha = run(['git', '-C', ROOT, 'rev-parse', '--short', `${commit}^{commit}`]).trim();
  const bunVersion = run([bun, '--version']).trim();
  const src = join(work, `src-${sha}`);
  if (!existsSync(src)) {
    mkdirSync(src, { recursive: true });
    run(['sh', '-c', 'git -C "$1" archive "$2" src package.json tsconfig.json | tar -x -C "$3"', 'sh', ROOT, sha, src]);
    symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  }
  log(`${NAME}: building ${sha} with Bun ${bunVersion}`);
  run([bun, 'build', ...BUILD_FLAGS, 'src/cli/larch.ts', '--outfile', out], src);
  const version = run([out, '--version']).trim();
  if (!version.startsWith('larch ')) fail(`${out} --version printed '${version}', not 'larch V'`);
  return { label: `${sha} (Bun ${bunVersion})`, commit: sha, bun: bunVersion, path: out, bytes: fileBytes(out), version };
}

/** A tree holding only /usr/bin/larch. */
function agentTree(dir: string, binary: string): string {
  mkdirSync(join(dir, 'usr', 'bin'), { recursive: true });
  copyFileSync(binary, join(dir, 'usr', 'bin', 'larch'));
  chmodSync(join(dir, 'usr', 'bin', 'larch'), 0o755);
  return dir;
}

interface PairResult {
  pair: string;
  old: Build;
  new: Build;
  rows: Row[];
}

/** Every method on one pair of binaries. */
function binaryPair(work: string, larch: string | undefined, pair: string, a: Build, b: Build, skipBsdiff: boolean): PairResult {
  const dir = join(work, pair);
  mkdirSync(dir, { recursive: true });
  const ctx: Context = {
    name: `${NAME} ${pair}`,
    work: dir,
    timeFile: join(dir, 'time.out'),
    oldTree: agentTree(join(dir, 'old-tree'), a.path),
    newTree: agentTree(join(dir, 'new-tree'), b.path),
    oldFile: a.path,
    newFile: b.path,
  };
  const rows: Row[] = [
    { method: 'raw', command: 'the NEW binary as it is (no delta, no compression)', bytes: b.bytes },
    ...larchRows(ctx, larch, { scratch: false }),
    ...ostreeRows(ctx, { extra: false }),
    ...fileRows(ctx, (g) => FILE_GROUPS.includes(g), skipBsdiff),
  ];
  setRatios(rows);
  rmSync(ctx.oldTree, { recursive: true, force: true });
  rmSync(ctx.newTree, { recursive: true, force: true });
  return { pair, old: a, new: b, rows };
}

/** larch and OSTree on the Debian pair, without and with the agents at /usr/bin/larch. */
async function osPair(work: string, larch: string | undefined, kind: CorpusKind, a: Build, b: Build): Promise<{ corpus: string; without: Row[]; with: Row[]; description: string }> {
  const corpus = await buildDeltaCorpus(kind, log);
  const description = describe(corpus.manifest);
  log(description);
  const dir = join(work, 'os');
  mkdirSync(dir, { recursive: true });
  const base = { work: dir, timeFile: join(dir, 'time.out'), oldFile: a.path, newFile: b.path };
  const without: Context = { ...base, name: `${NAME} os`, oldTree: corpus.old, newTree: corpus.new };
  const rowsWithout = [...larchRows(without, larch, { scratch: false }), ...ostreeRows(without, { extra: false })];
  // Copies of the trees with the agents added; the cached pair stays as it is.
  const oldTree = join(dir, 'old-tree');
  const newTree = join(dir, 'new-tree');
  run(['cp', '-a', corpus.old, oldTree]);
  run(['cp', '-a', corpus.new, newTree]);
  agentTree(oldTree, a.path);
  agentTree(newTree, b.path);
  const withAgents: Context = { ...base, name: `${NAME} os+agent`, oldTree, newTree };
  const rowsWith = [...larchRows(withAgents, larch, { scratch: false }), ...ostreeRows(withAgents, { extra: false })];
  rmSync(oldTree, { recursive: true, force: true });
  rmSync(newTree, { recursive: true, force: true });
  setRatios(rowsWithout);
  setRatios(rowsWith);
  return { corpus: corpus.dir, without: rowsWithout, with: rowsWith, description };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      commits: { type: 'string', default: DEFAULT_COMMITS },
      'bun-version': { type: 'string', default: DEFAULT_OTHER_BUN },
      'os-pair': { type: 'string', default: 'smoke' },
      only: { type: 'string' },
      'skip-bsdiff': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      larch: { type: 'string', default: join(ROOT, 'dist', 'larch') },
    },
  });
  const [oldCommit, newCommit] = values.commits!.split('..');
  if (!oldCommit || !newCommit) fail(`--commits takes OLD..NEW (two commits of this repo), e.g. ${DEFAULT_COMMITS}; got '${values.commits}'`);
  const kind = values['os-pair'] as CorpusKind;
  if (!['smoke', 'full', 'double'].includes(kind)) fail(`--os-pair takes smoke, full or double; got '${kind}'`);
  const only = values.only?.split(',').map((s) => s.trim()) ?? [...SECTIONS];
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) fail(`--only takes a comma-separated list of ${SECTIONS.join(', ')}; got '${s}'`);
  const selected = (s: Section) => only.includes(s);
  ensureTools();
  checkBuildFlags();

  const { work, cleanUp } = workDir('agent');
  const skipBsdiff = values['skip-bsdiff'] ?? false;
  const pairs: PairResult[] = [];
  let os: Awaited<ReturnType<typeof osPair>> | undefined;
  let larch: string | undefined;
  let larchVersion = 'n/a';
  const larchSrc = resolve(values.larch!);
  const gitHead = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  try {
    if (existsSync(larchSrc)) {
      larch = join(work, 'larch');
      copyFileSync(larchSrc, larch);
      larchVersion = `${run([larch, '--version']).trim()} (${larchSrc}, git ${gitHead})`;
    }
    const builds = join(work, 'builds');
    mkdirSync(builds);
    const current = bunBinary(undefined);
    // OLD of the code pair is needed by the code and os pairs only; NEW by all three.
    const a1 = selected('code') || selected('os') ? buildAgent(work, oldCommit, current, join(builds, 'larch-old')) : undefined;
    const a2 = buildAgent(work, newCommit, current, join(builds, 'larch-new'));
    if (a1 && selected('code')) pairs.push(binaryPair(work, larch, 'code', a1, a2, skipBsdiff));
    if (selected('bun')) {
      const older = buildAgent(work, newCommit, bunBinary(values['bun-version']), join(builds, 'larch-other-bun'));
      if (older.bun === a2.bun) fail(`--bun-version ${values['bun-version']} is the Bun of node_modules: name another version`);
      pairs.push(binaryPair(work, larch, 'bun', older, a2, skipBsdiff));
    }
    if (a1 && selected('os')) os = await osPair(work, larch, kind, a1, a2);
  } finally {
    cleanUp();
  }

  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) };
  const tools = toolVersions();
  const out = values.json ? log : (s: string) => console.log(s);
  out(`\nthe agent's own update`);
  out(`larch: ${larchVersion}; ${Object.entries(tools).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM`);
  for (const p of pairs) {
    out(`\n${p.pair}: OLD ${p.old.label}, ${p.old.bytes} B -> NEW ${p.new.label}, ${p.new.bytes} B`);
    for (const l of formatTable(p.rows)) out(l);
    out('');
    for (const l of rowNotes(p.rows)) out(l);
  }
  if (os) {
    out(`\nos: the ${kind} Debian pair (${os.corpus}), with the code pair's binaries at /usr/bin/larch and without`);
    out(os.description);
    out('without agents:');
    for (const l of formatTable(os.without)) out(l);
    out('with agents (OLD tree + OLD binary -> NEW tree + NEW binary):');
    for (const l of formatTable(os.with)) out(l);
    for (const m of ['larch', 'ostree']) {
      const w = os.with.find((r) => r.method === m)?.bytes;
      const wo = os.without.find((r) => r.method === m)?.bytes;
      if (w !== undefined && wo !== undefined) out(`${m}: the agent's share of the OS delta: ${w - wo} B (${wo} -> ${w})`);
    }
  }
  const code = pairs.find((p) => p.pair === 'code')?.rows.find((r) => r.method === 'larch')?.bytes;
  if (code !== undefined) out(`\ngoal (issue 16): a code-only agent change under ${GOAL_BYTES} B of delta: larch ${code} B, ${code < GOAL_BYTES ? 'met' : `missed by ${code - GOAL_BYTES} B`}`);
  if (values.json) {
    console.log(JSON.stringify({ benchmark: 'agent-delta', larchVersion, tools, machine, goalBytes: GOAL_BYTES, pairs, os: os && { kind, ...os } }, null, 2));
  }
  const all = [...pairs.flatMap((p) => p.rows), ...(os ? [...os.without, ...os.with] : [])];
  const broken = all.filter((r) => problem(r) !== undefined);
  if (broken.length > 0) fail(`failed: ${broken.map((r) => `${r.method} (${problem(r)})`).join(', ')}`);
}

await main().catch((err: unknown) => {
  console.error(`${NAME}: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

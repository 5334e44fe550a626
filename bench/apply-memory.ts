/**
 * Peak memory and wall time of `larch delta apply` on a real OLD/NEW pair (Debian packages, see
 * delta-corpus.ts), for one or more larch binaries side by side: the before and after of a
 * change to the apply path, measured in the same run.
 *
 *   node --import tsx bench/apply-memory.ts [--pair corpus|server] [--double] [--runs N]
 *                                           [--env 'NAME=VALUE ...']... [--phases] [--json] [--keep DIR] BIN...
 *
 * BIN: paths to larch binaries (default: dist/larch), each copied into the work directory first,
 * so a rebuild during the run cannot mix two builds. A path given twice is measured twice (two
 * names, NAME and NAME#2): the spread between them is the noise floor.
 *
 * Setup, once: the pair (buildDeltaCorpus), an archive repo holding OLD (version 1) and NEW
 * (version 2), committed with owners 0:0 and timestamp 2026-01-01T00:00:00Z and signed, and the
 * default (`--format auto`) delta OLD -> NEW, signed, all made by the FIRST binary. With
 * --keep DIR the setup is kept in DIR and a later run with the same DIR reuses it (setup.json,
 * written last, marks a finished setup); without it, everything is removed at the end.
 *
 * Then --runs rounds (default 6); in each round every binary in the order given, interleaved
 * rather than one binary's runs in a row, because on this 2-core machine the run-to-run spread
 * (~10 MiB, ~1 s) is as large as the differences looked for, and drifts with whatever else the
 * machine does: interleaving spreads that drift over all binaries alike. Each apply goes into a
 * fresh bare-user repo holding only OLD (`larch init --mode bare-user`, `larch pull-local`, by
 * the same binary), after an untimed `sync`; `BIN delta apply --repo T --key K.pub d.bin` runs as
 * a child process while /proc/PID/status is read every 5 ms: the sample with the highest VmRSS
 * is kept, with its split into RssAnon (heap: what the allocator holds) and RssFile (pages of the
 * mapped binary and files), and its time. A spike shorter than 5 ms can fall between two
 * samples, so VmHWM (the kernel's own high-water mark of VmRSS, what `/usr/bin/time %M` reports)
 * from the last sample read is reported too (the kernel batches its RSS counters, so the two can
 * differ by a fraction of a MiB either way). After each apply `larch show` of NEW must succeed.
 *
 * Environment variables pass through to the applies (e.g. MIMALLOC_PURGE_DELAY=0; unset, the
 * binary sets 30 ms itself, src/cli/runtime-options.ts); the MIMALLOC_* and BUN_JSC_* ones that are set
 * are printed in the header. Each --env adds a variant: every binary is then measured once per
 * variant in each round, its apply run with those variables added (`BIN [NAME=VALUE ...]` in the
 * table; --env '' is the binary as it is), so settings of the runtime are compared as binaries
 * are. The table goes to stderr; --json prints the same figures as JSON on stdout.
 *
 * --phases: each apply also writes LARCH_MEMORY_LOG (src/_memory-log.ts: a line at each part,
 * each object over 1 MiB and each source view written to disk), and the samples are cut at those
 * points into stretches, each named by the point that starts it ("start" before the first). Per
 * binary, the PHASES_LISTED stretches with the highest peaks (mean and maximum over the runs), in
 * the order they run: whether one phase of the apply makes the peak, or several reach it together
 * (then lowering one moves nothing). --json adds every stretch of every run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ROOT, workDir } from './corpus.ts';
import { buildDeltaCorpus, corpusKindOf, type CorpusKind } from './delta-corpus.ts';
import { BenchError, TIMESTAMP, fail, fileBytes, log, measure, run } from './delta-methods.ts';

const NAME = 'bench/apply-memory';
const USAGE = "node --import tsx bench/apply-memory.ts [--pair corpus|server] [--double] [--runs N (default 6)] [--env 'NAME=VALUE ...']... [--phases] [--json] [--keep DIR] BIN...";
const SAMPLE_MS = 5;
/** --phases lists this many stretches: those with the highest mean peaks. */
const PHASES_LISTED = 6;
const SETUP_FILE = 'setup.json';
const MiB = (kib: number) => kib / 1024;

/** A finished setup, as written to setup.json (last, so that its presence means finished). */
interface Setup {
  kind: CorpusKind;
  /** The pair's directory name under .cache/delta-tree/ (kind and hash of the exact .debs). */
  corpus_key: string;
  old: string;
  new: string;
  archive: string;
  key: string;
  delta: string;
  delta_bytes: number;
  /** The binary that committed and generated, and its build time. */
  generated_by: string;
  created: string;
}

interface Run {
  wall_s: number;
  /** VmHWM of the last sample read (KiB -> MiB). */
  hwm_mib: number;
  /** The sample with the highest VmRSS: VmRSS, RssAnon, RssFile, and its time since the start. */
  peak_rss_mib: number;
  rss_anon_mib: number;
  rss_file_mib: number;
  peak_at_s: number;
  /** With --phases: the run cut at its LARCH_MEMORY_LOG points. */
  phases?: Phase[];
}

/** A stretch of an apply between two LARCH_MEMORY_LOG points, and its highest sample. */
interface Phase {
  at: string;
  start_s: number;
  end_s: number;
  /** null when no sample fell in the stretch (shorter than SAMPLE_MS). */
  peak_rss_mib: number | null;
  rss_anon_mib: number | null;
}

/** One /proc sample: its wall clock (Date.now()), VmRSS and RssAnon in KiB. */
type Sample = [time_ms: number, rss_kib: number, anon_kib: number];

interface Binary {
  name: string;
  source: string;
  /** The copy in the work directory, which is what runs. */
  path: string;
  build: string;
  version: string;
  /** Variables added to the environment of its applies (an --env variant). */
  env: Record<string, string>;
  runs: Run[];
}

/** /proc/PID/status fields in KiB, or undefined once the process is gone (or a zombie). */
function readStatus(pid: number): { VmRSS: number; RssAnon: number; RssFile: number; VmHWM: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const field = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const [VmRSS, RssAnon, RssFile, VmHWM] = ['VmRSS', 'RssAnon', 'RssFile', 'VmHWM'].map(field);
  if (VmRSS === undefined || RssAnon === undefined || RssFile === undefined || VmHWM === undefined) return undefined;
  return { VmRSS, RssAnon, RssFile, VmHWM };
}

/** Runs argv (stdout discarded), sampling /proc/PID/status every SAMPLE_MS until it exits; fails the run if it fails. */
async function sampled(argv: string[], env: Record<string, string>, memoryLog?: string): Promise<Run> {
  if (memoryLog !== undefined) rmSync(memoryLog, { force: true });
  const startMs = Date.now();
  const start = process.hrtime.bigint();
  const since = () => Number(process.hrtime.bigint() - start) / 1e9;
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env, ...(memoryLog === undefined ? {} : { LARCH_MEMORY_LOG: memoryLog }) } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  let exit: { code: number | null; signal: NodeJS.Signals | null; seconds: number } | undefined;
  let spawnError: Error | undefined;
  child.on('exit', (code, signal) => (exit ??= { code, signal, seconds: since() }));
  child.on('error', (err) => (spawnError = err));
  const closed = new Promise<void>((done) => child.on('close', () => done()));
  let best: { VmRSS: number; RssAnon: number; RssFile: number; at: number } | undefined;
  let hwm: number | undefined;
  const samples: Sample[] = [];
  while (exit === undefined && spawnError === undefined) {
    const s = child.pid === undefined ? undefined : readStatus(child.pid);
    if (s) {
      samples.push([Date.now(), s.VmRSS, s.RssAnon]);
      hwm = s.VmHWM;
      if (best === undefined || s.VmRSS > best.VmRSS) best = { ...s, at: since() };
    }
    await sleep(SAMPLE_MS);
  }
  if (spawnError) fail(`${argv.join(' ')} failed (${spawnError.message})`);
  await closed;
  if (exit!.code !== 0) fail(`${argv.join(' ')} failed (exit ${exit!.code ?? exit!.signal}):\n${stderr.trim()}`);
  if (best === undefined || hwm === undefined) fail(`${argv.join(' ')} exited before a single sample of /proc/${child.pid}/status`);
  const result: Run = { wall_s: exit!.seconds, hwm_mib: MiB(hwm), peak_rss_mib: MiB(best.VmRSS), rss_anon_mib: MiB(best.RssAnon), rss_file_mib: MiB(best.RssFile), peak_at_s: best.at };
  if (memoryLog !== undefined) result.phases = phasesOf(readPoints(memoryLog, argv), samples, startMs, startMs + exit!.seconds * 1000);
  return result;
}

/** The points of a LARCH_MEMORY_LOG file (src/_memory-log.ts): their names and wall clocks. */
function readPoints(file: string, argv: string[]): { at: string; time_ms: number }[] {
  if (!existsSync(file)) fail(`${argv.join(' ')} wrote no LARCH_MEMORY_LOG (${file}): is the binary older than src/_memory-log.ts?`);
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { at: string; time_ms: number });
}

/** Cuts the samples at the points: one stretch per point (and "start" before the first), with its highest sample. Pure. */
function phasesOf(points: { at: string; time_ms: number }[], samples: Sample[], startMs: number, endMs: number): Phase[] {
  const bounds = [{ at: 'start', time_ms: startMs }, ...points];
  return bounds.map((b, i) => {
    const end = i + 1 < bounds.length ? bounds[i + 1].time_ms : endMs;
    let top: Sample | undefined;
    for (const s of samples) if (s[0] >= b.time_ms && s[0] < end && (top === undefined || s[1] > top[1])) top = s;
    return {
      at: b.at,
      start_s: round((b.time_ms - startMs) / 1000, 3),
      end_s: round((end - startMs) / 1000, 3),
      peak_rss_mib: top === undefined ? null : round(MiB(top[1]), 2),
      rss_anon_mib: top === undefined ? null : round(MiB(top[2]), 2),
    };
  });
}

/** A stretch's name for the table: object ids cut to 12 hex digits. */
const shortName = (at: string) => at.replace(/\b([0-9a-f]{12})[0-9a-f]{52}\b/g, '$1');

/**
 * Per binary, the PHASES_LISTED stretches (matched by name across its runs, which apply the same
 * delta) with the highest mean peaks, in the order they run, with mean and max.
 */
function formatPhases(bins: Binary[]): string[] {
  const lines: string[] = [];
  for (const b of bins) {
    const byName = new Map<string, { first: number; peaks: number[]; anon: number[] }>();
    for (const r of b.runs) {
      for (const p of r.phases ?? []) {
        if (p.peak_rss_mib === null) continue;
        const e = byName.get(p.at) ?? { first: p.start_s, peaks: [], anon: [] };
        e.peaks.push(p.peak_rss_mib);
        e.anon.push(p.rss_anon_mib!);
        byName.set(p.at, e);
      }
    }
    const rows = [...byName].map(([at, e]) => ({ at, first: e.first, mean: mean(e.peaks), max: Math.max(...e.peaks), anon: mean(e.anon), n: e.peaks.length }));
    if (rows.length === 0) continue;
    lines.push(`${b.name}: the ${PHASES_LISTED} highest stretches (VmRSS peak MiB: mean over the runs that sampled them, max; RssAnon mean; start)`);
    for (const r of rows.sort((x, y) => y.mean - x.mean).slice(0, PHASES_LISTED).sort((x, y) => x.first - y.first)) {
      lines.push(`  ${r.mean.toFixed(1).padStart(6)}  ${r.max.toFixed(1).padStart(6)}  ${r.anon.toFixed(1).padStart(6)}  ${r.first.toFixed(2).padStart(6)} s  ${shortName(r.at)}${r.n < b.runs.length ? ` (sampled in ${r.n} of ${b.runs.length} runs)` : ''}`);
    }
  }
  return lines;
}

/** Runs a setup step under GNU time, logging its time and peak; fails the run when it fails. */
function timed(what: string, argv: string[], timeFile: string): string {
  log(`${NAME}: ${what}`);
  const m = measure(argv, timeFile);
  if (!m.ok) fail(`${argv.join(' ')} failed (${m.reason}):\n${m.stderr.trim()}`);
  log(`  ${m.seconds!.toFixed(2)} s, ${m.peakMiB!.toFixed(1)} MiB`);
  return m.stdout;
}

/** Builds the pair, commits OLD and NEW into an archive repo in `dir` and generates the delta. */
async function makeSetup(kind: CorpusKind, dir: string, larch: Binary): Promise<Setup> {
  log(`${NAME}: building the ${kind} pair`);
  const corpus = await buildDeltaCorpus(kind, log, {});
  const archive = join(dir, 'archive');
  const key = join(dir, 'k');
  const delta = join(dir, 'd.bin');
  for (const p of [archive, `${key}.key`, `${key}.pub`, delta, join(dir, SETUP_FILE)]) rmSync(p, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const timeFile = join(dir, 'time.out');
  run([larch.path, 'init', '--repo', archive, '--mode', 'archive']);
  run([larch.path, 'keygen', '--out', key]);
  const ids: string[] = [];
  for (const [tree, version] of [[corpus.old, '1'], [corpus.new, '2']] as const) {
    const argv = [larch.path, 'commit', '--repo', archive, '-b', 'os', '--tree', tree, '--version', version, '--owner', '0:0', '--timestamp', String(TIMESTAMP), '--sign-key', `${key}.key`, '--json'];
    const out = timed(`committing ${version === '1' ? 'OLD' : 'NEW'} (${larch.name})`, argv, timeFile);
    ids.push((JSON.parse(out) as { commit: string }).commit);
    log(`  ${ids.at(-1)}`);
  }
  const [oldId, newId] = ids;
  const out = timed(`generating the delta (${larch.name})`, [larch.path, 'delta', 'generate', '--repo', archive, '--from', oldId, '--to', newId, '--sign-key', `${key}.key`, '--out', delta], timeFile);
  if (out.trim()) log(`  ${out.trim()}`);
  rmSync(timeFile, { force: true });
  const setup: Setup = {
    kind,
    corpus_key: basename(corpus.dir),
    old: oldId,
    new: newId,
    archive,
    key,
    delta,
    delta_bytes: fileBytes(delta),
    generated_by: `${larch.source} (${larch.build})`,
    created: new Date().toISOString(),
  };
  const tmp = join(dir, `${SETUP_FILE}.tmp`);
  writeFileSync(tmp, JSON.stringify(setup, null, 2) + '\n');
  renameSync(tmp, join(dir, SETUP_FILE));
  return setup;
}

/** The finished setup in `dir`, if there is one; fails when it is of another pair or incomplete. */
function cachedSetup(kind: CorpusKind, dir: string): Setup | undefined {
  const file = join(dir, SETUP_FILE);
  if (!existsSync(file)) return undefined;
  const s = JSON.parse(readFileSync(file, 'utf8')) as Setup;
  if (s.kind !== kind) fail(`${dir} holds the setup of the ${s.kind} pair, not ${kind}: give another --keep DIR`);
  for (const p of [s.archive, `${s.key}.pub`, s.delta]) if (!existsSync(p)) fail(`${file} names ${p}, which is missing: remove ${dir} to set up again`);
  return s;
}

/** An --env value, 'NAME=VALUE NAME=VALUE': the variables one variant adds to the applies ('' adds none: the binary as it is). */
function parseVariant(spec: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const word of spec.split(/\s+/).filter((w) => w !== '')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(word);
    if (!m) fail(`--env takes 'NAME=VALUE ...'; got '${spec}'\nusage: ${USAGE}`);
    vars[m[1]] = m[2];
  }
  return vars;
}

const variantName = (name: string, vars: Record<string, string>) => (Object.keys(vars).length === 0 ? name : `${name} [${Object.entries(vars).map(([k, v]) => `${k}=${v}`).join(' ')}]`);

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const round = (x: number, d: number) => Number(x.toFixed(d));

/** One row per binary: each run's wall time and VmHWM, their means, and the split at the VmRSS peak. */
function formatTable(bins: Binary[]): string[] {
  const header = ['binary', 'runs', 'wall s (each)', 'mean', 'VmHWM MiB (each)', 'mean', 'max', 'VmRSS peak', 'RssAnon', 'RssFile', 'peak at'];
  const body = bins.map((b) => {
    const r = b.runs;
    return [
      b.name,
      String(r.length),
      r.map((x) => x.wall_s.toFixed(2)).join(' '),
      mean(r.map((x) => x.wall_s)).toFixed(2),
      r.map((x) => x.hwm_mib.toFixed(1)).join(' '),
      mean(r.map((x) => x.hwm_mib)).toFixed(1),
      Math.max(...r.map((x) => x.hwm_mib)).toFixed(1),
      mean(r.map((x) => x.peak_rss_mib)).toFixed(1),
      mean(r.map((x) => x.rss_anon_mib)).toFixed(1),
      mean(r.map((x) => x.rss_file_mib)).toFixed(1),
      mean(r.map((x) => x.peak_at_s / x.wall_s)).toFixed(2),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === 2 || i === 4 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [
    line(header),
    ...body.map(line),
    '(VmRSS peak, RssAnon, RssFile: means of the sample with the highest VmRSS, sampled every 5 ms; peak at: its time as a fraction of the run, mean)',
  ];
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      pair: { type: 'string', default: 'corpus' },
      double: { type: 'boolean', default: false },
      runs: { type: 'string', default: '6' },
      json: { type: 'boolean', default: false },
      keep: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      phases: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.error(`usage: ${USAGE}`);
    return;
  }
  const kind = corpusKindOf(values, fail);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) fail(`--runs takes a positive integer; got '${values.runs}'\nusage: ${USAGE}`);
  const sources = (positionals.length > 0 ? positionals : [join(ROOT, 'dist', 'larch')]).map((p) => resolve(p));
  for (const s of sources) if (!existsSync(s)) fail(`no larch binary at ${s}${s === join(ROOT, 'dist', 'larch') ? ' (build it with node scripts/build.mjs)' : ''}\nusage: ${USAGE}`);
  const env = Object.entries(process.env).filter(([k]) => /^(MIMALLOC_|BUN_JSC_)/.test(k)).sort(([a], [b]) => a.localeCompare(b));
  const variants = values.env.length > 0 ? values.env.map(parseVariant) : [{}];

  const { work, cleanUp } = workDir('apply-memory');
  const keep = values.keep === undefined ? undefined : resolve(values.keep);
  try {
    const seen = new Map<string, number>();
    const bins: Binary[] = sources.map((source, i) => {
      const base = basename(source);
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      const path = join(work, `${i}-${base}`);
      copyFileSync(source, path);
      const version = spawnSync(path, ['--version'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
      const name = n === 1 ? base : `${base}#${n}`;
      return variants.map((v) => ({ name: variantName(name, v), source, path, build: `built ${statSync(source).mtime.toISOString()}`, version, env: v, runs: [] }));
    }).flat();

    let setup = keep === undefined ? undefined : cachedSetup(kind, keep);
    if (setup) log(`${NAME}: reusing the setup in ${keep} (${setup.created}, generated by ${setup.generated_by})`);
    else setup = await makeSetup(kind, keep ?? join(work, 'setup'), bins[0]);

    const header = `${NAME}: ${kind} pair (${setup.corpus_key}), delta ${setup.delta_bytes} B; ${runs} round(s) of ${bins.map((b) => b.name).join(', ')}; env: ${env.length > 0 ? env.map(([k, v]) => `${k}=${v}`).join(' ') : 'no MIMALLOC_* or BUN_JSC_* set'}`;
    log(header);
    for (const b of bins) log(`  ${b.name}: ${b.source} (${b.build}; ${b.version})`);

    const T = join(work, 't-apply');
    for (let round = 1; round <= runs; round++) {
      for (const b of bins) {
        rmSync(T, { recursive: true, force: true });
        run([b.path, 'init', '--repo', T, '--mode', 'bare-user']);
        run([b.path, 'pull-local', '--repo', T, setup.archive, setup.old]);
        spawnSync('sync', { stdio: 'ignore' });
        const r = await sampled([b.path, 'delta', 'apply', '--repo', T, '--key', `${setup.key}.pub`, setup.delta], b.env, values.phases ? join(work, 'memory.log') : undefined);
        run([b.path, 'show', '--repo', T, setup.new]);
        rmSync(T, { recursive: true, force: true });
        b.runs.push(r);
        log(
          `${NAME}: round ${round}/${runs} ${b.name}: ${r.wall_s.toFixed(2)} s, VmHWM ${r.hwm_mib.toFixed(1)} MiB; ` +
            `VmRSS peak ${r.peak_rss_mib.toFixed(1)} MiB (RssAnon ${r.rss_anon_mib.toFixed(1)}, RssFile ${r.rss_file_mib.toFixed(1)}) at ${r.peak_at_s.toFixed(2)} s`,
        );
      }
    }

    const machine = `${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB RAM`;
    log('');
    log(header);
    log(`machine: ${machine}; delta ${setup.delta}${keep ? '' : ' (removed)'}`);
    for (const b of bins) log(`  ${b.name}: ${b.source} (${b.build}; ${b.version})`);
    log('');
    for (const l of formatTable(bins)) log(l);
    if (values.phases) {
      log('');
      for (const l of formatPhases(bins)) log(l);
    }

    if (values.json) {
      const result = {
        benchmark: 'apply-memory',
        pair: kind,
        corpus_key: setup.corpus_key,
        delta_bytes: setup.delta_bytes,
        old: setup.old,
        new: setup.new,
        env: Object.fromEntries(env),
        machine,
        sample_ms: SAMPLE_MS,
        binaries: bins.map((b) => ({
          name: b.name,
          source: b.source,
          build: b.build,
          version: b.version,
          env: b.env,
          runs: b.runs.map((r) => ({
            wall_s: round(r.wall_s, 3),
            hwm_mib: round(r.hwm_mib, 2),
            peak_rss_mib: round(r.peak_rss_mib, 2),
            rss_anon_mib: round(r.rss_anon_mib, 2),
            rss_file_mib: round(r.rss_file_mib, 2),
            peak_at_s: round(r.peak_at_s, 3),
            ...(r.phases === undefined ? {} : { phases: r.phases }),
          })),
          mean_wall_s: round(mean(b.runs.map((r) => r.wall_s)), 3),
          mean_hwm_mib: round(mean(b.runs.map((r) => r.hwm_mib)), 2),
          max_hwm_mib: round(Math.max(...b.runs.map((r) => r.hwm_mib)), 2),
          mean_peak_rss_mib: round(mean(b.runs.map((r) => r.peak_rss_mib)), 2),
          mean_rss_anon_mib: round(mean(b.runs.map((r) => r.rss_anon_mib)), 2),
          mean_rss_file_mib: round(mean(b.runs.map((r) => r.rss_file_mib)), 2),
          mean_peak_at_fraction: round(mean(b.runs.map((r) => r.peak_at_s / r.wall_s)), 3),
        })),
      };
      console.log(JSON.stringify(result, null, 2));
    }
  } finally {
    cleanUp();
  }
}

await main().catch((err: unknown) => {
  console.error(`${NAME}: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

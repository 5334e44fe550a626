/**
 * Static deltas on a real OS update (Debian packages, see delta-corpus.ts): larch against
 * OSTree's static deltas and the usual binary-delta tools, on the same OLD/NEW pair in one run.
 * For each method: delta bytes (and the ratio to OSTree's delta), generation and apply wall time,
 * and peak RSS of each.
 *
 *   node --import tsx bench/delta.ts [--smoke | --double] [--skip-bsdiff] [--only larch,ostree,...]
 *                                    [--json] [--larch PATH]
 *
 * Methods:
 * - larch: `larch delta generate --from OLD --to NEW` out of an archive repo holding both
 *   commits; applied with `larch delta apply` to a bare-user repo holding only OLD. Also from
 *   scratch (no --from), applied to an empty repo. A larch command that fails (e.g. one that does
 *   not exist yet) makes its row "n/a (reason)" and the run goes on.
 * - ostree: `ostree static-delta generate --inline --min-fallback-size=0 --filename=F`, a
 *   single file; applied with `static-delta apply-offline` to a bare-user repo holding only OLD.
 *   Also `--empty` (from scratch), and the default delta (parts as separate files, large files
 *   as fallback objects that a client pulls; bytes only).
 * - zstd --patch-from, xdelta3 and bsdiff on tars of the two trees (sorted, owners 0:0,
 *   mtimes 0), and the full NEW tar under xz -9, for scale. Their output is compared with
 *   new.tar (cmp); larch and ostree results are checked with their fsck.
 *
 * Both repos get the same commits: owners 0:0, timestamp 2026-01-01T00:00:00Z. Every timed
 * command runs under GNU time (`/usr/bin/time -f '%e %M'`): wall time measured here, peak RSS
 * from %M (the command and the children it waited for); `sync` runs (untimed) before each one.
 * dist/larch is copied into the work directory first, so a rebuild during the run cannot mix
 * two builds. --json prints the results as JSON on stdout (the table goes to stderr).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, workDir } from './corpus.ts';
import { buildDeltaCorpus, describe, type CorpusKind } from './delta-corpus.ts';
import {
  BenchError, type Context, type Group, type Row, ensureTools, fail, fileBytes, fileRows, formatTable, larchRows, log, makeTar, ostreeRows, problem, rowNotes, run, setRatios, toolVersions,
} from './delta-methods.ts';

/** Methods that --only can pick, by the tool behind them. */
const GROUPS: readonly Group[] = ['larch', 'ostree', 'zstd', 'xdelta3', 'bsdiff', 'xz'];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      double: { type: 'boolean', default: false },
      'skip-bsdiff': { type: 'boolean', default: false },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
      larch: { type: 'string', default: join(ROOT, 'dist', 'larch') },
    },
  });
  if (values.smoke && values.double) fail('--smoke and --double exclude each other');
  const kind: CorpusKind = values.smoke ? 'smoke' : values.double ? 'double' : 'full';
  const only = values.only?.split(',').map((g) => g.trim()) ?? [...GROUPS];
  for (const g of only) if (!(GROUPS as readonly string[]).includes(g)) fail(`--only takes a comma-separated list of ${GROUPS.join(', ')}; got '${g}'`);
  const selected = (g: Group) => only.includes(g);
  const tarGroups = GROUPS.filter((g) => g !== 'larch' && g !== 'ostree' && selected(g));
  ensureTools();

  log(`bench/delta: building the ${kind} corpus`);
  const corpus = await buildDeltaCorpus(kind, log);
  log(describe(corpus.manifest));

  const { work, cleanUp } = workDir('delta');
  const gitHead = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  const larchSrc = resolve(values.larch ?? '');
  let larch: string | undefined;
  let larchBuild = 'missing';
  let larchVersion = 'n/a';
  const rows: Row[] = [];
  const tarBytes = { old: 0, new: 0 };
  const ctx: Context = { name: 'bench/delta', work, timeFile: join(work, 'time.out'), oldTree: corpus.old, newTree: corpus.new, oldFile: join(work, 'old.tar'), newFile: join(work, 'new.tar') };
  try {
    if (existsSync(larchSrc)) {
      larch = join(work, 'larch');
      copyFileSync(larchSrc, larch);
      larchBuild = `${larchSrc} built ${statSync(larchSrc).mtime.toISOString()}, git ${gitHead}`;
      larchVersion = run([larch, '--version']).trim();
    }
    if (selected('larch')) rows.push(...larchRows(ctx, larch, { scratch: true }));
    if (selected('ostree')) rows.push(...ostreeRows(ctx, { extra: true }));
    if (tarGroups.length > 0) {
      log('bench/delta: making old.tar and new.tar');
      makeTar(corpus.old, ctx.oldFile);
      makeTar(corpus.new, ctx.newFile);
      tarBytes.old = fileBytes(ctx.oldFile);
      tarBytes.new = fileBytes(ctx.newFile);
      rows.push(...fileRows(ctx, selected, values['skip-bsdiff'] ?? false));
    }
  } finally {
    cleanUp();
  }
  setRatios(rows);

  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) };
  const tools = toolVersions();
  const out = values.json ? log : (s: string) => console.log(s);
  out(`\nstatic deltas on the ${kind} pair (${corpus.dir})`);
  out(describe(corpus.manifest));
  if (tarBytes.old > 0) out(`tars: old ${tarBytes.old} B, new ${tarBytes.new} B`);
  out(`larch: ${larchVersion} (${larchBuild}); ${Object.entries(tools).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM\n`);
  for (const l of formatTable(rows)) out(l);
  out('');
  for (const l of rowNotes(rows)) out(l);
  if (values.json) {
    const result = { benchmark: 'delta', kind, larchVersion, larchBuild, tools, machine, corpus: { dir: corpus.dir, ...corpus.manifest }, tarBytes, rows };
    console.log(JSON.stringify(result, null, 2));
  }
  // Only larch may be missing (its delta commands are younger than this benchmark).
  const broken = rows.filter((r) => !r.method.startsWith('larch') && problem(r) !== undefined);
  if (broken.length > 0) fail(`failed: ${broken.map((r) => `${r.method} (${problem(r)})`).join(', ')}`);
}

await main().catch((err: unknown) => {
  console.error(`bench/delta: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

/**
 * Static deltas on a real OS update (Debian packages, see delta-corpus.ts): larch against
 * OSTree's static deltas and the usual binary-delta tools, on the same OLD/NEW pair in one run.
 * For each method: delta bytes (and the ratio to OSTree's delta), generation and apply wall time,
 * and peak RSS of each; then what larch's delta is made of, by kind of content.
 *
 *   node --import tsx bench/delta.ts [--smoke | --double | --pair corpus|server] [--no-initramfs]
 *                                    [--skip-bsdiff] [--only larch-plain,larch,ostree,...]
 *                                    [--json] [--larch PATH]
 *
 * Methods (--only picks some, by these names):
 * - larch-plain: `larch delta generate --from OLD --to NEW --format 1` out of an archive repo
 *   holding both commits: no views, the algorithm before issue 18 (the "before"); applied with
 *   `larch delta apply` (the Bun binary) to a bare-user repo holding only OLD.
 * - larch: the same with the default `--format auto` (format 3: compressed streams diffed
 *   through their views, the diff bytes zero-run coded); applied by the Bun binary, and again by
 *   larch on Node (`node bin/larch.js delta apply`, row larch-node) into a second fresh repo, and
 *   by the Bun binary with `--threads 2` (row larch-threads-2: the part with the largest source
 *   view applied on a second thread) into a third.
 * - larch-scratch: the delta from nothing (no --from), applied to an empty repo.
 *   Every larch result is checked: `larch show` NEW, `larch fsck`, and `larch checkout` of NEW
 *   from the applied repo equal to the checkout from the vendor repo (`diff -r
 *   --no-dereference`, owners and modes). A larch generate that fails (e.g. a command this
 *   binary does not have) makes its row "n/a (reason)" and the run goes on; a failed apply or
 *   check fails the run.
 * - ostree: `ostree static-delta generate --inline --min-fallback-size=0 --filename=F`, a
 *   single file (the denominator of "x ostree"); applied with `static-delta apply-offline` to a
 *   bare-user repo holding only OLD. ostree-scratch: `--empty`; ostree-default: the default
 *   delta (parts as separate files, large files as fallback objects that a client pulls; bytes only).
 * - zstd (--patch-from), xdelta3 and bsdiff on tars of the two trees (sorted, owners 0:0,
 *   mtimes 0), and xz: the full NEW tar under xz -9, for scale. Their output is compared with
 *   new.tar (cmp); larch and ostree results are checked with their fsck.
 *
 * The breakdown (larch rows): per kind of content (kernel, initramfs, gzip, elf, other) the
 * objects, new bytes, and the per-object estimates (brotli q5 of the chosen candidate, the
 * generator's `by_kind.*.estimate_after`) of larch-plain and larch, their ratio and each kind's
 * share of larch's delta (estimates scaled to the delta's real bytes); and what became of the
 * compressed streams found (`streams`: used, or why not).
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
import { breakdown, formatBreakdown } from './delta-breakdown.ts';
import { buildDeltaCorpus, corpusKindOf, describe } from './delta-corpus.ts';
import {
  BenchError, type Context, type Group, type LarchRowName, type Row, ensureTools, fail, fileBytes, fileRows, formatTable, larchRows, log, makeTar, ostreeRows, problem, rowNotes, run, setRatios, toolVersions,
} from './delta-methods.ts';

/** Methods that --only can pick. */
const METHODS = ['larch-plain', 'larch', 'larch-scratch', 'ostree', 'ostree-default', 'ostree-scratch', 'zstd', 'xdelta3', 'bsdiff', 'xz'] as const;
type MethodName = (typeof METHODS)[number];
const LARCH_ROWS: readonly LarchRowName[] = ['larch-plain', 'larch', 'larch-scratch'];
const FILE_GROUPS: readonly Group[] = ['zstd', 'xdelta3', 'bsdiff', 'xz'];
/** The rows in the table, whatever order they ran in. */
const TABLE_ORDER = ['larch-plain', 'larch', 'larch-node', 'larch-threads-2', 'larch-scratch', 'ostree', 'ostree-default', 'ostree-scratch', 'zstd-patch', 'xdelta3', 'bsdiff', 'full-xz'];

/** Issue 18's goals (must-show 1-3) from the rows of one run, where the rows are there. */
function goals(rows: Row[]): string[] {
  const get = (m: string) => rows.find((r) => r.method === m && r.na === undefined);
  const [l, o, n, t2] = [get('larch'), get('ostree'), get('larch-node'), get('larch-threads-2')];
  if (!l || !o || l.bytes === undefined || !o.bytes) return [];
  const x = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? `${(a / b).toFixed(3)}x` : 'n/a');
  const met = (ok: boolean) => (ok ? 'met' : 'NOT met');
  const out = ['issue 18 goals (larch row against ostree, this run):'];
  out.push(`  bytes: ${x(l.bytes, o.bytes)} OSTree's (goal <= 0.60x: ${met(l.bytes / o.bytes <= 0.6)})`);
  if (l.generate && o.generate) out.push(`  generate: ${x(l.generate.seconds, o.generate.seconds)} OSTree's time (goal <= 1.0x: ${met(l.generate.seconds <= o.generate.seconds)})`);
  if (l.apply && o.apply) out.push(`  apply (Bun): ${x(l.apply.seconds, o.apply.seconds)} OSTree's apply-offline (goal <= 1.0x: ${met(l.apply.seconds <= o.apply.seconds)}); peak ${l.apply.peakMiB.toFixed(1)} MiB (goal <= 96 MiB: ${met(l.apply.peakMiB <= 96)})`);
  if (t2?.apply && o.apply) out.push(`  apply (Bun, --threads 2): ${x(t2.apply.seconds, o.apply.seconds)} OSTree's apply-offline (goal <= 1.0x: ${met(t2.apply.seconds <= o.apply.seconds)}); peak ${t2.apply.peakMiB.toFixed(1)} MiB (goal <= 96 MiB: ${met(t2.apply.peakMiB <= 96)}), check ${t2.check}`);
  if (n?.apply) out.push(`  apply (Node): ${n.apply.seconds.toFixed(2)} s, ${n.apply.peakMiB.toFixed(1)} MiB, check ${n.check}`);
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      smoke: { type: 'boolean', default: false },
      double: { type: 'boolean', default: false },
      pair: { type: 'string', default: 'corpus' },
      'no-initramfs': { type: 'boolean', default: false },
      'skip-bsdiff': { type: 'boolean', default: false },
      only: { type: 'string' },
      json: { type: 'boolean', default: false },
      larch: { type: 'string', default: join(ROOT, 'dist', 'larch') },
    },
  });
  const kind = corpusKindOf(values, fail);
  const only = values.only?.split(',').map((g) => g.trim()) ?? [...METHODS];
  for (const g of only) if (!(METHODS as readonly string[]).includes(g)) fail(`--only takes a comma-separated list of ${METHODS.join(', ')}; got '${g}'`);
  const selected = (g: MethodName) => only.includes(g);
  const larchSelected = LARCH_ROWS.filter((r) => selected(r));
  const tarGroups = FILE_GROUPS.filter((g) => selected(g as MethodName));
  ensureTools();

  log(`bench/delta: building the ${kind} pair${values['no-initramfs'] ? ' (no initramfs)' : ''}`);
  const corpus = await buildDeltaCorpus(kind, log, { initramfs: !values['no-initramfs'] });
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
    // OSTree first, then larch's rows with the compression-aware one first: on a long run cut
    // short, the denominator and the "after" are there (the table keeps its own order).
    if (selected('ostree') || selected('ostree-default') || selected('ostree-scratch')) {
      rows.push(...ostreeRows(ctx, { inline: selected('ostree'), defaultDelta: selected('ostree-default'), scratch: selected('ostree-scratch') }));
    }
    const larchOrder = (['larch', 'larch-plain', 'larch-scratch'] as const).filter((r) => larchSelected.includes(r));
    if (larchOrder.length > 0) rows.push(...larchRows(ctx, larch, { rows: larchOrder, node: join(ROOT, 'bin', 'larch.js'), threads2: true, sameCheckout: true }));
    if (tarGroups.length > 0) {
      log('bench/delta: making old.tar and new.tar');
      makeTar(corpus.old, ctx.oldFile);
      makeTar(corpus.new, ctx.newFile);
      tarBytes.old = fileBytes(ctx.oldFile);
      tarBytes.new = fileBytes(ctx.newFile);
      rows.push(...fileRows(ctx, (g) => tarGroups.includes(g), values['skip-bsdiff'] ?? false));
    }
  } finally {
    cleanUp();
  }
  rows.sort((a, b) => TABLE_ORDER.indexOf(a.method) - TABLE_ORDER.indexOf(b.method));
  setRatios(rows);
  const parts = breakdown(rows);

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
  if (parts) {
    for (const l of formatBreakdown(parts, rows.find((r) => r.method === 'larch')?.bytes)) out(l);
    out('');
  }
  const g = goals(rows);
  if (g.length > 0) {
    for (const l of g) out(l);
    out('');
  }
  for (const l of rowNotes(rows)) out(l);
  if (values.json) {
    const result = { benchmark: 'delta', kind, initramfs: corpus.manifest.initramfs ?? null, larchVersion, larchBuild, tools, machine, corpus: { dir: corpus.dir, ...corpus.manifest }, tarBytes, rows, breakdown: parts ?? null };
    console.log(JSON.stringify(result, null, 2));
  }
  // A larch row may lack figures when its generate fails (a binary older than a flag this
  // benchmark passes); a larch delta that does not apply, or applies to anything but NEW, is a failure.
  const broken = rows.filter((r) => problem(r) !== undefined && !(r.method.startsWith('larch') && r.na !== undefined)).map((r) => `${r.method} (${problem(r)})`);
  // A stream whose reconstruction differed from the original at generation is a bug in the
  // device's code, caught before it shipped (docs/design/issue-18-compression-aware-deltas.md §3.8).
  const verify = parts?.streams?.paths.verify;
  if (verify) broken.push(`larch: ${verify.length} stream(s) failed the reconstruction check at generation (reason 'verify'): ${verify.slice(0, 3).join(', ')}`);
  // The smoke pair's updates change gzip -9n changelogs: CI's run must send some through their views.
  const larchRow = rows.find((r) => r.method === 'larch' && r.na === undefined);
  if (kind === 'smoke' && larchRow && larchRow.larchStats?.view_patched === 0) broken.push('larch: no file of the smoke pair went through its view (view_patched 0, format 1)');
  if (broken.length > 0) fail(`failed: ${broken.join(', ')}`);
}

await main().catch((err: unknown) => {
  console.error(`bench/delta: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

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
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT } from './corpus.ts';
import { buildDeltaCorpus, describe, type CorpusKind, type DeltaCorpus } from './delta-corpus.ts';

const TIME = '/usr/bin/time';
const TIMESTAMP = 1767225600; // 2026-01-01T00:00:00Z
const isRoot = process.getuid?.() === 0;

/** Debian packages this benchmark runs, by the command that must exist. */
const TOOLS: readonly [command: string, pkg: string][] = [
  [TIME, 'time'],
  ['ostree', 'ostree'],
  ['zstd', 'zstd'],
  ['xdelta3', 'xdelta3'],
  ['bsdiff', 'bsdiff'],
  ['xz', 'xz-utils'],
  ['tar', 'tar'],
  ['cmp', 'diffutils'],
];

/** Methods that --only can pick, by the tool behind them. */
const GROUPS = ['larch', 'ostree', 'zstd', 'xdelta3', 'bsdiff', 'xz'] as const;
type Group = (typeof GROUPS)[number];

interface Measured {
  seconds: number;
  peakMiB: number;
}
interface Row {
  method: string;
  /** What was run, briefly. */
  command: string;
  bytes?: number;
  /** bytes / the bytes of OSTree's (inline) delta. */
  ratio?: number;
  generate?: Measured;
  apply?: Measured;
  /** Result of checking the applied output: 'ok', or what was wrong. */
  check?: string;
  /** Why the method (or its apply step) produced no figure. */
  na?: string;
  applyNa?: string;
  /** What `larch delta generate --json` printed, on larch's rows. */
  larchStats?: Record<string, unknown>;
}

/** Thrown for anything that stops the run; main() prints it (after the work dir is removed). */
class BenchError extends Error {}

function fail(message: string): never {
  throw new BenchError(message);
}

const log = (s: string) => console.error(s);

interface Result {
  ok: boolean;
  stdout: string;
  stderr: string;
  /** One line saying why it failed, for a table cell. */
  reason: string;
}

function exec(argv: string[]): Result {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 256 << 20 });
  const stderr = r.stderr ?? '';
  const ok = !r.error && r.status === 0;
  const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
  const first = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Command exited with')).at(0) ?? '';
  return { ok, stdout: r.stdout ?? '', stderr, reason: ok ? '' : `${why}${first ? `: ${first.slice(0, 100)}` : ''}` };
}

/** Runs an untimed setup step; fails the whole run when it fails. */
function run(argv: string[]): string {
  const r = exec(argv);
  if (!r.ok) fail(`${argv.join(' ')} failed (${r.reason}):\n${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs argv under GNU time after a sync: wall time measured here, peak RSS from %M (KiB). */
function measure(argv: string[], timeFile: string): Result & Partial<Measured> {
  spawnSync('sync', { stdio: 'ignore' });
  const start = process.hrtime.bigint();
  const r = exec([TIME, '-f', '%e %M', '-o', timeFile, ...argv]);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (!r.ok) return r;
  const last = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1) ?? '';
  const m = /^([\d.]+) (\d+)$/.exec(last);
  if (!m) fail(`cannot parse ${TIME} output '${last}'`);
  return { ...r, seconds, peakMiB: Number(m[2]) / 1024 };
}

const sh = (script: string, ...args: string[]) => ['sh', '-c', script, 'sh', ...args];
const fileBytes = (path: string) => statSync(path).size;

/** Bytes of a file, or of the regular files below a directory (not the directories themselves). */
function sizeBytes(path: string): number {
  const st = lstatSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, name) => sum + sizeBytes(join(path, name)), 0);
}

function ensureTools(): void {
  const has = (cmd: string) => (cmd.startsWith('/') ? existsSync(cmd) : spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0);
  const missing = TOOLS.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (!isRoot) fail(`missing tools: install the Debian packages ${missing.join(' ')} (apt-get install ${missing.join(' ')})`);
  log(`bench/delta: installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (!install()) fail(`apt-get install ${missing.join(' ')} failed`);
  }
}

function makeTar(dir: string, out: string): void {
  run(['tar', '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', dir, '-cf', out, '.']);
}

interface Context {
  work: string;
  timeFile: string;
  corpus: DeltaCorpus;
  oldTar: string;
  newTar: string;
}

/** cmp against new.tar, then removes the output (it is as large as the tree). */
function checkSame(ctx: Context, out: string): string {
  const r = exec(['cmp', '-s', ctx.newTar, out]);
  rmSync(out, { force: true });
  return r.ok ? 'ok' : 'DIFFERS from new.tar';
}

/** A generate step and an apply step of one method, each timed; the row says n/a where one fails. */
function method(
  ctx: Context,
  row: Row,
  generate: { argv: string[]; bytes: (stdout: string) => number },
  apply?: { before?: () => void; argv: string[]; check: () => string },
): Row {
  log(`bench/delta: ${row.method}: generating`);
  const g = measure(generate.argv, ctx.timeFile);
  if (!g.ok) {
    log(`  failed: ${g.reason}`);
    return { ...row, na: g.reason };
  }
  row.generate = { seconds: g.seconds!, peakMiB: g.peakMiB! };
  row.bytes = generate.bytes(g.stdout);
  log(`  ${row.bytes} bytes, ${g.seconds!.toFixed(2)} s, ${g.peakMiB!.toFixed(1)} MiB`);
  if (!apply) return row;
  apply.before?.();
  log(`bench/delta: ${row.method}: applying`);
  const a = measure(apply.argv, ctx.timeFile);
  if (!a.ok) {
    log(`  failed: ${a.reason}`);
    return { ...row, applyNa: a.reason };
  }
  row.apply = { seconds: a.seconds!, peakMiB: a.peakMiB! };
  row.check = apply.check();
  log(`  ${a.seconds!.toFixed(2)} s, ${a.peakMiB!.toFixed(1)} MiB, check: ${row.check}`);
  return row;
}

function larchRows(ctx: Context, larch: string | undefined): Row[] {
  const rows: Row[] = [
    { method: 'larch', command: 'larch delta generate --from OLD --to NEW --sign-key K --out F; larch delta apply --key K.pub F' },
    { method: 'larch-scratch', command: 'larch delta generate --to NEW (no --from) --sign-key K --out F; apply to an empty repo' },
  ];
  if (larch === undefined) return rows.map((r) => ({ ...r, na: 'no larch binary: build dist/larch with node scripts/build.mjs' }));
  const { work } = ctx;
  const R = join(work, 'larch-archive');
  const commitIds: string[] = [];
  // Signed as a vendor would sign it; the device side checks it with the public key.
  const key = join(work, 'bench');
  const setup = [['init', '--repo', R, '--mode', 'archive'], ['keygen', '--out', key]];
  let failed = '';
  for (const argv of setup) {
    const r = exec([larch, ...argv]);
    if (!r.ok) failed = `larch ${argv[0]}: ${r.reason}`;
  }
  for (const [tree, version] of [[ctx.corpus.old, '1'], [ctx.corpus.new, '2']] as const) {
    if (failed) break;
    log(`bench/delta: larch: committing ${version === '1' ? 'OLD' : 'NEW'}`);
    const argv = [larch, 'commit', '--repo', R, '-b', 'os', '--tree', tree, '--version', version, '--owner', '0:0', '--timestamp', String(TIMESTAMP), '--json'];
    const m = measure(argv, ctx.timeFile);
    if (!m.ok) failed = `larch commit: ${m.reason}`;
    else {
      commitIds.push((JSON.parse(m.stdout) as { commit: string }).commit);
      log(`  ${commitIds.at(-1)} in ${m.seconds!.toFixed(2)} s, ${m.peakMiB!.toFixed(1)} MiB`);
    }
  }
  if (failed) return rows.map((r) => ({ ...r, na: failed }));
  const [oldId, newId] = commitIds;
  // The single --out file is what a device downloads (as OSTree's --inline file); the
  // `--json` figures ({"bytes", "parts", "patched", "literal", ...}) go into the row as they are.
  const bytesOf = (row: Row, file: string) => (stdout: string) => {
    let reported: number | undefined;
    try {
      row.larchStats = JSON.parse(stdout) as Record<string, unknown>;
      if (typeof row.larchStats.bytes === 'number') reported = row.larchStats.bytes;
    } catch {
      // not JSON: the file says it all
    }
    return existsSync(file) ? sizeBytes(file) : (reported ?? NaN);
  };
  const check = (repo: string) => () => {
    const show = exec([larch, 'show', '--repo', repo, newId]);
    if (!show.ok) return `NEW commit missing: ${show.reason}`;
    const fsck = exec([larch, 'fsck', '--repo', repo]);
    return fsck.ok ? 'ok' : `fsck: ${fsck.reason}`;
  };
  const target = (name: string, withOld: boolean) => () => {
    const D = join(work, name);
    rmSync(D, { recursive: true, force: true });
    run([larch, 'init', '--repo', D, '--mode', 'bare-user']);
    if (withOld) run([larch, 'pull-local', '--repo', D, R, oldId]);
  };
  const out: Row[] = [];
  const delta = join(work, 'larch-delta.bin');
  out.push(
    method(
      ctx,
      rows[0],
      { argv: [larch, 'delta', 'generate', '--repo', R, '--from', oldId, '--to', newId, '--sign-key', `${key}.key`, '--out', delta, '--json'], bytes: bytesOf(rows[0], delta) },
      { before: target('larch-d', true), argv: [larch, 'delta', 'apply', '--repo', join(work, 'larch-d'), '--key', `${key}.pub`, delta], check: check(join(work, 'larch-d')) },
    ),
  );
  rmSync(join(work, 'larch-d'), { recursive: true, force: true });
  const scratch = join(work, 'larch-scratch.bin');
  out.push(
    method(
      ctx,
      rows[1],
      { argv: [larch, 'delta', 'generate', '--repo', R, '--to', newId, '--sign-key', `${key}.key`, '--out', scratch, '--json'], bytes: bytesOf(rows[1], scratch) },
      { before: target('larch-s', false), argv: [larch, 'delta', 'apply', '--repo', join(work, 'larch-s'), '--key', `${key}.pub`, scratch], check: check(join(work, 'larch-s')) },
    ),
  );
  rmSync(join(work, 'larch-s'), { recursive: true, force: true });
  return out;
}

function ostreeRows(ctx: Context): Row[] {
  const { work } = ctx;
  const R = join(work, 'ostree-archive');
  run(['ostree', `--repo=${R}`, 'init', '--mode=archive']);
  const ids: string[] = [];
  for (const [tree, version] of [[ctx.corpus.old, '1'], [ctx.corpus.new, '2']] as const) {
    log(`bench/delta: ostree: committing ${version === '1' ? 'OLD' : 'NEW'}`);
    const argv = ['ostree', 'commit', `--repo=${R}`, '-b', 'os', `--tree=dir=${tree}`, '--owner-uid=0', '--owner-gid=0', `--timestamp=@${TIMESTAMP}`, `--add-metadata-string=version=${version}`, '-s', version];
    const m = measure(argv, ctx.timeFile);
    if (!m.ok) fail(`${argv.join(' ')} failed (${m.reason})`);
    ids.push(m.stdout.trim());
    log(`  ${ids.at(-1)} in ${m.seconds!.toFixed(2)} s, ${m.peakMiB!.toFixed(1)} MiB`);
  }
  const [oldId, newId] = ids;
  const target = (name: string, withOld: boolean) => () => {
    const D = join(work, name);
    rmSync(D, { recursive: true, force: true });
    run(['ostree', `--repo=${D}`, 'init', '--mode=bare-user']);
    if (withOld) run(['ostree', 'pull-local', `--repo=${D}`, R, oldId]);
  };
  const check = (repo: string) => () => {
    const show = exec(['ostree', 'show', `--repo=${repo}`, newId]);
    if (!show.ok) return `NEW commit missing: ${show.reason}`;
    const fsck = exec(['ostree', 'fsck', `--repo=${repo}`]);
    return fsck.ok ? 'ok' : `fsck: ${fsck.reason}`;
  };
  const rows: Row[] = [];
  const delta = join(work, 'delta.ostree');
  rows.push(
    method(
      ctx,
      { method: 'ostree', command: 'ostree static-delta generate --inline --min-fallback-size=0; apply-offline' },
      { argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, `--from=${oldId}`, `--to=${newId}`, '--inline', '--min-fallback-size=0', `--filename=${delta}`], bytes: () => sizeBytes(delta) },
      { before: target('ostree-d', true), argv: ['ostree', 'static-delta', 'apply-offline', `--repo=${join(work, 'ostree-d')}`, delta], check: check(join(work, 'ostree-d')) },
    ),
  );
  rmSync(join(work, 'ostree-d'), { recursive: true, force: true });

  // The default: parts as separate files in R/deltas/, files over 4 MB that bsdiff does not
  // cover left as fallback objects the client pulls one by one: both count.
  const deltasDir = join(R, 'deltas');
  const row = method(
    ctx,
    { method: 'ostree-default', command: 'ostree static-delta generate (parts in deltas/ + fallback objects); bytes only' },
    {
      argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, `--from=${oldId}`, `--to=${newId}`],
      bytes: () => sizeBytes(deltasDir),
    },
  );
  if (row.bytes !== undefined) {
    const show = run(['ostree', 'static-delta', 'show', `--repo=${R}`, `${oldId}-${newId}`]);
    const fallbacks = Number(/Number of fallback entries: (\d+)/.exec(show)?.[1] ?? NaN);
    const fallbackBytes = Number(/Total Fallback Size: (\d+)/.exec(show)?.[1] ?? 0);
    row.bytes += fallbackBytes;
    row.command += `; ${fallbacks} fallback objects, ${fallbackBytes} B`;
    row.applyNa = 'parts as in the inline delta; fallback objects need a pull';
  }
  rows.push(row);

  const empty = join(work, 'scratch.ostree');
  rows.push(
    method(
      ctx,
      { method: 'ostree-scratch', command: 'ostree static-delta generate --empty --inline --min-fallback-size=0; apply-offline to an empty repo' },
      { argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, '--empty', `--to=${newId}`, '--inline', '--min-fallback-size=0', `--filename=${empty}`], bytes: () => sizeBytes(empty) },
      { before: target('ostree-s', false), argv: ['ostree', 'static-delta', 'apply-offline', `--repo=${join(work, 'ostree-s')}`, empty], check: check(join(work, 'ostree-s')) },
    ),
  );
  rmSync(join(work, 'ostree-s'), { recursive: true, force: true });
  return rows;
}

function tarRows(ctx: Context, selected: (g: Group) => boolean, skipBsdiff: boolean): Row[] {
  const { work, oldTar, newTar } = ctx;
  const out = join(work, 'out.tar');
  const rows: Row[] = [];
  const zst = join(work, 'new.tar.patch.zst');
  if (selected('zstd')) rows.push(
    method(
      ctx,
      { method: 'zstd-patch', command: 'zstd -19 --long=31 --patch-from=old.tar new.tar' },
      { argv: ['zstd', '-q', '-f', '-19', '--long=31', `--patch-from=${oldTar}`, newTar, '-o', zst], bytes: () => fileBytes(zst) },
      { argv: ['zstd', '-q', '-f', '-d', '--long=31', `--patch-from=${oldTar}`, zst, '-o', out], check: () => checkSame(ctx, out) },
    ),
  );
  // xdelta3 finds matches only within its source window (-B): all of old.tar, up to its 2 GiB limit.
  const window = String(Math.min(fileBytes(oldTar), 2 ** 31));
  const xd3 = join(work, 'new.tar.xd3');
  if (selected('xdelta3')) rows.push(
    method(
      ctx,
      { method: 'xdelta3', command: `xdelta3 -9 -S lzma -B ${window} -e -s old.tar new.tar` },
      { argv: ['xdelta3', '-f', '-9', '-S', 'lzma', '-B', window, '-e', '-s', oldTar, newTar, xd3], bytes: () => fileBytes(xd3) },
      { argv: ['xdelta3', '-f', '-d', '-B', window, '-s', oldTar, xd3, out], check: () => checkSame(ctx, out) },
    ),
  );
  const bs = join(work, 'new.tar.bsdiff');
  if (!selected('bsdiff')) {
    // not asked for
  } else if (skipBsdiff) rows.push({ method: 'bsdiff', command: 'bsdiff old.tar new.tar', na: 'skipped (--skip-bsdiff)' });
  else {
    rows.push(
      method(
        ctx,
        { method: 'bsdiff', command: 'bsdiff old.tar new.tar; bspatch' },
        { argv: ['bsdiff', oldTar, newTar, bs], bytes: () => fileBytes(bs) },
        { argv: ['bspatch', oldTar, out, bs], check: () => checkSame(ctx, out) },
      ),
    );
  }
  const xz = join(work, 'new.tar.xz');
  if (selected('xz')) rows.push(
    method(
      ctx,
      { method: 'full-xz', command: 'xz -9 -T1 new.tar (no delta: the whole image)' },
      { argv: sh('xz -9 -T1 -c "$1" > "$2"', newTar, xz), bytes: () => fileBytes(xz) },
      { argv: sh('xz -d -c "$1" > "$2"', xz, out), check: () => checkSame(ctx, out) },
    ),
  );
  return rows;
}

function versions(): Record<string, string> {
  const v: Record<string, string> = {};
  for (const pkg of ['ostree', 'zstd', 'xdelta3', 'bsdiff', 'xz-utils']) {
    const r = exec(['dpkg-query', '-W', '-f=${Version}', pkg]);
    v[pkg] = r.ok ? r.stdout.trim() : 'unknown';
  }
  return v;
}

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

  const workBase = join(ROOT, '.cache', 'bench-work');
  mkdirSync(workBase, { recursive: true });
  const work = mkdtempSync(join(workBase, 'delta-'));
  const cleanUp = () => rmSync(work, { recursive: true, force: true });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      cleanUp();
      process.exit(130);
    });
  }
  const gitHead = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
  const larchSrc = resolve(values.larch ?? '');
  let larch: string | undefined;
  let larchBuild = 'missing';
  let larchVersion = 'n/a';
  const rows: Row[] = [];
  const tarBytes = { old: 0, new: 0 };
  const ctx: Context = { work, timeFile: join(work, 'time.out'), corpus, oldTar: join(work, 'old.tar'), newTar: join(work, 'new.tar') };
  try {
    if (existsSync(larchSrc)) {
      larch = join(work, 'larch');
      copyFileSync(larchSrc, larch);
      larchBuild = `${larchSrc} built ${statSync(larchSrc).mtime.toISOString()}, git ${gitHead}`;
      larchVersion = run([larch, '--version']).trim();
    }
    if (selected('larch')) rows.push(...larchRows(ctx, larch));
    if (selected('ostree')) rows.push(...ostreeRows(ctx));
    if (tarGroups.length > 0) {
      log('bench/delta: making old.tar and new.tar');
      makeTar(corpus.old, ctx.oldTar);
      makeTar(corpus.new, ctx.newTar);
      tarBytes.old = fileBytes(ctx.oldTar);
      tarBytes.new = fileBytes(ctx.newTar);
      rows.push(...tarRows(ctx, selected, values['skip-bsdiff'] ?? false));
    }
  } finally {
    cleanUp();
  }
  const reference = rows.find((r) => r.method === 'ostree')?.bytes;
  for (const r of rows) if (r.bytes !== undefined && reference) r.ratio = r.bytes / reference;

  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30) };
  const tools = versions();
  const out = values.json ? log : (s: string) => console.log(s);
  const fmt = (n: number | undefined, d = 2) => (n === undefined || Number.isNaN(n) ? '' : n.toFixed(d));
  out(`\nstatic deltas on the ${kind} pair (${corpus.dir})`);
  out(describe(corpus.manifest));
  if (tarBytes.old > 0) out(`tars: old ${tarBytes.old} B, new ${tarBytes.new} B`);
  out(`larch: ${larchVersion} (${larchBuild}); ${Object.entries(tools).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), ${machine.memoryGiB} GiB RAM\n`);
  const header = ['method', 'bytes', 'x ostree', 'gen s', 'gen MiB', 'apply s', 'apply MiB', 'check'];
  const body = rows.map((r) =>
    r.na !== undefined
      ? [r.method, `n/a (${r.na})`, '', '', '', '', '', '']
      : [r.method, String(r.bytes), fmt(r.ratio, 3), fmt(r.generate?.seconds), fmt(r.generate?.peakMiB, 1), r.applyNa ? 'n/a' : fmt(r.apply?.seconds), r.applyNa ? '' : fmt(r.apply?.peakMiB, 1), r.applyNa ? `n/a (${r.applyNa})` : (r.check ?? '')],
  );
  // An n/a reason spans the row: it does not widen the columns.
  const widths = header.map((h, i) => Math.max(h.length, ...body.filter((b) => i === 0 || b[2] !== '' || b[3] !== '').map((b) => (i === 7 ? 0 : b[i].length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : i === 7 ? c : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  out(line(header));
  for (const b of body) out(b[2] === '' && b[3] === '' ? `${b[0].padEnd(widths[0])}  ${b[1]}` : line(b));
  out('');
  const stats = (j: Record<string, unknown>) =>
    ['parts', 'objects', 'patched', 'literal'].filter((k) => typeof j[k] === 'number').map((k) => `${k} ${j[k]}`).join(', ');
  for (const r of rows) out(`${r.method}: ${r.command}${r.larchStats && stats(r.larchStats) ? ` [${stats(r.larchStats)}]` : ''}`);
  if (values.json) {
    const result = { benchmark: 'delta', kind, larchVersion, larchBuild, tools, machine, corpus: { dir: corpus.dir, ...corpus.manifest }, tarBytes, rows };
    console.log(JSON.stringify(result, null, 2));
  }
  // Only larch may be missing (its delta commands are younger than this benchmark).
  const problem = (r: Row) =>
    r.na !== undefined && !r.na.startsWith('skipped') ? r.na
    : r.applyNa !== undefined && r.method !== 'ostree-default' ? `apply: ${r.applyNa}`
    : r.check !== undefined && r.check !== 'ok' ? `check: ${r.check}`
    : undefined;
  const broken = rows.filter((r) => !r.method.startsWith('larch') && problem(r) !== undefined);
  if (broken.length > 0) fail(`failed: ${broken.map((r) => `${r.method} (${problem(r)})`).join(', ')}`);
}

await main().catch((err: unknown) => {
  console.error(`bench/delta: ${err instanceof BenchError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exitCode = 1;
});

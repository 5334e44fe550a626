/**
 * The delta methods the delta benchmarks run side by side on one OLD/NEW pair (bench/delta.ts on
 * Debian trees, bench/agent-delta.ts on builds of the agent): larch and OSTree static deltas
 * between two trees, zstd --patch-from, xdelta3 and bsdiff between two files (tars of the trees,
 * or the binaries themselves), and the whole NEW file under xz -9 or zstd -19.
 *
 * Every timed command runs under GNU time (`/usr/bin/time -f '%e %M'`) after an untimed `sync`:
 * wall time measured here, peak RSS from %M (the command and the children it waited for). Each
 * result is checked: larch and OSTree with show + fsck of the NEW commit, the file tools with
 * `cmp` of their output against the NEW file.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

const TIME = '/usr/bin/time';
/** Both repos get this commit timestamp (2026-01-01T00:00:00Z). */
export const TIMESTAMP = 1767225600;
const isRoot = process.getuid?.() === 0;

/** Debian packages the delta benchmarks run, by the command that must exist. */
export const TOOLS: readonly [command: string, pkg: string][] = [
  [TIME, 'time'],
  ['ostree', 'ostree'],
  ['zstd', 'zstd'],
  ['xdelta3', 'xdelta3'],
  ['bsdiff', 'bsdiff'],
  ['xz', 'xz-utils'],
  ['tar', 'tar'],
  ['cmp', 'diffutils'],
  // the larch rows' identical-checkout check; the pair's initramfs (mkinitramfs)
  ['diff', 'diffutils'],
  ['find', 'findutils'],
  ['cpio', 'cpio'],
  ['gzip', 'gzip'],
];

/** Methods that can be picked, by the tool behind them ('zstd-full': the whole NEW file under zstd -19). */
export type Group = 'larch' | 'ostree' | 'zstd' | 'xdelta3' | 'bsdiff' | 'xz' | 'zstd-full';

export interface Measured {
  seconds: number;
  peakMiB: number;
}
export interface Row {
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

/** Thrown for anything that stops the run; the benchmark's main() prints it. */
export class BenchError extends Error {}

export function fail(message: string): never {
  throw new BenchError(message);
}

export const log = (s: string) => console.error(s);

export interface Result {
  ok: boolean;
  stdout: string;
  stderr: string;
  /** One line saying why it failed, for a table cell. */
  reason: string;
}

export function exec(argv: string[], cwd?: string): Result {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 256 << 20, ...(cwd ? { cwd } : {}) });
  const stderr = r.stderr ?? '';
  const ok = !r.error && r.status === 0;
  const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
  const first = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('Command exited with')).at(0) ?? '';
  return { ok, stdout: r.stdout ?? '', stderr, reason: ok ? '' : `${why}${first ? `: ${first.slice(0, 100)}` : ''}` };
}

/** Runs an untimed setup step; fails the whole run when it fails. */
export function run(argv: string[], cwd?: string): string {
  const r = exec(argv, cwd);
  if (!r.ok) fail(`${argv.join(' ')} failed (${r.reason}):\n${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs argv under GNU time after a sync: wall time measured here, peak RSS from %M (KiB). */
export function measure(argv: string[], timeFile: string, cwd?: string): Result & Partial<Measured> {
  spawnSync('sync', { stdio: 'ignore' });
  const start = process.hrtime.bigint();
  const r = exec([TIME, '-f', '%e %M', '-o', timeFile, ...argv], cwd);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (!r.ok) return r;
  const last = readFileSync(timeFile, 'utf8').trim().split('\n').at(-1) ?? '';
  const m = /^([\d.]+) (\d+)$/.exec(last);
  if (!m) fail(`cannot parse ${TIME} output '${last}'`);
  return { ...r, seconds, peakMiB: Number(m[2]) / 1024 };
}

const sh = (script: string, ...args: string[]) => ['sh', '-c', script, 'sh', ...args];
export const fileBytes = (path: string) => statSync(path).size;

/** Bytes of a file, or of the regular files below a directory (not the directories themselves). */
export function sizeBytes(path: string): number {
  const st = lstatSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((sum, name) => sum + sizeBytes(join(path, name)), 0);
}

/** Installs what is missing of TOOLS when run as root; otherwise names the packages to install. */
export function ensureTools(): void {
  const has = (cmd: string) => (cmd.startsWith('/') ? existsSync(cmd) : spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0);
  const missing = [...new Set(TOOLS.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  if (!isRoot) fail(`missing tools: install the Debian packages ${missing.join(' ')} (apt-get install ${missing.join(' ')})`);
  log(`bench: installing ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0;
  if (!install()) {
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (!install()) fail(`apt-get install ${missing.join(' ')} failed`);
  }
}

export function makeTar(dir: string, out: string): void {
  run(['tar', '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-C', dir, '-cf', out, '.']);
}

/** Versions of the reference tools (Debian packages). */
export function toolVersions(): Record<string, string> {
  const v: Record<string, string> = {};
  for (const pkg of ['ostree', 'zstd', 'xdelta3', 'bsdiff', 'xz-utils']) {
    const r = exec(['dpkg-query', '-W', '-f=${Version}', pkg]);
    v[pkg] = r.ok ? r.stdout.trim() : 'unknown';
  }
  return v;
}

/** One OLD/NEW pair: two trees (larch, OSTree) and two files (the file tools). */
export interface Context {
  /** Prefix of the progress lines, e.g. 'bench/delta'. */
  name: string;
  work: string;
  timeFile: string;
  oldTree: string;
  newTree: string;
  oldFile: string;
  newFile: string;
}

/** cmp against the NEW file, then removes the output (it is as large as the NEW file). */
function checkSame(ctx: Context, out: string): string {
  const r = exec(['cmp', '-s', ctx.newFile, out]);
  rmSync(out, { force: true });
  return r.ok ? 'ok' : `DIFFERS from ${basename(ctx.newFile)}`;
}

/** A generate step and an apply step of one method, each timed; the row says n/a where one fails. */
function method(
  ctx: Context,
  row: Row,
  generate: { argv: string[]; bytes: (stdout: string) => number },
  apply?: { before?: () => void; argv: string[]; check: () => string },
): Row {
  log(`${ctx.name}: ${row.method}: generating`);
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
  log(`${ctx.name}: ${row.method}: applying`);
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

/** larch's rows: its delta from OLD with views off (plain, format 1) and on (auto), and from nothing. */
export type LarchRowName = 'larch-plain' | 'larch' | 'larch-scratch';

export interface LarchOptions {
  /** The rows to make, in this order (default: 'larch', plus 'larch-scratch' when `scratch`). */
  rows?: readonly LarchRowName[];
  scratch?: boolean;
  /**
   * bin/larch.js: the 'larch' delta is also applied by larch on Node (`node bin/larch.js delta
   * apply`) into a second fresh repo, as row 'larch-node' (same delta, no generate figures).
   */
  node?: string;
  /**
   * The 'larch' delta is also applied by the Bun binary with `--threads 2` (the part with the
   * largest source view on a second thread) into another fresh repo, as row 'larch-threads-2'.
   */
  threads2?: boolean;
  /**
   * Also check that `larch checkout` of NEW from each applied repo equals the checkout from the
   * vendor's repo: `diff -r --no-dereference`, and owners and modes of every entry.
   */
  sameCheckout?: boolean;
}

/** The entries of a directory as `path uid gid mode` lines, sorted: what diff -r does not compare. */
function ownersAndModes(dir: string): string {
  return run(['find', dir, '-printf', '%P %U %G %m\\n']).split('\n').sort().join('\n');
}

/** Compares two checkouts: contents and symlink targets (diff -r), then owners and modes. */
export function sameTree(a: string, b: string): string {
  const diff = exec(['diff', '-r', '--no-dereference', a, b]);
  if (!diff.ok) {
    const first = diff.stdout.split('\n').find((l) => l.trim() !== '') ?? diff.reason;
    return `checkout DIFFERS from the vendor's: ${first.replaceAll(a, 'VENDOR').replaceAll(b, 'APPLIED').slice(0, 160)}`;
  }
  const [la, lb] = [ownersAndModes(a), ownersAndModes(b)];
  if (la === lb) return 'ok';
  const [xa, xb] = [la.split('\n'), lb.split('\n')];
  const i = xa.findIndex((l, k) => l !== xb[k]);
  return `checkout owners/modes DIFFER from the vendor's: '${xa[i] ?? ''}' vs '${xb[i] ?? ''}'`;
}

/** larch's deltas (see LarchOptions), each applied to a fresh bare-user repo and checked. */
export function larchRows(ctx: Context, larch: string | undefined, opts: LarchOptions): Row[] {
  const names: readonly LarchRowName[] = opts.rows ?? ['larch', ...(opts.scratch ? ['larch-scratch' as const] : [])];
  const commands: Record<LarchRowName, string> = {
    'larch-plain': 'larch delta generate --from OLD --to NEW --format 1 --sign-key K --out F (no views: the algorithm before issue 18); larch delta apply --key K.pub F',
    larch: 'larch delta generate --from OLD --to NEW --sign-key K --out F (--format auto: compressed streams through their views, zero-run coded diff bytes); larch delta apply --key K.pub F',
    'larch-scratch': 'larch delta generate --to NEW (no --from) --sign-key K --out F; apply to an empty repo',
  };
  const nodeRow: Row = { method: 'larch-node', command: `node ${opts.node ? basename(opts.node) : 'bin/larch.js'} delta apply --key K.pub F: the larch delta, applied by larch on Node into a second fresh repo` };
  const threadsRow: Row = { method: 'larch-threads-2', command: 'larch delta apply --threads 2 --key K.pub F: the larch delta, applied by the Bun binary with the part with the largest source view on a second thread, into a third fresh repo' };
  const extra = (r: Row) => [...(opts.node ? [nodeRow] : []), ...(opts.threads2 ? [threadsRow] : [])].map((x) => ({ ...x, ...(r.na !== undefined ? { na: r.na } : {}) }));
  const withNode = (rows: Row[]) => rows.flatMap((r) => (r.method === 'larch' ? [r, ...extra(r)] : [r]));
  const rows: Row[] = names.map((n) => ({ method: n, command: commands[n] }));
  if (larch === undefined) return withNode(rows.map((r) => ({ ...r, na: 'no larch binary: build dist/larch with node scripts/build.mjs' })));
  const { work } = ctx;
  const R = join(work, 'larch-archive');
  rmSync(R, { recursive: true, force: true });
  const commitIds: string[] = [];
  // Signed as a vendor would sign it; the device side checks it with the public key.
  const key = join(work, 'bench');
  const setup = [['init', '--repo', R, '--mode', 'archive'], ...(existsSync(`${key}.key`) ? [] : [['keygen', '--out', key]])];
  let failed = '';
  for (const argv of setup) {
    const r = exec([larch, ...argv]);
    if (!r.ok) failed = `larch ${argv[0]}: ${r.reason}`;
  }
  for (const [tree, version] of [[ctx.oldTree, '1'], [ctx.newTree, '2']] as const) {
    if (failed) break;
    log(`${ctx.name}: larch: committing ${version === '1' ? 'OLD' : 'NEW'}`);
    // The commit is signed too: a device refuses a signed delta whose commit is not (SIGNATURE_MISSING).
    const argv = [larch, 'commit', '--repo', R, '-b', 'os', '--tree', tree, '--version', version, '--owner', '0:0', '--timestamp', String(TIMESTAMP), '--sign-key', `${key}.key`, '--json'];
    const m = measure(argv, ctx.timeFile);
    if (!m.ok) failed = `larch commit: ${m.reason}`;
    else {
      commitIds.push((JSON.parse(m.stdout) as { commit: string }).commit);
      log(`  ${commitIds.at(-1)} in ${m.seconds!.toFixed(2)} s, ${m.peakMiB!.toFixed(1)} MiB`);
    }
  }
  if (failed) return withNode(rows.map((r) => ({ ...r, na: failed })));
  const [oldId, newId] = commitIds;
  // The single --out file is what a device downloads (as OSTree's --inline file); the
  // `--json` figures ({"bytes", "parts", "patched", "literal", "format", "by_kind", ...}) go
  // into the row as they are.
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
  // The vendor's checkout of NEW (from the archive repo: copied, each file checked), made once.
  const vendorCheckout = join(work, 'larch-co-vendor');
  const check = (repo: string) => () => {
    const show = exec([larch, 'show', '--repo', repo, newId]);
    if (!show.ok) return `NEW commit missing: ${show.reason}`;
    const fsck = exec([larch, 'fsck', '--repo', repo]);
    if (!fsck.ok) return `fsck: ${fsck.reason}`;
    if (!opts.sameCheckout) return 'ok';
    if (!existsSync(vendorCheckout)) {
      const v = exec([larch, 'checkout', '--repo', R, newId, vendorCheckout]);
      if (!v.ok) fail(`larch checkout of NEW from the vendor repo failed (${v.reason})`);
    }
    const co = join(work, 'larch-co-applied');
    rmSync(co, { recursive: true, force: true });
    const c = exec([larch, 'checkout', '--repo', repo, newId, co]);
    const same = c.ok ? sameTree(vendorCheckout, co) : `checkout: ${c.reason}`;
    rmSync(co, { recursive: true, force: true });
    return same;
  };
  const target = (name: string, withOld: boolean) => () => {
    const D = join(work, name);
    rmSync(D, { recursive: true, force: true });
    run([larch, 'init', '--repo', D, '--mode', 'bare-user']);
    if (withOld) run([larch, 'pull-local', '--repo', D, R, oldId]);
  };
  const out: Row[] = [];
  for (const row of rows) {
    const name = row.method as LarchRowName;
    const delta = join(work, `${name}.delta`);
    const repo = join(work, `${name}-repo`);
    const from = name === 'larch-scratch' ? [] : ['--from', oldId];
    const format = name === 'larch-plain' ? ['--format', '1'] : [];
    out.push(
      method(
        ctx,
        row,
        { argv: [larch, 'delta', 'generate', '--repo', R, ...from, '--to', newId, ...format, '--sign-key', `${key}.key`, '--out', delta, '--json'], bytes: bytesOf(row, delta) },
        { before: target(`${name}-repo`, name !== 'larch-scratch'), argv: [larch, 'delta', 'apply', '--repo', repo, '--key', `${key}.pub`, delta], check: check(repo) },
      ),
    );
    rmSync(repo, { recursive: true, force: true });
    // The generator's figures in the log as well: a run cut short still has them.
    const stats = out.at(-1)?.larchStats;
    if (stats) {
      const { by_kind, streams, timings_ms, format, view_patched } = stats as { by_kind?: unknown; streams?: { found: number; used: number; fallbacks: { reason: string }[] }; timings_ms?: unknown; format?: number; view_patched?: number };
      const reasons: Record<string, number> = {};
      for (const f of streams?.fallbacks ?? []) reasons[f.reason] = (reasons[f.reason] ?? 0) + 1;
      log(`  ${JSON.stringify({ format, view_patched, by_kind, streams: streams && { found: streams.found, used: streams.used, fallbacks: reasons }, timings_ms })}`);
    }
    if (name === 'larch') {
      const done = out.at(-1)!;
      const again: [Row, string[]][] = [
        ...(opts.node ? [[nodeRow, ['node', opts.node]] as [Row, string[]]] : []),
        ...(opts.threads2 ? [[threadsRow, [larch]] as [Row, string[]]] : []),
      ];
      for (const [row, runner] of again) {
        if (done.na !== undefined) {
          out.push({ ...row, na: done.na });
          continue;
        }
        const againRepo = join(work, `${row.method}-repo`);
        target(`${row.method}-repo`, true)();
        const threads = row === threadsRow ? ['--threads', '2'] : [];
        out.push(applyOnly(ctx, { ...row, bytes: done.bytes }, [...runner, 'delta', 'apply', '--repo', againRepo, '--key', `${key}.pub`, ...threads, delta], check(againRepo)));
        rmSync(againRepo, { recursive: true, force: true });
      }
    }
    rmSync(delta, { force: true });
  }
  rmSync(vendorCheckout, { recursive: true, force: true });
  rmSync(R, { recursive: true, force: true });
  return out;
}

/** The apply step alone (of a delta another row generated), timed and checked. */
function applyOnly(ctx: Context, row: Row, argv: string[], check: () => string): Row {
  log(`${ctx.name}: ${row.method}: applying`);
  const a = measure(argv, ctx.timeFile);
  if (!a.ok) {
    log(`  failed: ${a.reason}`);
    return { ...row, applyNa: a.reason };
  }
  row.apply = { seconds: a.seconds!, peakMiB: a.peakMiB! };
  row.check = check();
  log(`  ${a.seconds!.toFixed(2)} s, ${a.peakMiB!.toFixed(1)} MiB, check: ${row.check}`);
  return row;
}

/**
 * OSTree's static delta (--inline, one file) applied offline (unless `inline` is false); with
 * `extra`, also its default delta (bytes only) and the delta from nothing, or each alone with
 * `defaultDelta` / `scratch`.
 */
export function ostreeRows(ctx: Context, opts: { extra?: boolean; inline?: boolean; defaultDelta?: boolean; scratch?: boolean }): Row[] {
  const want = { inline: opts.inline ?? true, defaultDelta: opts.defaultDelta ?? opts.extra ?? false, scratch: opts.scratch ?? opts.extra ?? false };
  const { work } = ctx;
  const R = join(work, 'ostree-archive');
  rmSync(R, { recursive: true, force: true });
  run(['ostree', `--repo=${R}`, 'init', '--mode=archive']);
  const ids: string[] = [];
  for (const [tree, version] of [[ctx.oldTree, '1'], [ctx.newTree, '2']] as const) {
    log(`${ctx.name}: ostree: committing ${version === '1' ? 'OLD' : 'NEW'}`);
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
  if (want.inline) rows.push(
    method(
      ctx,
      { method: 'ostree', command: 'ostree static-delta generate --inline --min-fallback-size=0; apply-offline' },
      { argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, `--from=${oldId}`, `--to=${newId}`, '--inline', '--min-fallback-size=0', `--filename=${delta}`], bytes: () => sizeBytes(delta) },
      { before: target('ostree-d', true), argv: ['ostree', 'static-delta', 'apply-offline', `--repo=${join(work, 'ostree-d')}`, delta], check: check(join(work, 'ostree-d')) },
    ),
  );
  rmSync(join(work, 'ostree-d'), { recursive: true, force: true });
  rmSync(delta, { force: true });

  // The default: parts as separate files in R/deltas/, files over 4 MB that bsdiff does not
  // cover left as fallback objects the client pulls one by one: both count.
  const deltasDir = join(R, 'deltas');
  const row = !want.defaultDelta ? undefined : method(
    ctx,
    { method: 'ostree-default', command: 'ostree static-delta generate (parts in deltas/ + fallback objects); bytes only' },
    {
      argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, `--from=${oldId}`, `--to=${newId}`],
      bytes: () => sizeBytes(deltasDir),
    },
  );
  if (row?.bytes !== undefined) {
    const show = run(['ostree', 'static-delta', 'show', `--repo=${R}`, `${oldId}-${newId}`]);
    const fallbacks = Number(/Number of fallback entries: (\d+)/.exec(show)?.[1] ?? NaN);
    const fallbackBytes = Number(/Total Fallback Size: (\d+)/.exec(show)?.[1] ?? 0);
    row.bytes += fallbackBytes;
    row.command += `; ${fallbacks} fallback objects, ${fallbackBytes} B`;
    row.applyNa = 'parts as in the inline delta; fallback objects need a pull';
  }
  if (row) rows.push(row);

  const empty = join(work, 'scratch.ostree');
  if (want.scratch) rows.push(
    method(
      ctx,
      { method: 'ostree-scratch', command: 'ostree static-delta generate --empty --inline --min-fallback-size=0; apply-offline to an empty repo' },
      { argv: ['ostree', 'static-delta', 'generate', `--repo=${R}`, '--empty', `--to=${newId}`, '--inline', '--min-fallback-size=0', `--filename=${empty}`], bytes: () => sizeBytes(empty) },
      { before: target('ostree-s', false), argv: ['ostree', 'static-delta', 'apply-offline', `--repo=${join(work, 'ostree-s')}`, empty], check: check(join(work, 'ostree-s')) },
    ),
  );
  rmSync(join(work, 'ostree-s'), { recursive: true, force: true });
  rmSync(R, { recursive: true, force: true });
  return rows;
}

/** The file tools on OLD and NEW files (tars of the trees, or the binaries): every row checked with cmp. */
export function fileRows(ctx: Context, selected: (g: Group) => boolean, skipBsdiff: boolean): Row[] {
  const { work, oldFile, newFile } = ctx;
  const [o, n] = [basename(oldFile), basename(newFile)];
  const out = join(work, 'out.bin');
  const rows: Row[] = [];
  const zst = join(work, `${n}.patch.zst`);
  if (selected('zstd')) rows.push(
    method(
      ctx,
      { method: 'zstd-patch', command: `zstd -19 --long=31 --patch-from=${o} ${n}` },
      { argv: ['zstd', '-q', '-f', '-19', '--long=31', `--patch-from=${oldFile}`, newFile, '-o', zst], bytes: () => fileBytes(zst) },
      { argv: ['zstd', '-q', '-f', '-d', '--long=31', `--patch-from=${oldFile}`, zst, '-o', out], check: () => checkSame(ctx, out) },
    ),
  );
  // xdelta3 finds matches only within its source window (-B): all of OLD, up to its 2 GiB limit.
  const window = String(Math.min(fileBytes(oldFile), 2 ** 31));
  const xd3 = join(work, `${n}.xd3`);
  if (selected('xdelta3')) rows.push(
    method(
      ctx,
      { method: 'xdelta3', command: `xdelta3 -9 -S lzma -B ${window} -e -s ${o} ${n}` },
      { argv: ['xdelta3', '-f', '-9', '-S', 'lzma', '-B', window, '-e', '-s', oldFile, newFile, xd3], bytes: () => fileBytes(xd3) },
      { argv: ['xdelta3', '-f', '-d', '-B', window, '-s', oldFile, xd3, out], check: () => checkSame(ctx, out) },
    ),
  );
  const bs = join(work, `${n}.bsdiff`);
  if (!selected('bsdiff')) {
    // not asked for
  } else if (skipBsdiff) rows.push({ method: 'bsdiff', command: `bsdiff ${o} ${n}`, na: 'skipped (--skip-bsdiff)' });
  else {
    rows.push(
      method(
        ctx,
        { method: 'bsdiff', command: `bsdiff ${o} ${n}; bspatch` },
        { argv: ['bsdiff', oldFile, newFile, bs], bytes: () => fileBytes(bs) },
        { argv: ['bspatch', oldFile, out, bs], check: () => checkSame(ctx, out) },
      ),
    );
  }
  const xz = join(work, `${n}.xz`);
  if (selected('xz')) rows.push(
    method(
      ctx,
      { method: 'full-xz', command: `xz -9 -T1 ${n} (no delta: the whole NEW)` },
      { argv: sh('xz -9 -T1 -c "$1" > "$2"', newFile, xz), bytes: () => fileBytes(xz) },
      { argv: sh('xz -d -c "$1" > "$2"', xz, out), check: () => checkSame(ctx, out) },
    ),
  );
  const zfull = join(work, `${n}.zst`);
  if (selected('zstd-full')) rows.push(
    method(
      ctx,
      { method: 'full-zstd', command: `zstd -19 ${n} (no delta: the whole NEW)` },
      { argv: ['zstd', '-q', '-f', '-19', newFile, '-o', zfull], bytes: () => fileBytes(zfull) },
      { argv: ['zstd', '-q', '-f', '-d', zfull, '-o', out], check: () => checkSame(ctx, out) },
    ),
  );
  return rows;
}

/** Sets each row's ratio to OSTree's (inline) delta, when that row is there. */
export function setRatios(rows: Row[]): void {
  const reference = rows.find((r) => r.method === 'ostree')?.bytes;
  for (const r of rows) if (r.bytes !== undefined && reference) r.ratio = r.bytes / reference;
}

/** The rows as an aligned text table; an n/a reason spans its row. */
export function formatTable(rows: Row[]): string[] {
  const fmt = (n: number | undefined, d = 2) => (n === undefined || Number.isNaN(n) ? '' : n.toFixed(d));
  const header = ['method', 'bytes', 'x ostree', 'gen s', 'gen MiB', 'apply s', 'apply MiB', 'check'];
  const body = rows.map((r) =>
    r.na !== undefined
      ? [r.method, `n/a (${r.na})`, '', '', '', '', '', '']
      : [r.method, String(r.bytes), fmt(r.ratio, 3), fmt(r.generate?.seconds), fmt(r.generate?.peakMiB, 1), r.applyNa ? 'n/a' : fmt(r.apply?.seconds), r.applyNa ? '' : fmt(r.apply?.peakMiB, 1), r.applyNa ? `n/a (${r.applyNa})` : (r.check ?? '')],
  );
  const spans = (b: string[]) => b[2] === '' && b[3] === '' && b[1].startsWith('n/a');
  const widths = header.map((h, i) => Math.max(h.length, ...body.filter((b) => i === 0 || !spans(b)).map((b) => (i === 7 ? 0 : b[i].length))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : i === 7 ? c : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...body.map((b) => (spans(b) ? `${b[0].padEnd(widths[0])}  ${b[1]}` : line(b)))];
}

/** Where a row failed, or undefined; skipped rows and the bytes-only OSTree default are fine. */
export function problem(r: Row): string | undefined {
  return r.na !== undefined && !r.na.startsWith('skipped') ? r.na
    : r.applyNa !== undefined && r.method !== 'ostree-default' ? `apply: ${r.applyNa}`
    : r.check !== undefined && r.check !== 'ok' ? `check: ${r.check}`
    : undefined;
}

/** One line per row: the command it ran, and larch's delta statistics. */
export function rowNotes(rows: Row[]): string[] {
  const stats = (j: Record<string, unknown>) =>
    ['format', 'parts', 'objects', 'patched', 'view_patched', 'literal'].filter((k) => typeof j[k] === 'number').map((k) => `${k} ${j[k]}`).join(', ');
  return rows.map((r) => `${r.method}: ${r.command}${r.larchStats && stats(r.larchStats) ? ` [${stats(r.larchStats)}]` : ''}`);
}

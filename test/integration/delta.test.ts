/**
 * apply(generate(A, B)) rebuilds B exactly (Node and Bun), from
 * scratch too; bad deltas are refused before anything of them is stored; kill -9 during apply,
 * then apply again, completes without redoing stored parts.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BIN, type Runtime, diffSnapshots, larch, larchOk, snapshotTree, tempDir } from '../helpers.ts';
import { APPLY_ENV, RUNTIME_ENV } from '../../src/cli/runtime-options.ts';

/** A pseudo-random but repeatable buffer (so compressors cannot cheat, and reruns are equal). */
function noise(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Tree A, then B = A with the kinds of change an OS update makes. */
function makePair(dir: string): { a: string; b: string } {
  const a = join(dir, 'A');
  mkdirSync(join(a, 'usr', 'bin'), { recursive: true });
  mkdirSync(join(a, 'lib', 'modules', '6.1.0-25-amd64', 'kernel'), { recursive: true });
  mkdirSync(join(a, 'etc'));
  const binary = noise(1, 300_000);
  writeFileSync(join(a, 'usr', 'bin', 'tool'), binary);
  writeFileSync(join(a, 'usr', 'bin', 'same'), 'unchanged\n');
  writeFileSync(join(a, 'lib', 'modules', '6.1.0-25-amd64', 'kernel', 'driver.ko'), noise(2, 200_000));
  writeFileSync(join(a, 'etc', 'config'), 'a=1\nb=2\n'.repeat(200));
  writeFileSync(join(a, 'gone'), 'removed in B\n');
  writeFileSync(join(a, 'empty'), '');
  symlinkSync('tool', join(a, 'usr', 'bin', 'link'));
  mkdirSync(join(a, 'usr', 'share', 'data'), { recursive: true });
  for (let i = 0; i < 12; i++) writeFileSync(join(a, 'usr', 'share', 'data', `table-${i}`), noise(100 + i, 8192));
  const b = join(dir, 'B');
  cpSync(a, b, { recursive: true, verbatimSymlinks: true });
  for (let i = 0; i < 12; i++) writeFileSync(join(b, 'usr', 'share', 'data', `table-${i}`), Buffer.concat([noise(100 + i, 8192), Buffer.from(`v2 ${i}`)]));
  // a binary with a few bytes changed and a block inserted
  const changed = Buffer.concat([binary.subarray(0, 100_000), noise(3, 2_000), binary.subarray(100_000)]);
  for (let i = 150_000; i < 150_100; i++) changed[i] ^= 0x5a;
  writeFileSync(join(b, 'usr', 'bin', 'tool'), changed);
  // a kernel update: the module directory is renamed and the module changes a little
  renameSync(join(b, 'lib', 'modules', '6.1.0-25-amd64'), join(b, 'lib', 'modules', '6.1.0-26-amd64'));
  const ko = readFileSync(join(b, 'lib', 'modules', '6.1.0-26-amd64', 'kernel', 'driver.ko'));
  ko.write('6.1.0-26', 5000);
  writeFileSync(join(b, 'lib', 'modules', '6.1.0-26-amd64', 'kernel', 'driver.ko'), ko);
  writeFileSync(join(b, 'etc', 'config'), 'a=1\nb=3\n'.repeat(200));
  unlinkSync(join(b, 'gone'));
  writeFileSync(join(b, 'new-file'), noise(4, 50_000));
  chmodSync(join(b, 'usr', 'bin', 'same'), 0o700);
  unlinkSync(join(b, 'usr', 'bin', 'link'));
  symlinkSync('same', join(b, 'usr', 'bin', 'link'));
  return { a, b };
}

async function setup(t: { teardown(fn: () => unknown): void }, partSize?: number) {
  const dir = tempDir(t);
  const { a, b } = makePair(dir);
  const server = join(dir, 'server');
  await larchOk(['init', '--repo', server, '--mode', 'archive']);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  const ida = (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', a, '--version', '1', '--sign-key', join(dir, 'vendor.key'), '--json'])).json.commit;
  const idb = (await larchOk(['commit', '--repo', server, '-b', 'os', '--tree', b, '--version', '2', '--sign-key', join(dir, 'vendor.key'), '--json'])).json.commit;
  const deltaFile = join(dir, 'a-b.delta');
  const gen = await larchOk(['delta', 'generate', '--repo', server, '--from', ida, '--to', idb, '--sign-key', join(dir, 'vendor.key'), '--out', deltaFile, '--json', ...(partSize ? ['--part-size', String(partSize)] : [])]);
  return { dir, a, b, server, ida, idb, deltaFile, gen: gen.json };
}

async function deviceWithA(dir: string, server: string, ida: string, name: string, runtime: Runtime = 'bun') {
  const device = join(dir, name);
  await larchOk(['init', '--repo', device, '--mode', 'bare-user'], { runtime });
  await larchOk(['pull-local', '--repo', device, server, ida], { runtime });
  return device;
}

t.test('apply(generate(A, B)) rebuilds B exactly, from Node and from Bun', async (t) => {
  const { dir, b, server, ida, idb, deltaFile, gen } = await setup(t);
  t.equal(gen.from, ida);
  t.equal(gen.to, idb);
  t.ok(gen.patched >= 14, `changed files are sent as patches (${gen.patched})`);
  const bytes = readFileSync(deltaFile).length;
  t.equal(gen.bytes, bytes, 'reported size is the file size');
  t.ok(bytes < 60_000, `the delta is small (${bytes} bytes for ~52 kB of new random data)`);
  for (const runtime of ['bun', 'node'] as Runtime[]) {
    const device = await deviceWithA(dir, server, ida, `device-${runtime}`, runtime);
    const r = await larchOk(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'vendor.pub'), '--ref', 'os', '--json'], { runtime });
    t.equal(r.json.to, idb, `${runtime}: the target commit`);
    t.equal((await larch(['fsck', '--repo', device])).code, 0, `${runtime}: fsck clean`);
    t.equal((await larch(['verify', '--repo', device, '--key', join(dir, 'vendor.pub'), 'os'])).code, 0, `${runtime}: the commit's own signature came along`);
    await larchOk(['checkout', '--repo', device, 'os', join(dir, `co-${runtime}`)]);
    t.same(diffSnapshots(await snapshotTree(b), await snapshotTree(join(dir, `co-${runtime}`)), true), [], `${runtime}: checkout equals B`);
    const again = await larchOk(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'vendor.pub'), '--json'], { runtime });
    t.equal(again.json.parts_applied, 0, `${runtime}: applying again does nothing`);
  }
});

t.test('LARCH_MEMORY_LOG: a line per part and per large object, with the memory there', async (t) => {
  const { dir, server, ida, idb, deltaFile, gen } = await setup(t, 16 * 1024);
  t.ok(gen.parts >= 2, `the delta has several parts (${gen.parts})`);
  for (const runtime of ['bun', 'node'] as Runtime[]) {
    const device = await deviceWithA(dir, server, ida, `device-log-${runtime}`, runtime);
    const log = join(dir, `memory-${runtime}.log`);
    const r = await larchOk(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'vendor.pub'), '--json'], { runtime, env: { LARCH_MEMORY_LOG: log } });
    t.equal(r.json.to, idb, `${runtime}: applied as without the log`);
    const points = readFileSync(log, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    const parts = Array.from({ length: gen.parts }, (_, i) => [`part ${i + 1}/${gen.parts}`, `part ${i + 1}/${gen.parts} stored`]).flat();
    t.same(points.map((p) => p.at), ['apply', 'superblock', ...parts, 'finish', 'done'], `${runtime}: the points, in order (no object of the pair is over 1 MiB)`);
    t.same(Object.keys(points[0]).sort(), ['array_buffers_kib', 'at', 'heap_used_kib', 'pid', 'rss_anon_kib', 'rss_file_kib', 'rss_kib', 'time_ms'], `${runtime}: the fields (docs/cli.md)`);
    t.ok(points.every((p) => p.pid === points[0].pid && p.rss_kib > 1024 && p.rss_anon_kib > 0 && p.rss_file_kib > 0 && p.heap_used_kib > 0), `${runtime}: one process, its memory from /proc`);
    t.ok(points.every((p, i) => i === 0 || p.time_ms >= points[i - 1].time_ms), `${runtime}: wall clock in order`);
    const quiet = await deviceWithA(dir, server, ida, `device-quiet-${runtime}`, runtime);
    await larchOk(['delta', 'apply', '--repo', quiet, deltaFile, '--key', join(dir, 'vendor.pub')], { runtime });
    t.equal(readFileSync(log, 'utf8').trimEnd().split('\n').length, points.length, `${runtime}: unset, nothing is written`);
  }
});

t.test('a from-scratch delta installs B into an empty repo', async (t) => {
  const { dir, b, server, idb } = await setup(t);
  const file = join(dir, 'scratch.delta');
  const gen = await larchOk(['delta', 'generate', '--repo', server, '--to', idb, '--sign-key', join(dir, 'vendor.key'), '--out', file, '--json']);
  t.equal(gen.json.from, null);
  t.equal(gen.json.patched, 0, 'no patches without a base');
  const device = join(dir, 'fresh');
  await larchOk(['init', '--repo', device, '--mode', 'bare-user']);
  await larchOk(['trust', '--repo', device, join(dir, 'vendor.pub')]);
  const r = await larchOk(['delta', 'apply', '--repo', device, file, '--ref', 'os', '--json']);
  t.equal(r.json.to, idb, 'keyring trust is enough');
  await larchOk(['checkout', '--repo', device, 'os', join(dir, 'co')]);
  t.same(diffSnapshots(await snapshotTree(b), await snapshotTree(join(dir, 'co')), true), []);
  const list = (await larchOk(['delta', 'list', '--repo', server, '--json'])).json;
  t.equal(list.length, 2, 'delta list shows both deltas in the server repo');
  t.ok(list.every((d: { signed: boolean }) => d.signed), 'both signed');
});

t.test('refused before anything is stored', async (t) => {
  const { dir, server, ida, idb, deltaFile } = await setup(t);
  await larchOk(['keygen', '--out', join(dir, 'other')]);
  const objectCount = (repo: string) => larchOk(['fsck', '--repo', repo, '--json']).then((r) => r.json.objects as number);

  const device = await deviceWithA(dir, server, ida, 'device');
  const before = await objectCount(device);
  const expectRefused = async (file: string, code: string, what: string, message?: RegExp) => {
    const r = await larch(['delta', 'apply', '--repo', device, file, '--key', join(dir, 'vendor.pub'), '--json']);
    t.equal(r.json?.error?.code, code, `${what}: ${code}`);
    if (message) t.match(r.json?.error?.message, message, `${what}: says what is wrong`);
    t.equal(await objectCount(device), before, `${what}: nothing stored`);
    t.equal((await larch(['show', '--repo', device, idb])).code, 3, `${what}: no target commit`);
  };

  // untrusted key
  const r = await larch(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'other.pub'), '--json']);
  t.equal(r.json.error.code, 'SIGNATURE_INVALID', 'untrusted key refused');
  const unsigned = join(dir, 'unsigned.delta');
  await larchOk(['delta', 'generate', '--repo', server, '--from', ida, '--to', idb, '--unsigned', '--out', unsigned]);
  await expectRefused(unsigned, 'SIGNATURE_INVALID', 'unsigned delta');

  const bytes = readFileSync(deltaFile);
  const envLen = bytes.readUInt32BE(12);
  // a modified superblock: flip a byte inside the envelope's superblock
  const modified = Buffer.from(bytes);
  modified[16 + Math.floor(envLen / 2)] ^= 0x01;
  writeFileSync(join(dir, 'modified.delta'), modified);
  const m = await larch(['delta', 'apply', '--repo', device, join(dir, 'modified.delta'), '--key', join(dir, 'vendor.pub'), '--json']);
  t.ok(['SIGNATURE_INVALID', 'DELTA_CORRUPT'].includes(m.json.error.code), `modified superblock refused (${m.json.error.code})`);

  // one flipped byte in a part
  const flipped = Buffer.from(bytes);
  flipped[bytes.length - 10] ^= 0x01;
  writeFileSync(join(dir, 'flipped.delta'), flipped);
  await expectRefused(join(dir, 'flipped.delta'), 'DELTA_CORRUPT', 'flipped byte in a part', /part \d+\/\d+: checksum mismatch/);

  // truncated
  writeFileSync(join(dir, 'truncated.delta'), bytes.subarray(0, bytes.length - 100));
  await expectRefused(join(dir, 'truncated.delta'), 'DELTA_CORRUPT', 'truncated delta', /part \d+\/\d+: truncated/);

  // garbage
  writeFileSync(join(dir, 'garbage.delta'), randomBytes(5000));
  await expectRefused(join(dir, 'garbage.delta'), 'DELTA_CORRUPT', 'not a delta', /bad magic/);

  // a delta for another A
  const other = join(dir, 'other-device');
  await larchOk(['init', '--repo', other, '--mode', 'bare-user']);
  const wrongBase = await larch(['delta', 'apply', '--repo', other, deltaFile, '--key', join(dir, 'vendor.pub'), '--json']);
  t.equal(wrongBase.json.error.code, 'DELTA_BASE_MISSING');
  t.equal(wrongBase.code, 12);
  t.match(wrongBase.json.error.message, new RegExp(ida));
});

t.test('a repo that lost a file the new tree shares with its base: the commit is not stored, and the message names the file', async (t) => {
  const { dir, server, ida, idb, deltaFile } = await setup(t);
  const device = await deviceWithA(dir, server, ida, 'device');
  // /empty is the same file in A and B: the delta does not carry it, and the completeness check
  // after the parts is what notices it is gone.
  const [entry] = (await larchOk(['ls', '--repo', device, ida, '/empty', '--json'])).json as { object: string }[];
  const id = entry.object;
  t.match(id, /^[0-9a-f]{64}$/, 'the base tree holds /empty');
  rmSync(join(device, 'objects', id.slice(0, 2), `${id.slice(2)}.file`));
  const r = await larch(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'vendor.pub'), '--json']);
  t.equal(r.json?.error?.code, 'DELTA_CORRUPT', 'refused as DELTA_CORRUPT');
  t.match(r.json?.error?.message, new RegExp(`left the tree of ${idb} incomplete: file ${id} at '/?empty' is missing`), 'the message names the missing file and its path');
  t.equal((await larch(['show', '--repo', device, idb])).code, 3, 'no target commit');
});

t.test('kill -9 during apply at 20 random moments, then apply again', async (t) => {
  const { dir, b, server, ida, idb, deltaFile, gen } = await setup(t, 4096);
  t.ok(gen.parts >= 10, `the delta has several parts (${gen.parts})`);
  const device = await deviceWithA(dir, server, ida, 'device');
  // How long a whole apply takes, measured on a copy.
  const probe = await deviceWithA(dir, server, ida, 'probe');
  const start = Date.now();
  await larchOk(['delta', 'apply', '--repo', probe, deltaFile, '--key', join(dir, 'vendor.pub')]);
  const fullMs = Date.now() - start;
  rmSync(probe, { recursive: true, force: true });
  let resumedWithSkips = 0;
  for (let i = 0; i < 20; i++) {
    const victim = await deviceWithA(dir, server, ida, `victim-${i}`);
    const delayMs = Math.floor(Math.random() * fullMs);
    const child = spawn(BIN, ['delta', 'apply', '--repo', victim, deltaFile, '--key', join(dir, 'vendor.pub')], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
    await new Promise((r) => child.on('exit', r));
    clearTimeout(timer);
    t.equal((await larch(['fsck', '--repo', victim])).code, 0, `round ${i} (kill after ${delayMs} ms): fsck clean`);
    const again = await larchOk(['delta', 'apply', '--repo', victim, deltaFile, '--key', join(dir, 'vendor.pub'), '--json']);
    t.equal(again.json.to, idb, `round ${i}: the apply completes`);
    t.equal(again.json.parts_applied + again.json.parts_skipped, gen.parts, `round ${i}: every part accounted for`);
    if (again.json.parts_skipped > 0 && again.json.parts_applied > 0) resumedWithSkips++;
    t.equal((await larch(['fsck', '--repo', victim])).code, 0, `round ${i}: fsck clean after resuming`);
    rmSync(victim, { recursive: true, force: true });
  }
  t.ok(resumedWithSkips > 0, `some resumes skipped parts stored before the kill (${resumedWithSkips} of 20)`);
  await larchOk(['delta', 'apply', '--repo', device, deltaFile, '--key', join(dir, 'vendor.pub'), '--ref', 'os']);
  await larchOk(['checkout', '--repo', device, 'os', join(dir, 'co')]);
  t.same(diffSnapshots(await snapshotTree(b), await snapshotTree(join(dir, 'co')), true), []);
});

t.test('a generate killed mid-write leaves no delta under its name, only a staging directory that prune removes; apply --ref moves the ref in the commit\'s transaction', async (t) => {
  // One setup for both (it is most of the time): the stored delta has several parts.
  const { dir, server, ida, idb, gen, deltaFile } = await setup(t, 4096);
  const name = gen.name as string;
  const stored = join(server, 'deltas', name);
  const before = await snapshotTree(stored);
  const sign = ['--sign-key', join(dir, 'vendor.key'), '--quality', '1'];
  // Generating A -> B again (replacing the stored one) and B from scratch (a new name), each killed after its second part.
  const again = await larch(['delta', 'generate', '--repo', server, '--from', ida, '--to', idb, ...sign, '--part-size', '4096', '--out', join(dir, 'again.delta')], { env: { LARCH_FAILPOINT: 'delta::after-part-write:2' } });
  t.equal(again.signal, 'SIGKILL', 'the regenerate died at its failpoint');
  const scratch = await larch(['delta', 'generate', '--repo', server, '--to', idb, ...sign, '--part-size', '4096'], { env: { LARCH_FAILPOINT: 'delta::after-part-write:2' } });
  t.equal(scratch.signal, 'SIGKILL', 'the from-scratch generate died at its failpoint');
  t.same(diffSnapshots(before, await snapshotTree(stored)), [], 'the stored delta of that name is untouched');
  t.notOk(existsSync(join(server, 'deltas', `empty-${idb}`)), 'no half delta under the new name');
  t.notOk(existsSync(join(dir, 'again.delta')), 'no --out file');
  t.equal(readdirSync(join(server, 'tmp')).length, 2, 'two staging directories left in R/tmp/');
  t.same((await larchOk(['delta', 'list', '--repo', server, '--json'])).json.map((d: { name: string }) => d.name), [name], 'delta list shows the complete delta only');

  await larchOk(['prune', '--repo', server]);
  t.same(readdirSync(join(server, 'tmp')), [], 'prune removed the staging directories');
  // Killed after the rename: the delta is complete under its name (the --out file is written after).
  const renamed = await larch(['delta', 'generate', '--repo', server, '--to', idb, ...sign, '--out', join(dir, 'late.delta')], { env: { LARCH_FAILPOINT: 'delta::after-generate-rename' } });
  t.equal(renamed.signal, 'SIGKILL', 'killed after the rename');
  t.notOk(existsSync(join(dir, 'late.delta')), 'no --out file yet');
  const device = join(dir, 'fresh');
  await larchOk(['init', '--repo', device, '--mode', 'bare-user']);
  t.equal((await larchOk(['delta', 'apply', '--repo', device, join(server, 'deltas', `empty-${idb}`), '--key', join(dir, 'vendor.pub'), '--json'])).json.to, idb, 'the renamed delta applies');

  // delta apply --ref: one transaction stores the commit and moves the ref.
  const withA = await deviceWithA(dir, server, ida, 'device-a');
  const key = ['--key', join(dir, 'vendor.pub')];
  const bad = await larch(['delta', 'apply', '--repo', withA, deltaFile, ...key, '--ref', 'bad..name', '--json']);
  t.equal(bad.json?.error?.code, 'INVALID_INPUT', 'a bad branch name is refused');
  t.equal((await larch(['show', '--repo', withA, idb])).code, 3, 'before anything of the delta is stored');
  // Killed right after the commit is stored: the ref already names it (it was a second write after the apply).
  const killed = await larch(['delta', 'apply', '--repo', withA, deltaFile, ...key, '--ref', 'os'], { env: { LARCH_FAILPOINT: 'delta::after-commit-write' } });
  t.equal(killed.signal, 'SIGKILL', 'killed after the commit write');
  t.equal(readFileSync(join(withA, 'refs', 'heads', 'os'), 'utf8').trim(), idb, 'the ref names the new commit');
  // Run again with another ref: everything is stored, only the ref moves.
  const rerun = await larchOk(['delta', 'apply', '--repo', withA, deltaFile, ...key, '--ref', 'release', '--json']);
  t.equal(rerun.json.parts_applied, 0, 'nothing applied again');
  t.equal(readFileSync(join(withA, 'refs', 'heads', 'release'), 'utf8').trim(), idb, 'the second ref names it too');
});

t.test("the Bun binary applies with its runtime options (src/cli/runtime-options.ts); other commands and an operator's own settings are left alone", async (t) => {
  const dir = tempDir(t);
  const every: Record<string, string> = { ...RUNTIME_ENV, ...APPLY_ENV };
  const names = Object.keys(every);
  const unset = Object.fromEntries(names.map((name) => [name, undefined]));
  // As each process image starts, mimalloc prints every option and JSC the ones changed from its
  // defaults: a re-executed apply prints both twice. Per option, its value in each process image
  // (a JSC option left at its default: null).
  const started = (args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(BIN, args, { encoding: 'utf8', env: { ...process.env, ...unset, ...env, MIMALLOC_VERBOSE: '1', BUN_JSC_dumpOptions: '1' } });
    const out = r.stdout + r.stderr;
    const images = out.split('Modified JSC options:').slice(1);
    return Object.fromEntries(
      names.map((name) => {
        if (name.startsWith('MIMALLOC_')) {
          const option = name.slice('MIMALLOC_'.length).toLowerCase();
          return [name, [...out.matchAll(new RegExp(`option '${option}': (\\d+)`, 'g'))].map((m) => m[1])];
        }
        const option = name.slice('BUN_JSC_'.length);
        return [name, images.map((image) => new RegExp(`^\\s+${option}=(\\d+)`, 'm').exec(image)?.[1] ?? null)];
      }),
    );
  };
  const defaults = { MIMALLOC_PURGE_DELAY: '100', MIMALLOC_PURGE_HOLES_MIN_INTERVAL: '100' } as Record<string, string>;
  const asStarted = (name: string) => defaults[name] ?? null;
  /** What a command re-executed with the options prints: each option's default, then its value (or the operator's, twice). */
  const reexecuted = (own: Record<string, string> = {}, options: Record<string, string> = every) =>
    Object.fromEntries(names.map((name) => [name, own[name] !== undefined ? [own[name], own[name]] : [asStarted(name), options[name] ?? asStarted(name)]]));
  const notReexecuted = (own: Record<string, string> = {}) => Object.fromEntries(names.map((name) => [name, [own[name] ?? asStarted(name)]]));
  t.ok(names.every((name) => name.startsWith('MIMALLOC_') ? name in defaults : name.startsWith('BUN_JSC_')), 'every option is one this test can read back');
  const missing = ['--repo', join(dir, 'none'), join(dir, 'none.delta')];
  t.same(started(['delta', 'apply', ...missing]), reexecuted(), 'delta apply: started with the defaults, then re-executed with the options');
  t.same(started(['upgrade', '--sysroot', join(dir, 'none')]), reexecuted(), 'upgrade: the same');
  t.same(started(['install', '--sysroot', join(dir, 'none'), 'pkg']), reexecuted({}, RUNTIME_ENV), 'install: re-executed without the heap sizing of the applying commands');
  t.same(started(['--version']), notReexecuted(), '--version: not re-executed');
  t.same(started(['delta', 'list', '--repo', join(dir, 'none')]), notReexecuted(), 'delta list: not re-executed');
  t.same(started(['delta', 'apply', ...missing], { MIMALLOC_PURGE_DELAY: '50' }), reexecuted({ MIMALLOC_PURGE_DELAY: '50' }), "the operator's MIMALLOC_PURGE_DELAY is kept; the other options are added");
  // Values of the operator's own, each unlike both the binary's and the runtime's default.
  const all = Object.fromEntries(names.map((name) => [name, String(Number(every[name]) * 2 + 1)]));
  t.same(started(['delta', 'apply', ...missing], all), notReexecuted(all), 'all set by the operator: kept, no re-exec');
});

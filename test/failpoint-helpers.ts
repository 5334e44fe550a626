/**
 * The parts of the failpoint enumeration (test/integration/failpoints.test.ts), kept apart so the
 * power-loss replay can run the same commands from the same states and check the same things:
 *   - makeWorld(): one vendor (releases 1, 2, 3 with deltas) and one device per starting state,
 *     made once; a case copies one (copySysroot: `cp -a`, fw_env.config rewritten);
 *   - SCENARIOS: every command that changes state, the state it starts from, and the end state
 *     it must reach when run again after a kill;
 *   - learnFailpoints(): the failpoints a command really passes, with hit counts (LARCH_FAILPOINT_LOG);
 *   - checkDevice(): what must hold after any kill: the boot env names a bootable slot whose
 *     deployment is complete and verified, status works, fsck is clean, /var and local /etc untouched.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Slot, bootloaderChoose, decode } from '../src/bootcount/state.ts';
import { type Failpoint, FAILPOINT_NAMES } from '../src/failpoint.ts';
import { fsck } from '../src/store/fsck.ts';
import { Repo } from '../src/store/repo.ts';
import { readPublicKey } from '../src/store/sign.ts';
import { verifyCommit } from '../src/store/signatures.ts';
import { REF, type Test, type Vendor, copySysroot, vendor as makeVendor } from './device-helpers.ts';
import { type EntrySnapshot, type RunResult, diffSnapshots, larch, larchOk, sh, snapshotTree, tempDir } from './helpers.ts';

/** The states a scenario starts from (each one device, made once). */
export type SetupName = 'fresh' | 'v1' | 'staged' | 'booting' | 'both' | 'garbage' | 'mirror';

export interface Setup {
  /** The sysroot; for 'fresh', a path that does not exist (provision makes it). */
  dev: string;
  /** The slot the device booted (sim-boot's command line), null before provision. */
  booted: Slot | null;
  /** S/var and the booted slot's /etc (the admin's), which no command may change. */
  var: Map<string, EntrySnapshot> | null;
  etc: Map<string, EntrySnapshot> | null;
}

export interface World {
  dir: string;
  vendor: Vendor;
  /** Commit ids of releases 1, 2, 3. */
  commits: { v1: string; v2: string; v3: string };
  setups: Record<SetupName, Setup>;
  /** The release 1 -> 2 delta as one file, for `delta apply`. */
  deltaFile: string;
  /** A tree for `larch commit`. */
  tree: string;
  /** Per commit: a fresh checkout's /usr, /etc and /boot, what a deployment must match. */
  reference: Map<string, { usr: Map<string, EntrySnapshot>; etc: Map<string, EntrySnapshot>; boot: string }>;
}

/** The admin's edits: in the booted /etc before any command, and (finalize) one after the upgrade. */
const ADMIN_EDIT = 'setting2=admin\n';
const LATE_EDIT = 'edited after the upgrade\n';

/** Makes the vendor and every starting state. */
export async function makeWorld(t: Test): Promise<World> {
  const v = await makeVendor(t);
  const v1 = await v.release(1);
  const v2 = await v.release(2, { files: { 'usr/share/doc/v2.txt': 'release 2\n' } });
  const v3 = await v.release(3, { files: { 'usr/share/doc/v3.txt': 'release 3\n' } });
  // upgrade from 1 goes straight to 3: a delta 1 -> 3, in the summary.
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v1, '--to', v3, '--sign-key', `${v.key}.key`]);
  await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`]);
  const dir = tempDir(t, 'larch-failpoints-');
  const deltaFile = join(dir, 'v1-v2.delta');
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v1, '--to', v2, '--sign-key', `${v.key}.key`, '--out', deltaFile]);

  const reference: World['reference'] = new Map();
  for (const c of [v1, v2, v3]) {
    const out = join(dir, `ref-${c.slice(0, 12)}`);
    await larchOk(['checkout', '--repo', v.repo, c, out]);
    reference.set(c, { usr: await snapshotTree(join(out, 'usr')), etc: await snapshotTree(join(out, 'etc')), boot: join(out, 'boot') });
  }

  const at = (name: string) => join(dir, name);
  const snap = async (dev: string, slot: Slot): Promise<Setup> => ({ dev, booted: slot, var: await snapshotTree(join(dev, 'var')), etc: await snapshotTree(join(dev, 'larch/deploy', slot, 'etc')) });
  // v1: provisioned with release 1, booted and confirmed; the admin edited /etc and /var.
  const d1 = at('v1');
  await larchOk(['provision', '--sysroot', d1, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--version', '1', '--bootloader', 'uboot', '--kargs', KARGS]);
  await larchOk(['sim-boot', '--sysroot', d1]);
  const appConf = (dev: string, slot: Slot) => join(dev, 'larch/deploy', slot, 'etc/app.conf');
  writeFileSync(appConf(d1, 'A'), readFileSync(appConf(d1, 'A'), 'utf8').replace('setting2=default\n', ADMIN_EDIT));
  sh(`mkdir -p '${d1}/var/lib/app' && echo 'device data' > '${d1}/var/lib/app/data'`);
  // staged: release 3 staged in B (over the 1 -> 3 delta); then the admin edits /etc again, which finalize carries over.
  const staged = copySysroot(d1, at('staged'));
  await larchOk(['upgrade', '--sysroot', staged]);
  writeFileSync(appConf(staged, 'A'), readFileSync(appConf(staged, 'A'), 'utf8') + LATE_EDIT);
  // booting: the bootloader chose B and spent a try; the kernel is up, boot-check not yet run.
  const booting = copySysroot(staged, at('booting'));
  const bootloader = await larch(['sim-boot', '--sysroot', booting], { env: { LARCH_FAILPOINT: 'sim-boot::after-bootloader' } });
  if (bootloader.signal !== 'SIGKILL') throw new Error(`sim-boot did not stop at sim-boot::after-bootloader: ${bootloader.code} ${bootloader.stderr}`);
  // both: B (release 3) confirmed, A (release 1) the good rollback slot.
  const both = copySysroot(booting, at('both'));
  await larchOk(['boot-check', '--sysroot', both]);
  // garbage: release 1 booted; release 2's objects in the repo, no ref reaching them.
  const garbage = copySysroot(d1, at('garbage'));
  await larchOk(['delta', 'apply', '--repo', join(garbage, 'larch/repo'), '--key', `${v.key}.pub`, deltaFile]);
  // mirror: v1 with a second remote, the vendor's repo under another name and the origin's trust (rebase's start).
  const mirror = copySysroot(d1, at('mirror'));
  await larchOk(['remote', 'add', '--sysroot', mirror, 'mirror', v.url]);

  const tree = join(v.dir, 'v2');
  return {
    dir,
    vendor: v,
    commits: { v1, v2, v3 },
    deltaFile,
    tree,
    reference,
    setups: {
      fresh: { dev: at('never-provisioned'), booted: null, var: null, etc: null },
      v1: await snap(d1, 'A'),
      staged: await snap(staged, 'A'),
      booting: await snap(booting, 'B'),
      both: await snap(both, 'B'),
      garbage: await snap(garbage, 'A'),
      mirror: await snap(mirror, 'A'),
    },
  };
}

export interface Scenario {
  /** The command as the enumeration names it. */
  name: string;
  from: SetupName;
  /** Only the points these match are killed at (every point it passes is still learned and listed). */
  only?: RegExp;
  args(dev: string, w: World): string[];
  /** The end state once the command completed (run again after the kill). */
  done(t: Test, dev: string, w: World, label: string): Promise<void>;
}

const repoOf = (dev: string) => join(dev, 'larch/repo');
/** The board defaults every device here is provisioned with: upgrades and deploys write kernel argument files too. */
const KARGS = 'console=ttyS0 larch.root=LABEL=larch-root quiet';
const KARGS_AFTER = ['console=ttyAMA0', 'larch.root=LABEL=larch-root', 'quiet'];
const envOf = (dev: string) => readEnv(dev);
const sys = (dev: string) => ['--sysroot', dev];

/** Every command that changes state, from the state it is run in. */
export const SCENARIOS: Scenario[] = [
  {
    name: 'provision',
    from: 'fresh',
    args: (dev, w) => ['provision', ...sys(dev), '--repo-url', w.vendor.url, '--ref', REF, '--keys', `${w.vendor.key}.pub`, '--version', '1', '--bootloader', 'uboot', '--kargs', KARGS],
    async done(t, dev, w, label) {
      t.equal(readRecord(dev, 'A')?.commit, w.commits.v1, `${label}: release 1 in slot A`);
      t.match(envOf(dev), { BOOT_ORDER: 'A B', BOOT_A_GOOD: '1' }, `${label}: A good and first`);
    },
  },
  {
    name: 'upgrade',
    from: 'v1',
    args: (dev) => ['upgrade', ...sys(dev)],
    async done(t, dev, w, label) {
      t.equal(readRecord(dev, 'B')?.commit, w.commits.v3, `${label}: release 3 in slot B`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_B_GOOD: '0', BOOT_B_LEFT: /^[1-9]$/ }, `${label}: B staged with tries, first`);
    },
  },
  {
    name: 'rebase',
    from: 'mirror',
    // Until the slot is written, rebase runs upgrade's code (killed at each point above); the
    // points from the slot's ref on, around the config write, are its own.
    only: /^(update::after-download$|update::after-slot-ref|rebase::|bootenv::|update::after-bootenv-write|update::after-last-update)/,
    args: (dev) => ['rebase', 'mirror:os/stable', ...sys(dev)],
    async done(t, dev, w, label) {
      t.match(readRecord(dev, 'B'), { commit: w.commits.v3, origin: { name: 'mirror' } }, `${label}: release 3 from mirror in slot B`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_B_GOOD: '0', BOOT_B_LEFT: /^[1-9]$/ }, `${label}: B staged with tries, first`);
      t.match(JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8')), { following: 'mirror', ref: REF }, `${label}: the device follows mirror`);
    },
  },
  {
    name: 'deploy',
    from: 'v1',
    args: (dev) => ['deploy', '2', ...sys(dev)],
    async done(t, dev, w, label) {
      t.equal(readRecord(dev, 'B')?.commit, w.commits.v2, `${label}: release 2 in slot B`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_B_GOOD: '0', BOOT_B_LEFT: /^[1-9]$/ }, `${label}: B staged with tries, first`);
    },
  },
  {
    name: 'kargs',
    from: 'v1',
    // --replace, not --append: the run again after a kill past the last write changes nothing more.
    args: (dev) => ['kargs', '--replace', 'console=ttyAMA0', ...sys(dev)],
    async done(t, dev, w, label) {
      t.match(readRecord(dev, 'B'), { commit: w.commits.v1, kargs: KARGS_AFTER }, `${label}: release 1 again in slot B, with the new argument`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_B_GOOD: '0', BOOT_B_LEFT: /^[1-9]$/ }, `${label}: B staged with tries, first`);
    },
  },
  {
    // In place on the staged release 3; a kill while B is unbootable cancels that update, so the run again stages release 1 with the argument instead.
    name: 'kargs on a staged update',
    from: 'staged',
    args: (dev) => ['kargs', '--replace', 'console=ttyAMA0', ...sys(dev)],
    async done(t, dev, w, label) {
      const b = readRecord(dev, 'B');
      t.ok(b?.commit === w.commits.v3 || b?.commit === w.commits.v1, `${label}: slot B holds release 3 (changed in place) or 1 (the update was cancelled by the kill)`);
      t.same(b?.kargs, KARGS_AFTER, `${label}: with the new argument`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_B_GOOD: '0', BOOT_B_LEFT: /^[1-9]$/ }, `${label}: B staged with tries, first`);
    },
  },
  {
    name: 'rollback',
    from: 'both',
    args: (dev) => ['rollback', ...sys(dev)],
    async done(t, dev, _w, label) {
      t.match(envOf(dev), { BOOT_ORDER: 'A B', BOOT_A_GOOD: '1', BOOT_LKG: 'A' }, `${label}: A (good) boots next`);
    },
  },
  {
    name: 'finalize',
    from: 'staged',
    args: (dev) => ['finalize', ...sys(dev)],
    async done(t, dev, _w, label) {
      t.ok(readFileSync(join(dev, 'larch/deploy/B/etc/app.conf'), 'utf8').endsWith(LATE_EDIT), `${label}: the edit made after the upgrade is in B's /etc`);
      t.notOk(existsSync(join(dev, 'larch/deploy/B.finalizing')), `${label}: no finalize marker left`);
    },
  },
  {
    name: 'cleanup',
    from: 'both',
    args: (dev) => ['cleanup', '--rollback', ...sys(dev)],
    async done(t, dev, _w, label) {
      t.equal(readRecord(dev, 'A'), null, `${label}: the rollback deployment is gone`);
      t.match(envOf(dev), { BOOT_ORDER: 'B A', BOOT_A_GOOD: '0', BOOT_A_LEFT: '0' }, `${label}: A not bootable`);
    },
  },
  {
    name: 'boot-check',
    from: 'booting',
    args: (dev) => ['boot-check', ...sys(dev)],
    async done(t, dev, _w, label) {
      t.match(envOf(dev), { BOOT_B_GOOD: '1', BOOT_LKG: 'B' }, `${label}: B marked good`);
    },
  },
  {
    name: 'delta apply',
    from: 'v1',
    args: (dev, w) => ['delta', 'apply', '--repo', repoOf(dev), '--key', `${w.vendor.key}.pub`, w.deltaFile],
    async done(t, dev, w, label) {
      t.ok((await verifyCommit(await Repo.open(repoOf(dev)), w.commits.v2, [await readPublicKey(`${w.vendor.key}.pub`)])).valid, `${label}: release 2 is in the repo, verified`);
    },
  },
  {
    name: 'delta generate',
    from: 'v1',
    args: (dev, w) => ['delta', 'generate', '--repo', repoOf(dev), '--to', w.commits.v1, '--unsigned', '--out', join(dev, 'v1.delta')],
    async done(t, dev, w, label) {
      t.ok(existsSync(join(repoOf(dev), 'deltas', `empty-${w.commits.v1}`, 'envelope')), `${label}: the delta is in R/deltas/`);
      t.equal(readFileSync(join(dev, 'v1.delta')).subarray(0, 8).toString(), 'LARCHDLT', `${label}: the --out file is a delta`);
    },
  },
  {
    name: 'commit',
    from: 'v1',
    args: (dev, w) => ['commit', '--repo', repoOf(dev), '-b', 'scratch', '--tree', w.tree, '--version', 'scratch', '--owner', '0:0'],
    async done(t, dev, _w, label) {
      const head = await (await Repo.open(repoOf(dev))).readRef('scratch');
      t.ok(head && (await (await Repo.open(repoOf(dev))).readCommit(head)).version === 'scratch', `${label}: branch scratch names the new commit`);
    },
  },
  {
    name: 'prune',
    from: 'garbage',
    args: (dev) => ['prune', '--repo', repoOf(dev)],
    async done(t, dev, w, label) {
      t.notOk(await (await Repo.open(repoOf(dev))).hasObject('commit', w.commits.v2), `${label}: release 2 (no ref) is gone`);
    },
  },
];

/** Runs a scenario's command on dev with extra environment (LARCH_FAILPOINT...). */
export function runScenario(s: Scenario, dev: string, w: World, env: Record<string, string> = {}): Promise<RunResult> {
  return larch(s.args(dev, w), { env: { ...CASE_ENV, ...env } });
}

/**
 * fsync of each file larch writes instead of syncfs of the whole filesystem (LARCH_SYNC=file,
 * src/_durable.ts): a kill -9 leaves the page cache, so this changes no outcome, and a
 * syncfs waits for every other writer's dirty pages on a shared machine.
 */
export const CASE_ENV = { LARCH_SYNC: 'file' };

/** The failpoints the command passes from its starting state, in order of first pass, with hit counts. */
export async function learnFailpoints(s: Scenario, w: World, scratch: string): Promise<Map<Failpoint, number>> {
  const dev = join(scratch, `learn-${s.name.replace(/\W/g, '-')}`);
  if (s.from !== 'fresh') copySysroot(w.setups[s.from].dev, dev);
  const log = `${dev}.failpoints`;
  writeFileSync(log, '');
  const r = await runScenario(s, dev, w, { LARCH_FAILPOINT_LOG: log });
  if (r.code !== 0) throw new Error(`${s.name} failed from ${s.from}: ${r.stderr}`);
  const counts = new Map<Failpoint, number>();
  for (const name of readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
    if (!(FAILPOINT_NAMES as string[]).includes(name)) throw new Error(`${s.name} logged an unknown failpoint '${name}'`);
    counts.set(name as Failpoint, (counts.get(name as Failpoint) ?? 0) + 1);
  }
  sh(`rm -rf '${dev}' '${log}'`);
  return counts;
}

/** The env as U-Boot's own tool reads it (fw_printenv, libubootenv). */
export function readEnv(dev: string): Record<string, string> {
  const text = sh(`fw_printenv -c '${join(dev, 'boot/fw_env.config')}'`);
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

function readRecord(dev: string, slot: Slot): { commit: string; boot_files: string[]; boot_aliases?: Record<string, string>; kargs?: string[] } | null {
  const path = join(dev, 'larch/deploy', `${slot}.json`);
  return existsSync(path) && existsSync(join(dev, 'larch/deploy', slot)) ? JSON.parse(readFileSync(path, 'utf8')) : null;
}

/**
 * What must hold on a device after a kill at any point (the device may also not be provisioned
 * yet when the command was provision: then status says so and nothing else is checked).
 */
export async function checkDevice(t: Test, dev: string, w: World, setup: Setup, label: string): Promise<void> {
  if (setup.booted === null && !existsSync(join(dev, 'larch'))) {
    const s = await larch(['status', ...sys(dev), '--json']);
    t.equal(s.json?.error?.code, 'NOT_FOUND', `${label}: not provisioned, and status says so`);
    return;
  }
  // The slot the bootloader boots next, and the one it falls back to, as board/ scripts decide.
  const vars = new Map(Object.entries(readEnv(dev)));
  const lkgMarker: Slot = existsSync(join(dev, 'boot/larch-lkg-B')) ? 'B' : 'A';
  const choice = bootloaderChoose(vars, { lkgMarker });
  const state = decode(vars, { lkgMarker });
  t.notOk(choice.rescue, `${label}: the bootloader boots slot ${choice.slot}, not in rescue`);
  const slots = [...new Set(state.slots[choice.slot].good ? [choice.slot] : [choice.slot, state.lastGood])];
  if (!state.slots[choice.slot].good) t.ok(state.slots[state.lastGood].good && state.lastGood !== choice.slot, `${label}: unconfirmed slot ${choice.slot} falls back to a good slot (${state.lastGood})`);

  // status through the CLI; fsck is larch's own (src/store/fsck.ts, what `larch fsck` runs), in
  // this process: a process start per check was most of the test's time.
  const [status, checked] = await Promise.all([
    larch(['status', ...sys(dev), '--json']),
    Repo.open(repoOf(dev)).then(fsck),
    ...slots.map((slot) => checkDeployment(t, dev, w, slot, `${label}: slot ${slot}`)),
  ]);
  t.equal(status.code, 0, `${label}: status works (${status.stderr.trim()})`);
  t.ok(status.json && typeof status.json === 'object' && !status.json.error, `${label}: status --json is a status`);
  t.same(checked.problems, [], `${label}: fsck of the device repo is clean`);

  if (setup.var) t.same(diffSnapshots(setup.var, await snapshotTree(join(dev, 'var'))), [], `${label}: /var untouched`);
  if (setup.etc) t.same(diffSnapshots(setup.etc, await snapshotTree(join(dev, 'larch/deploy', setup.booted!, 'etc'))), [], `${label}: the local /etc (slot ${setup.booted}) untouched`);
}

/** A slot the bootloader may boot: a complete deployment of a verified commit, its tree and boot files the commit's. */
async function checkDeployment(t: Test, dev: string, w: World, slot: Slot, label: string): Promise<void> {
  const record = readRecord(dev, slot);
  if (!t.ok(record, `${label}: holds a deployment`)) return;
  const ref = w.reference.get(record!.commit);
  if (!t.ok(ref, `${label}: holds a vendor release (${record!.commit.slice(0, 12)})`)) return;
  // larch's own verification, in this process (a process per check doubled the test's time).
  const verified = await verifyCommit(await Repo.open(repoOf(dev)), record!.commit, [await readPublicKey(`${w.vendor.key}.pub`)]);
  t.ok(verified.valid, `${label}: its commit is in the repo, signed by the vendor`);
  const deployed = join(dev, 'larch/deploy', slot);
  const usr = await snapshotTree(join(deployed, 'usr'));
  for (const k of [...usr.keys()]) {
    const path = Buffer.from(k, 'hex').toString('latin1');
    if (path === 'etc' || path.startsWith('etc/')) usr.delete(k);
  }
  t.same(diffSnapshots(ref!.usr, usr), [], `${label}: /usr is the commit's`);
  t.same(diffSnapshots(ref!.etc, await snapshotTree(join(deployed, 'usr/etc'))), [], `${label}: its vendor /etc is the commit's`);
  // finalize swaps /etc with two renames; between them boot-check (run by the initramfs before
  // init) takes .etc.new, else .etc.old (recoverEtcSwap).
  t.ok(['etc', '.etc.new', '.etc.old'].some((e) => existsSync(join(deployed, e))), `${label}: has an /etc, or one boot-check puts back`);
  for (const name of record!.boot_files) {
    const source = record!.boot_aliases?.[name] ?? name;
    const want = readFileSync(join(ref!.boot, source));
    t.ok(existsSync(join(dev, 'boot', slot, name)) && readFileSync(join(dev, 'boot', slot, name)).equals(want), `${label}: boot file ${name} is the commit's`);
  }
}

/**
 * The systemd-boot backend (issue 19, stage 3) through the Bun binary on plain sysroots: S/boot is
 * the ESP, the boot state is the names of the BLS entries in S/boot/loader/entries, and sim-boot
 * does what systemd-boot does with them (bls.ts blsChoose: the first entry in its order boots, a
 * counted one is renamed one try down). So every step below is checked on the files systemd-boot
 * would read: the entry names (tries), the `options` line (the kernel command line), the rescue
 * entry (the last known good slot), and `larch status` reading them back.
 */
import t from 'tap';
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, copySysroot, expectFail, status, vendor } from '../device-helpers.ts';
import { larch, larchOk, tempDir } from '../helpers.ts';

const DEFAULTS = 'console=ttyS0,115200 larch.root=LABEL=larch-root';

async function device(t: Test, v: Vendor): Promise<string> {
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'systemd-boot', '--kargs', DEFAULTS]);
  return dev;
}

const entries = (dev: string) => readdirSync(join(dev, 'boot/loader/entries')).filter((n) => !n.startsWith('.')).sort();
const entry = (dev: string, name: string) => readFileSync(join(dev, 'boot/loader/entries', name), 'utf8');
const cmdline = (dev: string) => readFileSync(join(dev, 'larch/sim/cmdline'), 'utf8').trim();
const simBoot = async (dev: string, ...args: string[]) => (await larchOk(['sim-boot', '--sysroot', dev, '--json', ...args])).json;

/** A device booted on release 1 (slot A) with release 2 staged in B, as `larch upgrade` leaves it. */
async function upgradeStaged(t: Test): Promise<string> {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  await simBoot(dev);
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  return dev;
}

t.test('provision --bootloader systemd-boot: loader.conf, slot A good, the rescue entry; config and status', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  t.same(entries(dev), ['larch-a.conf', 'larch-rescue.conf'], 'A good (no counter) and the rescue entry; no entry for the empty B');
  t.match(readFileSync(join(dev, 'boot/loader/loader.conf'), 'utf8'), /^timeout 0$/m);
  t.notMatch(readFileSync(join(dev, 'boot/loader/loader.conf'), 'utf8'), /^default/m, 'never a default: it would ignore tries');
  t.match(entry(dev, 'larch-a.conf'), new RegExp(`^linux /A/vmlinuz\n(.|\n)*^options ${DEFAULTS} larch\\.slot=A$`, 'm'), "A's entry: its kernel and its arguments");
  t.match(entry(dev, 'larch-rescue.conf'), /^version 0$(.|\n)*larch\.slot=A larch\.rescue=1$/m, 'the rescue entry boots A');
  t.equal(JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8')).bootloader, 'systemd-boot');
  const s = await status(dev);
  t.match(s, { bootloader: 'systemd-boot', boot_env: 'ok', boot_env_detail: null }, 'status names the backend; nothing odd');
  writeFileSync(join(dev, 'boot/loader/entries/debian.conf'), 'title Debian\nlinux /vmlinuz\n');
  writeFileSync(join(dev, 'boot/loader/entries/larch-b+3.conf'), 'half');
  const odd = await status(dev);
  t.match(odd.boot_env_detail?.message, /debian\.conf.*not larch's|not larch's.*debian\.conf/, 'a foreign entry is named (it may sort first)');
  t.match(odd.boot_env_detail?.message, /larch-b\+3\.conf is not an entry larch wrote/, 'a damaged entry of larch is named');
  t.same(odd.boot.slots.B, { good: false, tries_left: 0, deployed: false }, 'and read as not bootable');
  rmSync(join(dev, 'boot/loader/entries/larch-b+3.conf'));
  rmSync(join(dev, 'boot/loader/entries/debian.conf'));
  const r = await larch(['provision', '--sysroot', join(tempDir(t), 'x'), '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'systemd-boot', '--fw-env-config', '/dev/null', '--json']);
  expectFail(t, r, 'USAGE', '--fw-env-config with systemd-boot');
  const bad = await larch(['provision', '--sysroot', join(tempDir(t), 'y'), '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'efi', '--json']);
  expectFail(t, bad, 'USAGE', 'an unknown bootloader');
  t.match(bad.json.error.message, /uboot, grub or systemd-boot/);
});

t.test('upgrade, tries spent by renames, fallback, upgrade again, mark-good, kargs, rollback', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  t.match(await simBoot(dev), { slot: 'A', wrote: false, check: { outcome: 'already-good' } }, 'the first boot: A is good (provision), no rename');
  t.equal(cmdline(dev), `${DEFAULTS} larch.slot=A`, "the command line is A's options line");

  // An upgrade that never gets healthy: B's tries go by systemd-boot's renames, then A.
  await v.release(2);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.same(entries(dev), ['larch-a.conf', 'larch-b+3.conf', 'larch-rescue.conf'], 'B staged with 3 tries');
  t.match(entry(dev, 'larch-b+3.conf'), /^version 2$/m, 'above A (version 1): B first');
  t.match((await status(dev)).pending, { slot: 'B', version: '2', tries_left: 3 });
  t.match(await simBoot(dev, '--unhealthy'), { slot: 'B', wrote: true, check: { outcome: 'retry' } });
  t.same(entries(dev), ['larch-a.conf', 'larch-b+2-1.conf', 'larch-rescue.conf'], 'one try: renamed as systemd-boot renames');
  t.match((await status(dev)).boot.slots.B, { good: false, tries_left: 2 }, 'larch reads the count systemd-boot left');
  await simBoot(dev, '--unhealthy');
  await simBoot(dev, '--unhealthy');
  t.same(entries(dev), ['larch-a.conf', 'larch-b+0-3.conf', 'larch-rescue.conf'], 'B has no tries left');
  t.match(await simBoot(dev), { slot: 'A', wrote: false, check: { fell_back: true, from: 'B' } }, 'A boots: the fallback is seen');
  t.same(entries(dev), ['larch-a.conf', 'larch-b+0-3.conf', 'larch-rescue.conf'], 'the bad entry is left as it is, its DONE count kept');
  t.match(entry(dev, 'larch-a.conf'), /^version 3$/m, 'the fallback recorded: A above B again');

  // Another upgrade, with a kargs change staged in place, then healthy: mark-good strips the counter.
  await v.release(3);
  await larchOk(['upgrade', '--sysroot', dev]);
  t.same(entries(dev), ['larch-a.conf', 'larch-b+3.conf', 'larch-rescue.conf'], "the old bad entry removed, the new one written");
  const k = (await larchOk(['kargs', '--sysroot', dev, '--append', 'quiet', '--json'])).json;
  t.match(k, { result: 'changed-staged', slot: 'B' });
  t.match(entry(dev, 'larch-b+3.conf'), new RegExp(`^options ${DEFAULTS} quiet larch\\.slot=B$`, 'm'), "the in-place change rewrote B's entry with its new arguments");
  t.match(await simBoot(dev), { slot: 'B', wrote: true, check: { outcome: 'confirmed' } });
  t.equal(cmdline(dev), `${DEFAULTS} quiet larch.slot=B`, 'the kernel gets the changed arguments');
  t.same(entries(dev), ['larch-a+0.conf', 'larch-b.conf', 'larch-rescue.conf'], 'mark-good: larch-b+2-1.conf -> larch-b.conf, as systemd-bless-boot good; A (release 1) parked below the raised floor');
  t.match(readFileSync(join(dev, 'boot/loader/larch.env'), 'latin1'), /^BOOT_A_PARKED=good$/m, "A's own state kept in loader/larch.env");
  t.same((await status(dev)).boot.slots.A, { good: true, tries_left: 0, deployed: true }, 'larch reads the parked A as good (rollback may lower the floor to it)');
  t.match(entry(dev, 'larch-rescue.conf'), /larch\.slot=B larch\.rescue=1$/m, 'the rescue entry follows the last known good slot');
  let s = await status(dev);
  t.match(s, { booted: { slot: 'B', version: '3', good: true, kargs: [...DEFAULTS.split(' '), 'quiet'] }, rollback: { slot: 'A', version: '1', kargs: DEFAULTS.split(' ') } }, 'status: kargs per deployment');

  // larch kargs on the booted deployment: a new deployment in A; rollback cancels it; rollback to A.
  t.match((await larchOk(['kargs', '--sysroot', dev, '--delete', 'quiet', '--append', 'loglevel=4', '--json'])).json, { result: 'staged', slot: 'A' });
  t.same(entries(dev), ['larch-a+3.conf', 'larch-b.conf', 'larch-rescue.conf']);
  t.match(entry(dev, 'larch-a+3.conf'), new RegExp(`^options ${DEFAULTS} loglevel=4 larch\\.slot=A$`, 'm'));
  await larchOk(['rollback', '--sysroot', dev]);
  t.match(await simBoot(dev), { slot: 'B', wrote: false }, 'the cancelled update does not boot');
  t.same(entries(dev), ['larch-a+0.conf', 'larch-b.conf', 'larch-rescue.conf'], 'cancelled: parked at +0');
  s = await status(dev);
  t.equal(s.booted.slot, 'B');
});

t.test('systemd-bless-boot good before boot-check: larch reads it good and moves the rescue entry', async (t) => {
  const dev = await upgradeStaged(t);
  // What systemd-boot and then systemd-bless-boot good do before larch's boot-check runs.
  const dir = join(dev, 'boot/loader/entries');
  renameSync(join(dir, 'larch-b+3.conf'), join(dir, 'larch-b.conf'));
  await larchOk(['sim-boot', '--sysroot', dev, '--json']);
  t.same(entries(dev), ['larch-a+0.conf', 'larch-b.conf', 'larch-rescue.conf'], 'a good entry boots with no rename (A parked below the floor the confirmation raised)');
  const s = await status(dev);
  t.match(s.booted, { slot: 'B', good: true }, 'the blessed entry is good to larch');
  t.match(entry(dev, 'larch-rescue.conf'), /larch\.slot=B larch\.rescue=1$/m, "boot-check moved the rescue entry to B, as its own mark-good would");
  // Rollback to the parked A lowers the floor (an operator's act): its entry is made anew, good.
  await larchOk(['rollback', '--sysroot', dev]);
  t.same(entries(dev), ['larch-a.conf', 'larch-b.conf', 'larch-rescue.conf'], 'A unparked: good again, and first');
  t.match(await simBoot(dev), { slot: 'A', wrote: false });
  t.equal(cmdline(dev), `${DEFAULTS} larch.slot=A`, "A boots with its own arguments");
});

t.test('larch bootenv --systemd-boot: the entries read and written as the boot variables, as the agent writes them', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const esp = join(dev, 'boot');
  const lock = ['--lock', join(dev, 'bls.lock')];
  const listed = (await larchOk(['bootenv', 'list', '--systemd-boot', esp, ...lock, '--json'])).json;
  t.match(listed, { source: /^systemd-boot entries '.*loader\/entries'$/, vars: { BOOT_ORDER: 'A B', BOOT_A_GOOD: '1', BOOT_B_GOOD: '0', BOOT_LKG: 'A' } });
  t.equal((await larchOk(['bootenv', 'get', 'BOOT_A_GOOD', '--systemd-boot', esp, ...lock])).stdout, '1\n');
  // Unconfirmed with 3 tries: the counter in the name, nothing else moved.
  const set = (await larchOk(['bootenv', 'set', 'BOOT_A_GOOD=0', 'BOOT_A_LEFT=3', '--systemd-boot', esp, ...lock, '--json'])).json;
  t.match(set, { changed: true, vars: { BOOT_A_GOOD: '0', BOOT_A_LEFT: '3' } });
  t.same(entries(dev), ['larch-a+3.conf', 'larch-rescue.conf']);
  t.match(await status(dev), { boot: { slots: { A: { good: false, tries_left: 3 } } } }, 'the agent reads what bootenv wrote');
  // A variable names cannot hold goes to loader/larch.env.
  await larchOk(['bootenv', 'set', 'BOOT_RELEASES=2026.1', '--systemd-boot', esp, ...lock]);
  t.match(readFileSync(join(esp, 'loader/larch.env'), 'latin1'), /^# GRUB Environment Block\n(.|\n)*BOOT_RELEASES=2026\.1\n/);
  t.same(entries(dev), ['larch-a+3.conf', 'larch-rescue.conf'], 'no entry renamed by it');
});

t.test('both slots bad: the rescue entry boots the last known good slot, with no write', async (t) => {
  const dev = await upgradeStaged(t);
  await larchOk(['mark-bad', '--sysroot', dev, '--slot', 'B']);
  await larchOk(['mark-bad', '--sysroot', dev, '--slot', 'A', '--force']);
  const before = entries(dev);
  t.same(before, ['larch-a+0.conf', 'larch-b+0.conf', 'larch-rescue.conf']);
  // Unhealthy: boot-check stays in rescue and writes nothing either (a healthy one would mark A good).
  const r = await simBoot(dev, '--unhealthy');
  t.match(r, { slot: 'A', rescue: true, wrote: false, check: { outcome: 'both-bad', reboot: false } }, 'the rescue entry');
  t.match((await status(dev)).boot, { rescue: true, last_good: 'A' }, 'status: rescue, read from the names');
  t.match(cmdline(dev), /larch\.slot=A larch\.rescue=1$/);
  t.same(entries(dev), before, 'no rename (greenboot#26: no write on every all-bad boot)');
  t.match(await simBoot(dev), { slot: 'A', rescue: true, check: { outcome: 'confirmed' } }, 'healthy in rescue: marked good');
  t.same(entries(dev), ['larch-a.conf', 'larch-b+0.conf', 'larch-rescue.conf'], "A's entry renamed good: the device leaves rescue");
});

/**
 * A power cut at every hit of every systemd-boot failpoint (bootenv::after-bls-*, one per file
 * operation) of upgrade, the boot that confirms it, and rollback: the device still boots a
 * complete deployment (sim-boot), never the half-written slot, status reads it, and the command
 * run again reaches its end. The pure enumeration of every cut of every plan is in
 * test/unit/bootcount/bls.test.ts; this is the same on the disk, through the binary.
 */
t.test('a kill after any file operation of a systemd-boot write leaves a device that boots and recovers', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const base = await device(t, v);
  await simBoot(base);
  await v.release(2);
  const staged = copySysroot(base, join(tempDir(t), 'staged'));
  await larchOk(['upgrade', '--sysroot', staged]);
  const steps: { name: string; from: string; args: string[]; slotAfter: 'A' | 'B' }[] = [
    { name: 'upgrade', from: base, args: ['upgrade'], slotAfter: 'A' },
    { name: 'sim-boot (mark-good)', from: staged, args: ['sim-boot'], slotAfter: 'B' },
    { name: 'rollback of the staged update', from: staged, args: ['rollback'], slotAfter: 'A' },
  ];
  const scratch = tempDir(t);
  let kills = 0;
  for (const step of steps) {
    const log = join(scratch, `${kills}-log`);
    const learn = copySysroot(step.from, join(scratch, `${kills}-learn`));
    await larchOk([...step.args, '--sysroot', learn], { env: { LARCH_FAILPOINT_LOG: log } });
    const hits = new Map<string, number>();
    for (const p of readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('bootenv::after-bls-'))) hits.set(p, (hits.get(p) ?? 0) + 1);
    t.ok(hits.size > 0, `${step.name} passes ${[...hits].map(([p, n]) => `${p} x${n}`).join(', ')}`);
    for (const [point, n] of hits) {
      for (let hit = 1; hit <= n; hit++) {
        const at = `${step.name} killed at ${point}:${hit}`;
        const dev = copySysroot(step.from, join(scratch, `${kills++}`));
        const killed = await larch([...step.args, '--sysroot', dev], { env: { LARCH_FAILPOINT: `${point}:${hit}` } });
        t.equal(killed.signal, 'SIGKILL', `${at}: killed there`);
        const boot = await larch(['sim-boot', '--sysroot', dev, '--json']);
        t.equal(boot.code, 0, `${at}: the device boots (${boot.stderr.trim()})`);
        const s = await status(dev);
        const booted = s.booted;
        t.ok(booted && booted.commit, `${at}: it boots a deployment (slot ${booted?.slot})`);
        // The staged slot boots only once its deployment is complete (its record is written before
        // the entry that makes it bootable): then it is version 2, never a half-written slot.
        if (booted.slot === 'B') t.equal(booted.version, '2', `${at}: B boots only as the complete version 2`);
        if (step.name.startsWith('rollback')) t.equal(booted.slot, 'A', `${at}: the cancelled update does not boot`);
        if (step.name.startsWith('sim-boot')) t.equal(booted.slot, 'B', `${at}: the confirmed slot keeps booting`);
        // Run again: upgrade reaches staged (or finds it staged); a rollback that took effect is
        // refused as any second rollback of a cancelled update is; sim-boot's state is read by status.
        const again = await larch([...(step.name === 'upgrade' ? step.args : ['status']), '--sysroot', dev, '--json']);
        t.equal(again.code, 0, `${at}: run again (${again.stderr.trim()})`);
        rmSync(dev, { recursive: true, force: true });
      }
    }
  }
  t.ok(kills >= 8, `${kills} kills`);
});

t.test('slot entries lost (the ESP rewritten without them): the rescue entry boots, boot-check writes the slot entry again', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  await simBoot(dev);
  rmSync(join(dev, 'boot/loader/entries/larch-a.conf'));
  t.match((await status(dev)).boot, { rescue: true, last_good: 'A' }, 'read as rescue: no slot entry');
  t.match(await simBoot(dev), { slot: 'A', rescue: true, wrote: false, check: { outcome: 'confirmed' } }, "systemd-boot boots the rescue entry; A is healthy");
  t.same(entries(dev), ['larch-a.conf', 'larch-rescue.conf'], "A's entry made again from A/entry.conf");
  t.match(entry(dev, 'larch-a.conf'), new RegExp(`^options ${DEFAULTS} larch\\.slot=A$`, 'm'), 'with its arguments');
  rmSync(join(dev, 'boot/loader/entries'), { recursive: true });
  const r = await larch(['sim-boot', '--sysroot', dev, '--json']);
  expectFail(t, r, 'ENV_CORRUPT', 'no entry at all: nothing systemd-boot can boot');
});

/**
 * The harness's pure parts: console cleaning, JSON cut out of console output, the real-board
 * config, cut moments, and the boot table through bootloaderChoose (the prediction the
 * scenarios check the boards against).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Board } from './lib/board.ts';
import { Console, cleanConsole } from './lib/console.ts';
import { ROOT } from './lib/fixture.ts';
import { BOOTLOADER_LINE, Shell, lastJson, parseBootCheck, parseBootLine } from './lib/device.ts';
import { compareEspWithStatus, parseEspListing } from './lib/esp-check.ts';
import { parseBoardConfig } from './lib/config.ts';
import { labProfile } from './lib/runner.ts';
import { cutMoments } from './scenarios/power-cut.ts';
import { boardBoot, caseStartVars, compareBoots, compareEnv, compareSlots, larchVars, loadBootCases, predictBlsBoots, predictBoots } from './lib/boot-table.ts';
import { envTarget, nativeListCommand, parseEnvLines, shQuote, writeEnvCommand } from './lib/shell-env.ts';
import { fatEnvConfig } from '../src/agent/boot.ts';
import { BIN, missingTools, testNeeding } from '../test/helpers.ts';

t.test('console cleaning', async (t) => {
  t.equal(cleanConsole('\x1b[H\x1b[J\x1b[1;1Hlarch: slot=A rescue=0 wrote=0\r\r\n'), '\nlarch: slot=A rescue=0 wrote=0\n', 'a screen clear starts a line');
  // The old boot's unfinished line, delivered late, then the new boot's GRUB: the line still matches.
  t.ok(BOOTLOADER_LINE.test(cleanConsole('larch.boot=LABEL=LARCHBOOT\x1b[H\x1b[J\x1b[1;1Hlarch: slot=B rescue=1 wrote=1\r\n')), "after a screen clear the bootloader's line starts a line");
  t.equal(cleanConsole('/ # \x1b[6nls\r\n'), '/ # ls\n');
});

t.test("the bootloader's line: from U-Boot's and GRUB's scripts, and from the initramfs on systemd-boot", async (t) => {
  for (const line of ['larch: slot=B rescue=0 wrote=1\n', 'larch: systemd-boot: slot=B rescue=0 wrote=1\n']) {
    const m = BOOTLOADER_LINE.exec(`noise\n${line}`);
    t.ok(m, line);
    t.same(parseBootLine(m!), { slot: 'B', rescue: false, wrote: true });
  }
  t.equal(BOOTLOADER_LINE.exec('larch: grub: slot=B rescue=0 wrote=1\n'), null, 'no other prefix');
});

t.test("systemd-boot's entries against larch status (read the harness's own way)", async (t) => {
  const boot = (a: [boolean, number], b: [boolean, number], order = ['A', 'B'], lastGood = 'A') => ({ order, last_good: lastGood, rescue: false, slots: { A: { good: a[0], tries_left: a[1] }, B: { good: b[0], tries_left: b[1] } } });
  // B staged with 3 tries, one spent by systemd-boot; A good and last known good.
  const staged = parseEspListing('larch-a.conf\tversion 1\nlarch-b+2-1.conf\tversion 2\nlarch-rescue.conf\tversion 0\nrescue\toptions console=ttyS0 larch.slot=A larch.rescue=1\n');
  t.same(staged.slots.B, { file: 'larch-b+2-1.conf', left: 2, done: 1, version: '2' });
  t.same(compareEspWithStatus(staged, boot([true, 0], [false, 2], ['B', 'A'])), []);
  t.match(compareEspWithStatus(staged, boot([true, 0], [false, 3], ['B', 'A'])), [/slot B: the ESP has larch-b\+2-1\.conf \(2 tries left\), larch status says not good, 3 tries left/]);
  t.match(compareEspWithStatus(staged, boot([true, 0], [false, 2], ['A', 'B'])), [/versions \(A 1, B 2\) put B first, larch status's order is A B/]);
  t.match(compareEspWithStatus(staged, boot([true, 0], [false, 2], ['B', 'A'], 'B')), [/the rescue entry boots A, larch status's last_good is B/]);
  // B spent: +0 is not bootable; a slot with no entry neither.
  const spent = parseEspListing('larch-a.conf\tversion 1\nlarch-b+0-3.conf\tversion 2\nrescue\toptions larch.slot=A larch.rescue=1\n');
  t.same(compareEspWithStatus(spent, boot([true, 0], [false, 0], ['B', 'A'])), []);
  t.same(compareEspWithStatus(parseEspListing('larch-a.conf\tversion 1\nrescue\toptions larch.slot=A\n'), boot([true, 0], [false, 0])), []);
  // Parked below the release floor: +0 on the ESP, larch's own state in larch.env.
  const parked = parseEspListing('larch-a+0.conf\tversion 1\nlarch-b.conf\tversion 2\nrescue\toptions larch.slot=B\nparked\tBOOT_A_PARKED=good\n');
  t.same(compareEspWithStatus(parked, boot([true, 0], [true, 0], ['B', 'A'], 'B')), []);
  t.match(parseEspListing('larch-a.conf\tversion 1\nlarch-a+3.conf\tversion 2\nlarch-x.conf\t\n').problems, [/two entries for slot A/, /an entry larch does not write: larch-x\.conf/]);
  t.match(compareEspWithStatus(parseEspListing('larch-a.conf\tversion 1\n'), boot([true, 0], [false, 0])), ['no rescue entry on the ESP']);
});

t.test('the table on systemd-boot boards: its systemd_boot fields, blsChoose as the prediction, slots compared decoded', async (t) => {
  const rescue = loadBootCases(ROOT).find((c) => c.name === 'both-bad-rescue')!;
  t.same(boardBoot(rescue.boots[0], 'systemd-boot'), { ...rescue.boots[0], ...rescue.boots[0].systemd_boot }, 'systemd-boot: the row with its systemd_boot fields');
  t.equal(boardBoot(rescue.boots[0], 'grub'), rescue.boots[0], 'other bootloaders: the row as it is');
  const entry = (slot: string, version: number, extra = '') => `title larch ${slot}\nsort-key larch\nversion ${version}\nlinux /${slot}/vmlinuz\noptions larch.slot=${slot}${extra}\n`;
  // B staged with 2 tries over a good A: two counted boots of B, then A with no write.
  const files = new Map([['larch-a.conf', entry('A', 1)], ['larch-b+2.conf', entry('B', 2)], ['larch-rescue.conf', entry('A', 0, ' larch.rescue=1')]]);
  t.same(predictBlsBoots(files, 3), [{ slot: 'B', rescue: false, wrote: true }, { slot: 'B', rescue: false, wrote: true }, { slot: 'A', rescue: false, wrote: false }]);
  t.same(compareSlots({ BOOT_A_GOOD: '1', BOOT_A_LEFT: '0', BOOT_LKG: 'A' }, { BOOT_A_GOOD: '1', BOOT_LKG: 'A', BOOT_RESCUE: '0' }), [], 'the same slots, spelled differently');
  t.match(compareSlots({ BOOT_B_GOOD: '0', BOOT_B_LEFT: '2' }, { BOOT_B_GOOD: '0', BOOT_B_LEFT: '3' }), [/slot B .*"triesLeft":2.*expected .*"triesLeft":3/]);
});

t.test('JSON from console output', async (t) => {
  t.same(lastJson('{\n "a": 1\n}\n'), { a: 1 });
  t.same(lastJson('[  12.3] virtio_net ...\n{"a": {"b": [1, 2]}}\n'), { a: { b: [1, 2] } });
  t.same(lastJson('noise\n[\n {"e": 1},\n {"e": 2}\n]\n'), [{ e: 1 }, { e: 2 }]);
  t.equal(lastJson('no json here'), null);
  t.equal(parseBootCheck('{   "slot": "A",   "reboot": true } ').slot, 'A');
  t.throws(() => parseBootCheck('larch: error'), /printed no JSON/);
});

t.test('real-board config', async (t) => {
  const good = `name = "g1"\nbootloader = "uboot"\nprofile = "qemu-arm64-uboot"\nserver_host = "192.168.7.1"\n[serial]\ndevice = "/dev/ttyUSB0"\n[power]\non = "relay 1"\noff = "relay 0"\n[flash]\ncommand = "dd if={image} of=/dev/sdz"\n`;
  const c = parseBoardConfig(good, 'g1.toml');
  t.equal(c.profile, 'qemu-arm64-uboot');
  t.equal(c.definition, undefined, 'the profile\'s own definition, images/PROFILE.toml');
  t.equal(parseBoardConfig(good.replace('profile =', 'image_board ='), 'g1.toml').profile, 'qemu-arm64-uboot', 'image_board: the older name');
  t.throws(() => parseBoardConfig(good.replace('profile = "qemu-arm64-uboot"', 'profile = "a"\nimage_board = "b"'), 'g1.toml'), /field 'image_board' is the older name of 'profile'/);
  t.throws(() => parseBoardConfig(good.replace('profile = "qemu-arm64-uboot"\n', ''), 'g1.toml'), /field 'profile' is required/);
  t.equal(parseBoardConfig(good.replace('bootloader = "uboot"\n', ''), 'g1.toml').bootloader, undefined, 'the bootloader: the profile\'s');
  t.equal(c.serial.baud, 115200);
  t.equal(c.listenHost, '0.0.0.0');
  t.equal(c.power.settleMs, 2000);
  t.throws(() => parseBoardConfig(good.replace('{image}', 'x.img'), 'g1.toml'), /g1\.toml: field 'flash\.command' must contain \{image\}/);
  t.throws(() => parseBoardConfig('colour = "red"\n' + good, 'g1.toml'), /field 'colour' is unknown/);
  t.throws(() => parseBoardConfig(good.replace('bootloader = "uboot"', 'bootloader = "lilo"'), 'g1.toml'), /field 'bootloader' must be one of grub, uboot, systemd-boot/);
  t.throws(() => parseBoardConfig(good.replace('[serial]\ndevice = "/dev/ttyUSB0"\n', '[serial]\n'), 'g1.toml'), /field 'serial\.device' is required/);
  // The commented example a lab copies parses as it is, and names a shipped profile (the Raspberry Pi 4's).
  const example = parseBoardConfig(readFileSync(join(ROOT, 'hil-tests', 'lab.example.toml'), 'utf8'), 'lab.example.toml');
  t.match(example, { name: 'pi4-1', profile: 'rpi4-uboot', firmwareDir: 'firmware/rpi4', serial: { baud: 115200 }, power: { settleMs: 3000 } });
  t.match(example.flash, /\{image\}/);
  t.match(labProfile(example, 'lab.example.toml'), { name: 'rpi4-uboot', bootloader: 'uboot', architecture: 'arm64', console: 'ttyS1,115200' });
  // The profile, from board/profiles: its bootloader and architecture; the config may not contradict it.
  t.match(labProfile(c, 'g1.toml'), { name: 'qemu-arm64-uboot', bootloader: 'uboot', architecture: 'arm64' });
  t.throws(() => labProfile({ ...c, bootloader: 'grub' }, 'g1.toml'), /g1\.toml: bootloader 'grub' is not the profile's \('uboot' in .*qemu-arm64-uboot\.toml\)/);
  t.throws(() => labProfile({ ...c, profile: 'pi9' }, 'g1.toml'), /g1\.toml: profile 'pi9' is not a board profile .*known: .*qemu-x86_64-uefi/);
});

t.test('cut moments: one in each share of the span, all different', async (t) => {
  const m = cutMoments(10, 10_000, () => 0.5);
  t.same(m, [500, 1500, 2500, 3500, 4500, 5500, 6500, 7500, 8500, 9500]);
  const r = cutMoments(10, 10_000);
  r.forEach((x, i) => t.ok(x >= i * 1000 && x <= (i + 1) * 1000, `cut ${i} in its share`));
});

t.test('the boot table through bootloaderChoose, as the scenarios predict boards', async (t) => {
  for (const c of loadBootCases(ROOT)) {
    if (typeof c.env !== 'object') continue;
    const p = predictBoots(caseStartVars(c), c.boots.length, { lkgMarker: c.lkg_marker });
    t.same(compareBoots(p.boots, c.boots), [], `${c.name}: boots`);
    const lastWrite = [...c.boots].reverse().find((b) => b.wrote);
    if (lastWrite?.env) t.same(compareEnv(Object.fromEntries(p.env), lastWrite.env), [], `${c.name}: env after`);
  }
  t.match(compareBoots([{ slot: 'A', rescue: false, wrote: false }], [{ slot: 'B', rescue: false, wrote: true }]).join(';'), /boot 1: A, expected B\+write/);
});

t.test('a command ends at its end marker with its newline, not before it comes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'hil-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const console = new Console(join(dir, 'console.log'));
  const sent: string[] = [];
  console.attach(async (line) => void sent.push(line));
  const shell = new Shell({ console } as unknown as Board);
  const done = shell.run('sync');
  await new Promise((r) => setImmediate(r));
  console.push('@@B1@@\n@@E1@@0@@');
  let ended = false;
  void done.then(() => (ended = true));
  // push() matches synchronously and run() goes on in promise jobs: once they have all run (the
  // next macrotask), a command that could end on this input has ended.
  await new Promise((r) => setImmediate(r));
  // A serial console delivers the marker's newline later: the next command sent now would split the line.
  t.equal(ended, false, 'not ended before the newline');
  console.push('\n# ');
  t.same(await done, { code: 0, out: '' });
  // The tty echoed the next command before the shell's prompt: the prompt precedes the start marker.
  const next = shell.run('jq --version');
  await new Promise((r) => setImmediate(r));
  console.push("echo @@B2''@@; jq --version 2>&1; echo @@E2''@@$?@@\n# @@B2@@\njq-1.6\n@@E2@@0@@\n");
  t.same(await next, { code: 0, out: 'jq-1.6' });
  t.equal(sent.length, 2);
});

// The commands the harness sends to the board, run here by sh on a sysroot of the test's own
// with the Bun binary, and read with the real tools (what a board with them would do).
const shellEnvMissing = missingTools(['fw_printenv', 'fw_setenv', 'grub-editenv', BIN]);
testNeeding(t, "the table on a real board: the env written from the board's shell, as fw_printenv and grub-editenv read it", shellEnvMissing.length ? `missing: ${shellEnvMissing.join(', ')}` : false, {}, async (t) => {
  const sysroot = mkdtempSync(join(tmpdir(), 'hil-shell-env-'));
  t.teardown(() => rmSync(sysroot, { recursive: true, force: true }));
  mkdirSync(join(sysroot, 'boot', 'grub'), { recursive: true });
  mkdirSync(join(sysroot, 'larch'));
  const paths = { sysroot, larch: BIN };
  const sh = (command: string) => spawnSync('sh', ['-c', command], { encoding: 'utf8' });
  const env = { BOOT_ORDER: 'B A', BOOT_A_GOOD: '1', BOOT_B_GOOD: '0', BOOT_B_LEFT: '2', BOOT_LKG: 'A' };
  const fwConfig = join(sysroot, 'boot', 'fw_env.config');

  // larch's own env files on the boot partition (the QEMU and Raspberry Pi layouts).
  writeFileSync(fwConfig, fatEnvConfig(join(sysroot, 'boot'), ['larch.env', 'larch-redund.env']));
  const uboot = envTarget('uboot', readFileSync(fwConfig, 'utf8'), paths);
  t.ok(uboot.owned, 'files in the boot partition are larch-owned');
  t.same(uboot.copies.map((c) => c.path), [join(sysroot, 'boot', 'larch.env'), join(sysroot, 'boot', 'larch-redund.env')]);
  const printenv = () => sh(nativeListCommand(uboot).command);
  for (const [what, value] of [['env', env], ['missing', 'missing'], ['corrupt', 'corrupt'], ['env again', env]] as const) {
    const r = sh(writeEnvCommand(uboot, value));
    t.equal(r.status, 0, `U-Boot ${what}: ${r.stderr}`);
    const read = printenv();
    if (typeof value === 'object') t.same(larchVars(parseEnvLines(read.stdout)), value, `U-Boot ${what}: fw_printenv reads the table's variables and only them`);
    else t.not(read.status, 0, `U-Boot ${what}: fw_printenv finds no env (${read.stderr.trim()})`);
    if (value === 'missing') t.notOk(existsSync(uboot.copies[0].path) || existsSync(uboot.copies[1].path), 'missing: both files are gone');
  }

  // A board's own env (raw storage at offsets): larch's variables set and unset, the board's kept.
  const disk = join(sysroot, 'disk.img');
  writeFileSync(disk, Buffer.alloc(0x10000));
  writeFileSync(fwConfig, `${disk} 0x4000 0x2000 0x2000 1\n${disk} 0x8000 0x2000 0x2000 1\n`);
  t.equal(sh(`fw_setenv -c '${fwConfig}' -f - <<'X'\nbootcmd=run larch_boot\nBOOT_A_LEFT=1\nX`).status, 0, 'the board env, by fw_setenv');
  const raw = envTarget('uboot', readFileSync(fwConfig, 'utf8'), paths);
  t.notOk(raw.owned, 'offsets of a disk are the board env');
  t.equal(sh(writeEnvCommand(raw, env)).status, 0);
  const vars = parseEnvLines(printenv().stdout);
  t.same(larchVars(vars), env, "larch's variables are the table's (BOOT_A_LEFT unset)");
  t.equal(vars.get('bootcmd'), 'run larch_boot', "the board's variables are kept");
  t.throws(() => writeEnvCommand(raw, 'corrupt'), /not written on a board's own env storage/, 'damaging a board env is refused');

  // GRUB: grubenv.
  const grub = envTarget('grub', undefined, paths);
  const grubenv = join(sysroot, 'boot', 'grub', 'grubenv');
  for (const [what, value] of [['env', env], ['corrupt', 'corrupt'], ['missing', 'missing'], ['env again', env]] as const) {
    t.equal(sh(writeEnvCommand(grub, value)).status, 0, `GRUB ${what}`);
    const exists = existsSync(grubenv);
    const read = sh(nativeListCommand(grub).command);
    if (typeof value === 'object') t.same(larchVars(parseEnvLines(read.stdout)), value, `GRUB ${what}: grub-editenv lists the table's variables`);
    else if (value === 'corrupt') t.not(read.status, 0, `GRUB corrupt: grub-editenv finds no env (${read.stderr.trim()})`);
    else t.ok(!exists && read.status !== 0 && !existsSync(grubenv), 'GRUB missing: no grubenv, and the listing does not create one');
  }
  t.equal(shQuote("it's"), `'it'\\''s'`);
});

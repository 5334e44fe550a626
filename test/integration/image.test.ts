/**
 * larch image build for the three boards, through the Bun binary: the demo definitions
 * (images/qemu-x86_64-grub.toml, images/qemu-x86_64-uefi.toml, images/qemu-arm64-uboot.toml; real Debian packages, cached in
 * .cache/compose) become disk images built without root; their partition tables (sfdisk -d), boot
 * partitions (mtools) and root partitions (debugfs) hold what docs/images.md says; then each boots
 * under QEMU (TCG, never KVM): GRUB (x86_64, SeaBIOS), systemd-boot (x86_64 Q35, OVMF) or U-Boot
 * (aarch64 virt, Debian's u-boot-qemu) picks slot A, the initramfs mounts the deployment and runs `larch boot-check`, whose
 * result is read from the serial console. Boot times are printed as comments.
 *
 * Outside CI a machine without the tools or the apt indexes skips a board; with CI set nothing is
 * skipped: the test fails naming what is missing (scripts/test-setup.mjs installs it all).
 */
import t from 'tap';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, ROOT, larch, larchOk, missingTools, sh, tempDir, testNeeding } from '../helpers.ts';
import type { Test } from '../device-helpers.ts';

const CACHE = join(ROOT, '.cache', 'compose');
const UBOOT_BIN = '/usr/lib/u-boot/qemu_arm64/u-boot.bin';
const BIN_ARM64 = join(ROOT, 'dist', 'larch-arm64');
const COMMON_TOOLS = ['sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'mtype', 'mdir', 'debugfs', 'cpio'];
const hostArch = sh('dpkg --print-architecture').trim();
const aptArchs = [hostArch, ...sh('dpkg --print-foreign-architectures').split('\n').filter(Boolean)];

let arm64Build: { status: number | null; stderr: string } | undefined;
/** `node scripts/build.mjs linux-arm64` (dist/larch-arm64), once for the file's arm64 tests. */
function buildArm64(): { status: number | null; stderr: string } {
  arm64Build ??= spawnSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs'), 'linux-arm64'], { cwd: ROOT, encoding: 'utf8' });
  return arm64Build;
}

/** Why a board's test cannot run on this machine, or false. */
function cannotRun(tools: string[], files: string[], arch: string): string | false {
  const missing = missingTools([...tools, ...files]);
  if (missing.length > 0) return `missing: ${missing.join(' ')} (node scripts/test-setup.mjs installs them, as root)`;
  if (!aptArchs.includes(arch)) return `no ${arch} apt indexes (dpkg --add-architecture ${arch} && apt-get update; node scripts/test-setup.mjs does it, as root)`;
  return false;
}
const X86_CANNOT = hostArch !== 'amd64' ? 'needs an amd64 host (the guest runs dist/larch, the host build)' : cannotRun([...COMMON_TOOLS, 'qemu-system-x86_64', 'grub-mkimage', 'grub-editenv'], ['/usr/lib/grub/i386-pc/boot.img'], 'amd64');
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const UEFI_CANNOT = hostArch !== 'amd64' ? 'needs an amd64 host (the guest runs dist/larch, the host build)' : cannotRun([...COMMON_TOOLS, 'qemu-system-x86_64', 'mdel'], [OVMF_CODE, OVMF_VARS], 'amd64');
const ARM64_CANNOT = cannotRun([...COMMON_TOOLS, 'qemu-system-aarch64', 'mkimage', 'fw_printenv', 'fw_setenv'], [UBOOT_BIN, join(ROOT, 'node_modules', '.bin', 'bun')], 'arm64');

t.test('image build: usage errors', async (t) => {
  const dir = tempDir(t, 'larch-image-usage-');
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const cases: [string, string[], RegExp][] = [
    ['unknown board', ['image', 'build', 'x.toml', '--board', 'pi9', '--out', join(dir, 'd.img'), '--repo', repo], /unknown board 'pi9' \(known: emmc-arm64-uboot, qemu-arm64-uboot, qemu-x86_64-grub, qemu-x86_64-uefi, rpi4-uboot\)/],
    ['definition and --rev', ['image', 'build', 'x.toml', '--rev', 'HEAD', '--board', 'qemu-x86_64-grub', '--out', join(dir, 'd.img'), '--repo', repo], /either DEFINITION\.toml or --rev/],
    ['neither', ['image', 'build', '--board', 'qemu-x86_64-grub', '--out', join(dir, 'd.img'), '--repo', repo], /either DEFINITION\.toml or --rev/],
    ['no --out', ['image', 'build', 'x.toml', '--board', 'qemu-x86_64-grub', '--repo', repo], /--out/],
  ];
  for (const [name, args, message] of cases) {
    const r = await larch(args, { cwd: dir });
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.stderr, message, `${name}: message`);
  }
});

/** The QEMU command line of a board (TCG only: never -enable-kvm, KVM is broken on CI-like hosts). */
type Machine = { cmd: string; args: (disk: string) => string[] };
// -cpu max: Bun needs AVX2, which TCG has since QEMU 7.2. -no-reboot: a panic ends the run.
const X86: Machine = { cmd: 'qemu-system-x86_64', args: (disk) => ['-machine', 'pc', '-cpu', 'max', '-m', '1024', '-nographic', '-nodefaults', '-serial', 'stdio', '-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none', '-no-reboot'] };
// Debian's U-Boot as the firmware; the disk on virtio-mmio (vda); cortex-a57 (ARMv8.0, as small boards
// have; the Bun binary runs on it, and it is no slower under TCG than -cpu max).
const ARM64: Machine = {
  cmd: 'qemu-system-aarch64',
  args: (disk) => ['-machine', 'virt', '-cpu', 'cortex-a57', '-m', '1024', '-nographic', '-nodefaults', '-serial', 'stdio', '-bios', UBOOT_BIN, '-drive', `if=none,file=${disk},format=raw,id=hd0`, '-device', 'virtio-blk-device,drive=hd0', '-nic', 'none', '-no-reboot'],
};

/** Q35 with OVMF: the firmware's code read-only, its variable store a copy (the board's NVRAM). */
const uefi = (nvram: string): Machine => ({
  cmd: 'qemu-system-x86_64',
  args: (disk) => ['-machine', 'q35', '-cpu', 'max', '-m', '1024', '-nographic', '-nodefaults', '-serial', 'stdio', '-drive', `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,file=${nvram}`, '-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none', '-no-reboot'],
});

interface Boot {
  console: string;
  outcome: Record<string, unknown>;
  /** Power-on to the boot-check line, and to the milestones before it (null: not seen). */
  seconds: number;
  chose: number | null;
  mounted: number | null;
}

/** Boots the image until the init has synced after boot-check; QEMU is stopped (and waited for) before returning. */
async function boot(t: { teardown(fn: () => unknown): void }, machine: Machine, disk: string): Promise<Boot> {
  const started = Date.now();
  const qemu: ChildProcess = spawn(machine.cmd, machine.args(disk), { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => qemu.on('exit', () => resolve()));
  t.teardown(() => {
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  });
  let raw = '';
  const clean = () => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
  const marks: { chose: number | null; mounted: number | null } = { chose: null, mounted: null };
  const since = () => (Date.now() - started) / 1000;
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no boot-check within 150 s; console:\n${clean().slice(-3000)}`)), 150_000);
      const onData = (d: Buffer) => {
        raw += d.toString('latin1');
        const text = clean();
        if (marks.chose === null && /larch: (systemd-boot: )?slot=[AB] /.test(text)) marks.chose = since();
        if (marks.mounted === null && /^larch: init: slot [AB] mounted/m.test(text)) marks.mounted = since();
        const m = /^larch: boot-check: (.*)$/m.exec(text);
        if (m && /larch: init: synced/.test(text)) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      qemu.stdout!.on('data', onData);
      qemu.stderr!.on('data', onData);
      qemu.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qemu exited ${code}; console:\n${clean().slice(-3000)}`));
      });
    });
    return { console: clean(), outcome: JSON.parse(line) as Record<string, unknown>, seconds: since(), ...marks };
  } finally {
    qemu.kill('SIGKILL');
    await exited;
  }
}

/** One comment line with the boot's times, for docs/images.md. */
function timing(what: string, b: Boot): string {
  const f = (n: number | null) => (n === null ? '?' : n.toFixed(1));
  return `${what}: power-on to boot-check ${f(b.seconds)} s (bootloader chose the slot at ${f(b.chose)} s, init mounted it at ${f(b.mounted)} s)`;
}

/** A fresh archive repo and key, and `larch image build images/BOARD.toml --board BOARD` from it. */
async function buildImage(t: Test, board: string, larchBin: string): Promise<{ dir: string; repo: string; disk: string; result: any }> {
  const dir = tempDir(t, `larch-image-${board}-`);
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  const disk = join(dir, 'disk.img');
  const started = Date.now();
  const built = await larchOk(['image', 'build', join(ROOT, 'images', `${board}.toml`), '--board', board, '--out', disk, '--repo', repo, '--sign-key', join(dir, 'vendor.key'), '--larch-bin', larchBin, '--cache', CACHE, '--work-dir', dir, '--json'], { cwd: dir });
  const result = JSON.parse(built.stdout);
  t.comment(`${board} image built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${Math.round(result.layout.size / 1048576)} MiB`);
  return { dir, repo, disk, result };
}

testNeeding(t, 'image build: qemu-x86_64-grub disk image, booted under QEMU to boot-check', X86_CANNOT, { timeout: 600_000 }, async (t) => {
  const { dir, repo, disk, result } = await buildImage(t, 'qemu-x86_64-grub', BIN);
  t.equal(result.board, 'qemu-x86_64-grub');
  t.match(result.commit, /^[0-9a-f]{64}$/);
  t.equal(result.compose.kernel.release, '6.1.0-56-cloud-amd64');

  // The partition table: FAT32 boot (bootable) at 1 MiB, then the ext4 root.
  const table = sh(`sfdisk -d '${disk}'`);
  const parts = table.split('\n').filter((l) => l.startsWith(disk));
  t.equal(parts.length, 2, 'two partitions');
  t.match(parts[0], /start=\s*2048, size=\s*\d+, type=c, bootable/);
  t.match(parts[1], /type=83/);
  const rootStart = Number(/start=\s*(\d+)/.exec(parts[1])![1]) * 512;
  t.equal(rootStart, result.layout.root.start);

  // GRUB in the MBR gap: boot.img's code, then core.img from LBA 1.
  const mbr = spawnSync('dd', [`if=${disk}`, 'bs=512', 'count=2', 'status=none']).stdout as Buffer;
  t.equal(mbr.readUInt16LE(510), 0xaa55, 'MBR signature');
  t.ok(mbr.subarray(0, 440).includes(Buffer.from('GRUB')), "GRUB's boot.img in the MBR");

  // The boot partition: grub.cfg (board settings) + larch.cfg (board/grub/grub.cfg), grubenv, slot A.
  const img = `${disk}@@1M`;
  const grubDir = sh(`mdir -b -i '${img}' ::/grub`);
  for (const f of ['grub.cfg', 'larch.cfg', 'grubenv']) t.match(grubDir, new RegExp(`/grub/${f.replace('.', '\\.')}\\b`), `/grub/${f}`);
  const grubCfg = sh(`mtype -i '${img}' ::/grub/grub.cfg`);
  t.match(grubCfg, /source \$\{prefix\}\/larch\.cfg/);
  t.match(grubCfg, /set larch_bootargs="console=ttyS0,115200 larch\.tty=ttyS0 panic=10 loglevel=4 larch\.root=LABEL=larch-root larch\.boot=LABEL=LARCHBOOT"/, "the profile's arguments, the partitions by label (board/profiles/qemu-x86_64-grub.toml)");
  const env = sh(`mtype -i '${img}' ::/grub/grubenv`);
  t.match(env, /^# GRUB Environment Block\n/);
  t.match(env, /BOOT_ORDER=A B\nBOOT_A_GOOD=1\n/, 'slot A good and first');
  const slotA = sh(`mdir -b -i '${img}' ::/A`);
  t.match(slotA, /\/A\/vmlinuz\b/);
  t.match(slotA, /\/A\/initrd\.img\b/);

  // The root partition: the sysroot, with slot A deployed and the larch binary.
  const debugfs = (cmd: string) => sh(`debugfs -R '${cmd}' '${disk}?offset=${rootStart}' 2>/dev/null`);
  t.match(debugfs('ls -p /larch/deploy'), /\/A\//, 'slot A deployed');
  t.match(debugfs('ls -p /larch/deploy/A/usr/bin'), /\/busybox\//);
  t.match(debugfs('stat /larch/deploy/A/usr/bin/larch'), /Size: \d{7,}/, "the agent in the tree (the definition's agent)");
  t.notMatch(debugfs('ls -p /larch'), /\/bin\//, 'no legacy S/larch/bin: the commit carries its agent');
  t.match(debugfs('ls -p /larch/keys'), /\/[0-9a-f]{16}\.pub\//, 'the trusted key, by key id');
  t.match(debugfs('cat /larch/config.json'), /"bootloader":\s*"grub"/);

  // Boot it.
  const first = await boot(t, X86, disk);
  t.comment(timing('qemu-x86_64-grub', first));
  t.match(first.console, /larch: slot=A rescue=0 wrote=0/, 'GRUB chose slot A from the grubenv without a write');
  t.match(first.console, /larch: init: slot A mounted/);
  t.match(first.console, /larch: init: agent \/usr\/bin\/larch\n/, "the deployment's own agent runs boot-check");
  t.equal(first.outcome.slot, 'A');
  t.equal(first.outcome.commit, result.commit, 'the booted deployment is the built commit');
  t.equal(first.outcome.healthy, true);
  t.equal(first.outcome.outcome, 'already-good', 'provisioned slot A was already good');
  t.equal(first.outcome.fell_back, false);

  // Slot A unconfirmed with 3 tries (as after an upgrade): GRUB spends one (save_env on the FAT
  // grubenv), boot-check finds it healthy and marks it good from Linux; the grubenv says so after.
  const envFile = join(dir, 'grubenv');
  // With a release floor every slot meets (BOOT_RELEASES "FLOOR A B"): the script parses it (regexp,
  // which core.img must carry: the boot partition has no module directory) and boots A.
  sh(`mcopy -o -i '${img}' ::/grub/grubenv '${envFile}' && grub-editenv '${envFile}' set BOOT_A_GOOD=0 BOOT_A_LEFT=3 'BOOT_RELEASES=0 0 0' && mcopy -o -i '${img}' '${envFile}' ::/grub/grubenv`);
  const second = await boot(t, X86, disk);
  t.comment(timing('qemu-x86_64-grub, unconfirmed slot', second));
  // GRUB's part of the log, up to the kernel (GRUB writes to two terminals, so its lines can run
  // into each other: nothing is anchored at a line start).
  const grubSaid = second.console.split('Booting `larch slot')[0];
  t.notMatch(grubSaid, /error: /, 'GRUB reported no error (a missing module, a bad command)');
  t.match(grubSaid, /larch: release floor 0(?!\d)/, 'GRUB read the release floor');
  t.match(second.console, /larch: slot=A rescue=0 wrote=1/, 'GRUB spent a try on slot A');
  t.equal(second.outcome.outcome, 'confirmed', 'boot-check marked slot A good');
  t.equal(second.outcome.healthy, true);
  const after = sh(`mtype -i '${img}' ::/grub/grubenv`);
  t.match(after, /BOOT_A_GOOD=1\n/, 'marked good in the grubenv');
  t.match(after, /BOOT_A_LEFT=0\n/);
  t.match(after, /BOOT_LKG=A\n/);
});

testNeeding(t, 'image build: qemu-x86_64-uefi disk image (GPT, ESP, systemd-boot), booted under OVMF to boot-check', UEFI_CANNOT, { timeout: 600_000 }, async (t) => {
  const { dir, disk, result } = await buildImage(t, 'qemu-x86_64-uefi', BIN);
  t.equal(result.board, 'qemu-x86_64-uefi');
  t.equal(result.compose.kernel.release, '6.1.0-56-cloud-amd64');
  t.ok(result.compose.packages.some((p: { name: string }) => p.name === 'systemd-boot-efi'), 'the commit carries systemd-boot-efi');

  // GPT: partition 1 the ESP at 1 MiB, partition 2 Linux data; nothing in the MBR but the protective entry.
  const table = sh(`sfdisk -d '${disk}'`);
  t.match(table, /^label: gpt$/m);
  const parts = table.split('\n').filter((l) => l.startsWith(disk));
  t.equal(parts.length, 2, 'two partitions');
  t.match(parts[0], /start=\s*2048, size=\s*\d+, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B/, 'the EFI system partition');
  t.match(parts[1], /type=0FC63DAF-8483-4772-8E79-3D69D8477DE4/, 'Linux filesystem data');

  // The ESP: systemd-boot at the removable-media path (the commit's own), loader.conf with no
  // default, slot A's entry (good: no counter) and the rescue entry on A; the kernel files.
  const img = `${disk}@@1M`;
  const loader = join(dir, 'BOOTX64.EFI');
  sh(`mcopy -o -i '${img}' ::/EFI/BOOT/BOOTX64.EFI '${loader}'`);
  const efi = readFileSync(loader);
  t.equal(efi.subarray(0, 2).toString('latin1'), 'MZ', 'a PE image');
  t.ok(efi.includes('LoaderInfo: systemd-boot '), "systemd-boot (its .sdmagic: '#### LoaderInfo: systemd-boot VERSION ####')");
  const loaderConf = sh(`mtype -i '${img}' ::/loader/loader.conf`);
  t.match(loaderConf, /^timeout 0$/m);
  t.notMatch(loaderConf, /^default/m, 'no default: it would ignore tries');
  const entries = () => sh(`mdir -b -i '${img}' ::/loader/entries`).split('\n').map((l) => l.replace(/.*\//, '')).filter(Boolean).sort();
  t.same(entries(), ['larch-a.conf', 'larch-rescue.conf']);
  const entryA = sh(`mtype -i '${img}' ::/loader/entries/larch-a.conf`);
  t.match(entryA, /^linux \/A\/vmlinuz$/m);
  t.match(entryA, /^initrd \/A\/initrd\.img$/m);
  t.match(entryA, /^options console=ttyS0,115200 larch\.tty=ttyS0 panic=10 loglevel=4 larch\.root=LABEL=larch-root larch\.boot=LABEL=LARCHBOOT larch\.slot=A$/m, "the profile's arguments and the slot");
  t.match(sh(`mtype -i '${img}' ::/loader/entries/larch-rescue.conf`), /larch\.slot=A larch\.rescue=1/);

  // Slot A unconfirmed with 3 tries (as after an upgrade), written through larch bootenv on a copy
  // of the ESP's files: systemd-boot spends a try (renames larch-a+3.conf to larch-a+2-1.conf),
  // boot-check finds the slot healthy and marks it good as systemd-bless-boot would (larch-a.conf).
  const esp = join(dir, 'esp');
  sh(`mkdir -p '${esp}/A' && mcopy -s -n -i '${img}' ::/loader '${esp}/' && mcopy -n -i '${img}' ::/A/entry.conf '${esp}/A/entry.conf'`);
  const listed = JSON.parse((await larchOk(['bootenv', 'list', '--systemd-boot', esp, '--lock', join(dir, 'bls.lock'), '--json'])).stdout);
  t.match(listed.vars, { BOOT_ORDER: 'A B', BOOT_A_GOOD: '1', BOOT_LKG: 'A' }, 'bootenv reads the entries as the boot state');
  await larchOk(['bootenv', 'set', '--systemd-boot', esp, '--lock', join(dir, 'bls.lock'), 'BOOT_A_GOOD=0', 'BOOT_A_LEFT=3']);
  sh(`mdel -i '${img}' '::/loader/entries/larch-*' && mcopy -i '${img}' '${esp}'/loader/entries/* ::/loader/entries/`);
  t.same(entries(), ['larch-a+3.conf', 'larch-rescue.conf'], 'slot A counted: 3 tries');
  const nvram = join(dir, 'nvram.fd');
  sh(`cp '${OVMF_VARS}' '${nvram}'`);
  const booted = await boot(t, uefi(nvram), disk);
  t.comment(timing('qemu-x86_64-uefi, unconfirmed slot', booted));
  t.match(booted.console, /BdsDxe: starting Boot\d+/, 'OVMF started the disk (no NVRAM entry: the removable path)');
  t.match(booted.console, /larch: systemd-boot: slot=A rescue=0 wrote=1/, 'systemd-boot started slot A and counted a try (LoaderBootCountPath set)');
  t.match(booted.console, /larch: init: slot A mounted/);
  t.equal(booted.outcome.slot, 'A');
  t.equal(booted.outcome.commit, result.commit, 'the booted deployment is the built commit');
  t.equal(booted.outcome.healthy, true);
  t.equal(booted.outcome.outcome, 'confirmed', 'boot-check marked slot A good');
  t.same(entries(), ['larch-a.conf', 'larch-rescue.conf'], "marked good: the counter stripped, as systemd-bless-boot good does");
});

testNeeding(t, 'image build: qemu-arm64-uboot disk image, booted under QEMU (U-Boot) to boot-check', ARM64_CANNOT, { timeout: 300_000 }, async (t) => {
  // The guest's larch: the arm64 Bun build of this tree (Bun fetches its arm64 runtime from npm once).
  const build = buildArm64();
  t.equal(build.status, 0, `node scripts/build.mjs linux-arm64: ${build.stderr.slice(-500)}`);
  const { dir, repo, disk, result } = await buildImage(t, 'qemu-arm64-uboot', BIN_ARM64);
  t.equal(result.board, 'qemu-arm64-uboot');
  t.equal(result.compose.kernel.release, '6.1.0-56-arm64');

  // The partition table as on x86; no boot code before partition 1 (U-Boot is the board's firmware).
  const parts = sh(`sfdisk -d '${disk}'`).split('\n').filter((l) => l.startsWith(disk));
  t.equal(parts.length, 2, 'two partitions');
  t.match(parts[0], /start=\s*2048, size=\s*\d+, type=c, bootable/, 'FAT32 boot partition, bootable (distro_bootcmd scans those)');
  t.match(parts[1], /type=83/);
  const rootStart = Number(/start=\s*(\d+)/.exec(parts[1])![1]) * 512;
  const mbr = spawnSync('dd', [`if=${disk}`, 'bs=512', 'count=1', 'status=none']).stdout as Buffer;
  t.ok(mbr.subarray(0, 440).every((b) => b === 0), 'no boot code in the MBR');

  // The boot partition: boot.scr (a mkimage script: board settings, then board/uboot/boot.cmd),
  // uboot.env (the boot state: A good and first), fw_env.config naming it at its path on the device.
  const img = `${disk}@@1M`;
  const scr = join(dir, 'boot.scr');
  sh(`mcopy -o -i '${img}' ::/boot.scr '${scr}'`);
  const scrText = sh(`cat '${scr}'`);
  t.equal(spawnSync('od', ['-An', '-tx1', '-N4', scr], { encoding: 'utf8' }).stdout.trim(), '27 05 19 56', 'a U-Boot image (mkimage magic)');
  t.match(scrText, /setenv larch_bootargs "console=ttyAMA0 [^"]*larch\.root=LABEL=larch-root larch\.boot=LABEL=LARCHBOOT"/, 'the partitions by label (board/profiles/qemu-arm64-uboot.toml)');
  t.match(scrText, /setenv larch_kernel "vmlinuz"/);
  t.match(scrText, /env import -c/, 'boot.cmd follows');
  // The redundant env (docs/boot.md): two files, each one copy with a flags byte, both in fw_env.config.
  const fwEnv = sh(`mtype -i '${img}' ::/fw_env.config`);
  t.match(fwEnv, /^\/sysroot\/boot\/uboot\.env\s+0x0\s+0x4000\s+0x4000\s+0x1$/m);
  t.match(fwEnv, /^\/sysroot\/boot\/uboot-redund\.env\s+0x0\s+0x4000\s+0x4000\s+0x1$/m);
  const envFiles = ['uboot.env', 'uboot-redund.env'].map((n) => ({ name: n, local: join(dir, n) }));
  const envCfg = join(dir, 'fw_env.config');
  sh(`printf '%s 0x0 0x4000 0x4000 0x1\\n%s 0x0 0x4000 0x4000 0x1\\n' '${envFiles[0]!.local}' '${envFiles[1]!.local}' > '${envCfg}'`);
  const readEnv = () => {
    for (const f of envFiles) sh(`mcopy -o -i '${img}' ::/${f.name} '${f.local}'`);
    return sh(`fw_printenv -c '${envCfg}'`);
  };
  const env = readEnv();
  t.match(env, /^BOOT_ORDER=A B$/m, 'slot A first');
  t.match(env, /^BOOT_A_GOOD=1$/m, 'slot A good');
  const slotA = sh(`mdir -b -i '${img}' ::/A`);
  t.match(slotA, /\/A\/vmlinuz\b/);
  t.match(slotA, /\/A\/initrd\.img\b/);

  // The root partition: slot A deployed, the arm64 larch binary, config for U-Boot.
  const debugfs = (cmd: string) => sh(`debugfs -R '${cmd}' '${disk}?offset=${rootStart}' 2>/dev/null`);
  t.match(debugfs('ls -p /larch/deploy/A/usr/lib'), /\/ld-linux-aarch64\.so\.1\//, "arm64 glibc's loader");
  t.match(debugfs('stat /larch/deploy/A/usr/bin/larch'), /Size: \d{7,}/, "the agent in the tree (the definition's agent)");
  t.notMatch(debugfs('ls -p /larch'), /\/bin\//, 'no legacy S/larch/bin: the commit carries its agent');
  t.match(debugfs('cat /larch/config.json'), /"bootloader":\s*"uboot"/);

  // One boot, of the case that exercises both writers: slot A unconfirmed with 3 tries (as after an
  // upgrade). U-Boot reads uboot.env, spends a try (env export + fatwrite); Linux's boot-check finds
  // the slot healthy and marks it good through the fw_env.config on the boot partition. (A good slot
  // booting without a write is board-scripts.test.ts's, on the same U-Boot.)
  sh(`fw_setenv -c '${envCfg}' BOOT_A_GOOD 0 && fw_setenv -c '${envCfg}' BOOT_A_LEFT 3`);
  for (const f of envFiles) sh(`mcopy -o -i '${img}' '${f.local}' ::/${f.name}`);
  const booted = await boot(t, ARM64, disk);
  t.comment(timing('qemu-arm64-uboot, unconfirmed slot', booted));
  t.match(booted.console, /Found U-Boot script \/boot\.scr/, 'distro_bootcmd found boot.scr');
  t.match(booted.console, /larch: boot state read from copy [01] \(redundant\)/, "U-Boot read the redundant env");
  t.match(booted.console, /larch: slot=A rescue=0 wrote=1/, 'U-Boot spent a try on slot A');
  t.match(booted.console, /larch: init: slot A mounted/);
  t.match(booted.console, /larch: init: agent \/usr\/bin\/larch\n/, "the deployment's own agent runs boot-check");
  t.equal(booted.outcome.slot, 'A');
  t.equal(booted.outcome.commit, result.commit, 'the booted deployment is the built commit');
  t.equal(booted.outcome.healthy, true);
  t.equal(booted.outcome.fell_back, false);
  t.equal(booted.outcome.outcome, 'confirmed', 'boot-check marked slot A good');
  const after = readEnv();
  t.match(after, /^BOOT_A_GOOD=1$/m, 'marked good in uboot.env');
  t.match(after, /^BOOT_A_LEFT=0$/m);
  t.match(after, /^BOOT_LKG=A$/m);
});

// The real-board profiles. Neither board can be booted here (QEMU 7.2 has no Raspberry Pi 4; an eMMC
// board's U-Boot is its vendor's), so this checks what each board's firmware and U-Boot read from the
// image, with the real tools: fw_printenv on the env where U-Boot keeps it, the FAT partition's files,
// the partition table. The Pi's firmware files (start4.elf, fixup4.dat) are not free software and not
// in Debian's main: the test's --firmware-dir holds stand-ins with those names.
testNeeding(t, 'image build: rpi4-uboot (firmware files, env in named FAT files) and emmc-arm64-uboot (raw redundant env)', ARM64_CANNOT, { timeout: 300_000 }, async (t) => {
  const build = buildArm64();
  t.equal(build.status, 0, `node scripts/build.mjs linux-arm64: ${build.stderr.slice(-500)}`);
  const dir = tempDir(t, 'larch-image-real-');
  const repo = join(dir, 'repo');
  const key = join(dir, 'vendor.key');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  const fw = join(dir, 'firmware');
  sh(`mkdir -p '${fw}' && printf 'start4 stand-in' > '${fw}/start4.elf' && printf 'fixup4 stand-in' > '${fw}/fixup4.dat'`);
  const common = ['--repo', repo, '--sign-key', key, '--larch-bin', BIN_ARM64, '--cache', CACHE, '--work-dir', dir, '--json'];

  // The Pi's firmware files are the user's: without --firmware-dir the build stops first, naming the file.
  const noFw = await larch(['image', 'build', join(ROOT, 'images', 'rpi4-uboot.toml'), '--board', 'rpi4-uboot', '--out', join(dir, 'x.img'), ...common], { cwd: dir });
  t.equal(noFw.code, 2, 'no --firmware-dir: usage');
  t.match(noFw.stderr, /board rpi4-uboot needs --firmware-dir DIR holding start4\.elf/);

  const pi = join(dir, 'rpi4.img');
  const result = JSON.parse((await larchOk(['image', 'build', join(ROOT, 'images', 'rpi4-uboot.toml'), '--board', 'rpi4-uboot', '--out', pi, '--firmware-dir', fw, ...common], { cwd: dir })).stdout);
  t.ok(result.compose.packages.some((p: { name: string }) => p.name === 'u-boot-rpi'), "the commit carries Debian's u-boot-rpi");
  const img = `${pi}@@1M`;
  const root = sh(`mdir -b -i '${img}' ::/`);
  for (const f of ['config.txt', 'u-boot.bin', 'bcm2711-rpi-4-b.dtb', 'start4.elf', 'fixup4.dat', 'boot.scr', 'larch.env', 'larch-redund.env', 'fw_env.config']) t.match(root, new RegExp(`::/${f.replace('.', '\\.')}\\b`), `the FAT partition's root holds ${f}`);
  t.notMatch(root, /::\/uboot\.env\b/, "no uboot.env: that is U-Boot's own env file on the Pi");
  const cat = (path: string) => spawnSync('mtype', ['-i', img, `::/${path}`]).stdout as Buffer;
  t.equal(cat('config.txt').toString(), sh(`cat '${join(ROOT, 'board', 'rpi4', 'config.txt')}'`), 'config.txt from board/rpi4/');
  t.equal(cat('start4.elf').toString(), 'start4 stand-in', 'start4.elf from --firmware-dir');
  const rootStart = Number(/start=\s*(\d+)/.exec(sh(`sfdisk -d '${pi}'`).split('\n').filter((l) => l.startsWith(pi))[1]!)![1]) * 512;
  const debugfs = (cmd: string) => spawnSync('sh', ['-c', `debugfs -R '${cmd}' '${pi}?offset=${rootStart}' 2>/dev/null`]).stdout as Buffer;
  const uboot = debugfs('cat /larch/deploy/A/usr/lib/u-boot/rpi_arm64/u-boot.bin');
  t.ok(uboot.length > 100_000 && cat('u-boot.bin').equals(uboot), "u-boot.bin is the commit's /usr/lib/u-boot/rpi_arm64/u-boot.bin");
  const dtb = cat('bcm2711-rpi-4-b.dtb');
  t.equal(dtb.subarray(0, 4).toString('hex'), 'd00dfeed', 'a flattened device tree');
  t.ok(cat('A/dtbs/bcm2711-rpi-4-b.dtb').equals(dtb), "slot A's device tree is the firmware's");
  const scr = cat('boot.scr').toString('latin1');
  t.match(scr, /setenv larch_bootargs "console=ttyS1,115200 larch\.tty=ttyS1 /, "the Pi's GPIO UART");
  t.match(scr, /setenv larch_fdt "dtbs\/bcm2711-rpi-4-b\.dtb"/, "boot.scr loads the slot's device tree");
  t.match(scr, /setenv larch_env "fat"\nsetenv larch_env_file "larch\.env"\nsetenv larch_env_file2 "larch-redund\.env"/, "boot.scr reads larch's env files");
  t.match(cat('fw_env.config').toString(), /^\/sysroot\/boot\/larch\.env\s+0x0\s+0x4000\s+0x4000\s+0x1\n\/sysroot\/boot\/larch-redund\.env\s+0x0\s+0x4000/m);
  sh(`mcopy -o -i '${img}' ::/larch.env ::/larch-redund.env '${dir}/'`);
  sh(`printf '%s 0x0 0x4000\\n%s 0x0 0x4000\\n' '${dir}/larch.env' '${dir}/larch-redund.env' > '${dir}/pi-fw_env.config'`);
  t.match(sh(`fw_printenv -c '${dir}/pi-fw_env.config'`), /^BOOT_ORDER=A B$/m, 'fw_printenv reads the boot state: A first');
  const initrd = join(dir, 'initrd.img');
  sh(`mcopy -o -i '${img}' ::/A/initrd.img '${initrd}'`);
  t.match(sh(`zcat '${initrd}' | cpio -t 2>/dev/null`), /^modules\/sdhci-iproc\.ko$/m, "the initramfs has the SD card's driver (LARCH_INITRAMFS_MODULES)");

  // Debian's U-Boot for the Pi runs the image's boot.scr on QEMU's Raspberry Pi 3 machine (QEMU 7.2
  // has no Pi 4; the rpi_arm64 build is for both): it reads larch.env, spends a try on unconfirmed
  // A with fatwrite, and sets the slot's kernel arguments. The kernel is not started: it is the Pi
  // 4's device tree that boot.scr loads with it.
  const sd = join(dir, 'sd.img');
  sh(`cp --sparse=always '${pi}' '${sd}' && truncate -s 1G '${sd}'`); // QEMU's SD card: a power of two
  sh(`fw_setenv -c '${dir}/pi-fw_env.config' BOOT_A_GOOD 0 && fw_setenv -c '${dir}/pi-fw_env.config' BOOT_A_LEFT 3`);
  sh(`mcopy -o -i '${sd}@@1M' '${dir}/larch.env' '${dir}/larch-redund.env' ::/`);
  sh(`mcopy -o -i '${sd}@@1M' ::/u-boot.bin '${dir}/u-boot.bin'`);
  writeFileSync(join(dir, 'rpi3.dtb'), debugfs(`cat /larch/deploy/A/usr/lib/linux-image-${result.compose.kernel.release}/broadcom/bcm2837-rpi-3-b.dtb`));
  // The Pi's console UART is the mini UART, QEMU's second serial port.
  const console = await untilLine(['-M', 'raspi3b', '-kernel', join(dir, 'u-boot.bin'), '-dtb', join(dir, 'rpi3.dtb'), '-drive', `file=${sd},if=sd,format=raw`, '-serial', 'null', '-serial', 'stdio', '-display', 'none', '-no-reboot'], /^larch: bootargs=[^\n]*\n/m, 120_000);
  t.match(console, /Loading Environment from FAT\.\.\. Unable to read "uboot\.env"/, "U-Boot's own env file is absent: its built-in env, with bootcmd");
  t.match(console, /Found U-Boot script \/boot\.scr/, 'distro_bootcmd found boot.scr');
  t.match(console, /larch: boot state read from copy [01] \(redundant\)/, 'boot.scr read larch.env / larch-redund.env');
  t.match(console, /larch: slot=A rescue=0 wrote=1/, 'a try spent on unconfirmed A');
  t.match(console, /^larch: bootargs=console=ttyS1,115200 larch\.tty=ttyS1 .* larch\.slot=A\r?$/m, "slot A's kernel arguments (A/larch.env)");
  sh(`mcopy -o -i '${sd}@@1M' ::/larch.env ::/larch-redund.env '${dir}/'`);
  t.match(sh(`fw_printenv -c '${dir}/pi-fw_env.config'`), /^BOOT_A_LEFT=2$/m, "fw_printenv reads U-Boot's fatwrite: 2 tries left");

  // The eMMC board, from the same commit: U-Boot's own redundant env at 4 MiB and 4 MiB + 16 KiB of the disk.
  const emmc = join(dir, 'emmc.img');
  const built = JSON.parse((await larchOk(['image', 'build', '--rev', result.commit, '--ref', result.ref, '--board', 'emmc-arm64-uboot', '--out', emmc, ...common], { cwd: dir })).stdout);
  t.equal(built.layout.boot.start, 5 * 1048576, 'partition 1 starts at the MiB after the env copies');
  t.match(sh(`sfdisk -d '${emmc}'`), /emmc\.img1 : start=\s*10240, size=\s*\d+, type=c, bootable/);
  sh(`printf '%s 0x400000 0x4000\\n%s 0x404000 0x4000\\n' '${emmc}' '${emmc}' > '${dir}/emmc-fw_env.config'`);
  const env = sh(`fw_printenv -c '${dir}/emmc-fw_env.config'`);
  t.match(env, /^BOOT_ORDER=A B$/m, "fw_printenv reads larch's state in the raw env");
  t.match(env, /^bootcmd=if load mmc 0:1 \$\{scriptaddr\} boot\.scr; then source \$\{scriptaddr\}; fi$/m, "with the board's default env: U-Boot keeps its bootcmd");
  t.match(env, /^kernel_addr_r=0x40400000$/m);
  const emmcImg = `${emmc}@@5M`;
  t.equal(sh(`mtype -i '${emmcImg}' ::/fw_env.config`), sh(`cat '${join(ROOT, 'board', 'uboot', 'fw_env.config.redundant')}'`), "the device's fw_env.config is the board's (/dev/mmcblk0 at its offsets)");
  t.match((spawnSync('mtype', ['-i', emmcImg, '::/boot.scr']).stdout as Buffer).toString('latin1'), /setenv larch_env "native"/, "boot.scr keeps the state in U-Boot's own env (saveenv)");
  t.notMatch(sh(`mdir -b -i '${emmcImg}' ::/`), /uboot\.env|uboot-redund\.env/, 'no env files on the FAT partition');
});

/** Runs qemu-system-aarch64 until its console prints a line matching `line`; returns the console. @throws on exit or timeout */
async function untilLine(args: string[], line: RegExp, timeoutMs: number): Promise<string> {
  const qemu = spawn('qemu-system-aarch64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve) => qemu.once('exit', resolve));
  let text = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no line matching ${line} in ${timeoutMs / 1000} s; console:\n${text.slice(-3000)}`)), timeoutMs);
      const onData = (b: Buffer) => {
        text += b.toString('latin1');
        if (line.test(text)) {
          clearTimeout(timer);
          resolve(text);
        }
      };
      qemu.stdout!.on('data', onData);
      qemu.stderr!.on('data', onData);
      qemu.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qemu exited ${code}; console:\n${text.slice(-3000)}`));
      });
    });
  } finally {
    qemu.kill('SIGKILL');
    await exited;
  }
}

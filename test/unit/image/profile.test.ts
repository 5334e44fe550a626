/**
 * Board profiles (src/image/profile.ts, board/profiles/*.toml): the shipped ones parse to the
 * command lines their boards boot with, every field is checked with a message naming the file
 * and the field, and no profile can name a partition by device name (issue 19, must-show 4).
 */
import t from 'tap';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type BoardProfile, parseBoardProfile, profileKargs } from '../../../src/image/profile.ts';

const PROFILES = join(import.meta.dirname, '..', '..', '..', 'board', 'profiles');

const BASE = `bootloader = "grub"
architecture = "amd64"
console = "ttyS0,115200"
kargs = ["panic=10", "quiet"]
root = "LABEL=larch-root"
boot = "LABEL=LARCHBOOT"
`;

t.test('the shipped profiles: the three QEMU boards and two real ones, found by label', async (t) => {
  const names = (await readdir(PROFILES)).filter((n) => n.endsWith('.toml')).sort();
  t.same(names, ['emmc-arm64-uboot.toml', 'qemu-arm64-uboot.toml', 'qemu-x86_64-grub.toml', 'qemu-x86_64-uefi.toml', 'rpi4-uboot.toml']);
  const load = async (name: string): Promise<BoardProfile> => parseBoardProfile(await readFile(join(PROFILES, `${name}.toml`), 'utf8'), name, name);
  const x86 = await load('qemu-x86_64-grub');
  t.same(profileKargs(x86), ['console=ttyS0,115200', 'larch.tty=ttyS0', 'panic=10', 'loglevel=4', 'larch.root=LABEL=larch-root', 'larch.boot=LABEL=LARCHBOOT']);
  t.match(x86, { name: 'qemu-x86_64-grub', bootloader: 'grub', architecture: 'amd64' });
  t.equal(x86.ubootArch, undefined);
  const arm = await load('qemu-arm64-uboot');
  t.same(profileKargs(arm), ['console=ttyAMA0', 'larch.tty=ttyAMA0', 'panic=10', 'loglevel=4', 'larch.root=LABEL=larch-root', 'larch.boot=LABEL=LARCHBOOT']);
  t.match(arm, { name: 'qemu-arm64-uboot', bootloader: 'uboot', architecture: 'arm64', ubootArch: 'arm64' });
  const uefi = await load('qemu-x86_64-uefi');
  t.same(profileKargs(uefi), ['console=ttyS0,115200', 'larch.tty=ttyS0', 'panic=10', 'loglevel=4', 'larch.root=LABEL=larch-root', 'larch.boot=LABEL=LARCHBOOT']);
  t.match(uefi, { name: 'qemu-x86_64-uefi', bootloader: 'systemd-boot', architecture: 'amd64' });
  t.same(arm.ubootEnv, { kind: 'files', files: ['uboot.env', 'uboot-redund.env'] }, 'QEMU virt: the default env files');
  t.same(arm.bootFiles, []);

  const pi = await load('rpi4-uboot');
  t.same(profileKargs(pi), ['console=ttyS1,115200', 'larch.tty=ttyS1', 'panic=10', 'loglevel=4', 'larch.root=LABEL=larch-root', 'larch.boot=LABEL=LARCHBOOT'], "the Pi's GPIO UART (mini UART)");
  t.match(pi, { bootloader: 'uboot', deviceTree: 'bcm2711-rpi-4-b.dtb', ubootEnv: { kind: 'files', files: ['larch.env', 'larch-redund.env'] } });
  t.same(
    pi.bootFiles.map((f) => `${f.path} <- ${f.from}:${f.source}`),
    ['config.txt <- board:rpi4/config.txt', 'u-boot.bin <- tree:usr/lib/u-boot/rpi_arm64/u-boot.bin', 'bcm2711-rpi-4-b.dtb <- tree:boot/dtbs/bcm2711-rpi-4-b.dtb', 'start4.elf <- firmware:start4.elf', 'fixup4.dat <- firmware:fixup4.dat'],
  );
  const emmc = await load('emmc-arm64-uboot');
  t.same(emmc.ubootEnv, { kind: 'raw', fwEnvConfig: 'uboot/fw_env.config.redundant', defaultEnv: 'emmc-arm64/u-boot-initial-env' });
});

const UBOOT = BASE.replace('"grub"', '"uboot"') + 'uboot_arch = "arm64"\n';

t.test('U-Boot boards: the env, the device tree and the boot files', async (t) => {
  const p = parseBoardProfile(UBOOT + 'device_tree = "x.dtb"\nenv_files = ["a.env", "b.env"]\n[[boot_files]]\npath = "fw/x.bin"\nfirmware = "x.bin"\n', 'b', 'b.toml');
  t.match(p, { deviceTree: 'x.dtb', ubootEnv: { kind: 'files', files: ['a.env', 'b.env'] }, bootFiles: [{ path: 'fw/x.bin', from: 'firmware', source: 'x.bin' }] });
  const raw = parseBoardProfile(UBOOT + 'fw_env_config = "b/fw_env.config"\nuboot_default_env = "b/env.txt"\n', 'b', 'b.toml');
  t.same(raw.ubootEnv, { kind: 'raw', fwEnvConfig: 'b/fw_env.config', defaultEnv: 'b/env.txt' });
  const cases: [string, string, string, RegExp][] = [
    ['device_tree on GRUB', BASE + 'device_tree = "x.dtb"\n', 'device_tree', /only for U-Boot boards/],
    ['env_files on GRUB', BASE + 'env_files = ["a", "b"]\n', 'env_files', /only for U-Boot boards/],
    ['a device tree path', UBOOT + 'device_tree = "broadcom/x.dtb"\n', 'device_tree', /not a file name in \/boot\/dtbs\//],
    ['one env file', UBOOT + 'env_files = ["a.env"]\n', 'env_files', /must name two files/],
    ['the same env file twice', UBOOT + 'env_files = ["a.env", "a.env"]\n', 'env_files', /the same file twice/],
    ['an env file in a folder', UBOOT + 'env_files = ["a.env", "x/b.env"]\n', 'env_files[1]', /not a file name on the boot partition/],
    ['a raw env without defaults', UBOOT + 'fw_env_config = "b/c"\n', 'uboot_default_env', /is required with 'fw_env_config'.*without bootcmd|U-Boot boots a valid stored env/],
    ['both env layouts', UBOOT + 'fw_env_config = "b/c"\nuboot_default_env = "b/d"\nenv_files = ["a", "b"]\n', 'env_files', /give one of them/],
    ['defaults without a raw env', UBOOT + 'uboot_default_env = "b/d"\n', 'uboot_default_env', /goes with 'fw_env_config'/],
    ['an absolute fw_env.config', UBOOT + 'fw_env_config = "/etc/fw_env.config"\nuboot_default_env = "b/d"\n', 'fw_env_config', /not a path under board\//],
    ['a boot file with two sources', UBOOT + '[[boot_files]]\npath = "a"\ntree = "a"\nboard = "a"\n', 'boot_files[0]', /exactly one of 'tree'/],
    ['a boot file with none', UBOOT + '[[boot_files]]\npath = "a"\n', 'boot_files[0]', /exactly one of/],
    ['a boot file leaving the partition', UBOOT + '[[boot_files]]\npath = "../a"\ntree = "a"\n', 'boot_files[0].path', /not a relative path on the boot partition/],
    ['a boot file twice (FAT ignores case)', UBOOT + '[[boot_files]]\npath = "A.bin"\ntree = "a"\n[[boot_files]]\npath = "a.bin"\ntree = "b"\n', 'boot_files[1].path', /given twice/],
    ['a boot file source leaving the tree', UBOOT + '[[boot_files]]\npath = "a"\ntree = "usr/../../etc/shadow"\n', 'boot_files[0].tree', /not a relative path/],
    ['an unknown boot file field', UBOOT + '[[boot_files]]\npath = "a"\ntree = "a"\nmode = 1\n', 'boot_files[0].mode', /is not a known field/],
    ['boot_files not tables', UBOOT + 'boot_files = "a"\n', 'boot_files', /must be an array of tables/],
  ];
  for (const [what, text, field, message] of cases) {
    t.throws(() => parseBoardProfile(text, 'b', 'board/profiles/b.toml'), { code: 'INVALID_INPUT', message: new RegExp(`board profile 'board/profiles/b.toml': field '${field.replace(/[[\].]/g, '\\$&')}' .*${message.source}`), data: { file: 'board/profiles/b.toml', field } }, what);
  }
});

t.test('a profile without a console or kargs: the partitions only; UUID= works as LABEL=', async (t) => {
  const p = parseBoardProfile('bootloader = "grub"\narchitecture = "amd64"\nroot = "UUID=0b5c6f1e-8a3d-4c2e-9f7a-1d2e3f4a5b6c"\nboot = "UUID=F9B1-DEA5"\n', 'pc', 'pc.toml');
  t.same(profileKargs(p), ['larch.root=UUID=0b5c6f1e-8a3d-4c2e-9f7a-1d2e3f4a5b6c', 'larch.boot=UUID=F9B1-DEA5']);
});

t.test('every field is checked; the message names the file and the field', async (t) => {
  const cases: [string, string, string, RegExp][] = [
    ['unknown field', BASE + 'kernel = "vmlinuz"\n', 'kernel', /is not a known field/],
    ['no bootloader', BASE.replace('bootloader = "grub"\n', ''), 'bootloader', /is required/],
    ['a bootloader larch does not drive', BASE.replace('"grub"', '"lilo"'), 'bootloader', /'lilo' is not a bootloader larch drives \(uboot, grub, systemd-boot\)/],
    ['a bad architecture', BASE.replace('"amd64"', '"AMD 64"'), 'architecture', /not a Debian architecture/],
    ['U-Boot without uboot_arch', BASE.replace('"grub"', '"uboot"'), 'uboot_arch', /is required for a U-Boot board/],
    ['uboot_arch on GRUB', BASE + 'uboot_arch = "arm64"\n', 'uboot_arch', /only for U-Boot boards/],
    ['root by device name', BASE.replace('"LABEL=larch-root"', '"/dev/vda2"'), 'root', /'\/dev\/vda2' is a device name.*LABEL=\.\.\. or UUID=\.\.\./],
    ['boot by device name', BASE.replace('"LABEL=LARCHBOOT"', '"/dev/mmcblk0p1"'), 'boot', /is a device name/],
    ['root by PARTUUID', BASE.replace('"LABEL=larch-root"', '"PARTUUID=1234-02"'), 'root', /is not LABEL=\.\.\. or UUID=\.\.\./],
    ['a label with a space', BASE.replace('"LABEL=larch-root"', '"LABEL=larch root"'), 'root', /is not LABEL=/],
    ['a device name in kargs', BASE.replace('"quiet"', '"resume=/dev/vda3"'), 'kargs[1]', /names a device/],
    ['a console in kargs', BASE.replace('"quiet"', '"console=tty0"'), 'kargs[1]', /give it in the field 'console'/],
    ['larch.root in kargs', BASE.replace('"quiet"', '"larch.root=LABEL=x"'), 'kargs[1]', /larch\.root, which larch sets itself/],
    ['larch.slot in kargs', BASE.replace('"quiet"', '"larch.slot=A"'), 'kargs[1]', /larch\.slot/],
    ['a quote a boot script would read', BASE.replace('"quiet"', `'init="/bin/sh"'`), 'kargs[1]', /which the boot scripts would interpret/],
    ['a dollar', BASE.replace('"quiet"', '"x=$y"'), 'kargs[1]', /which the boot scripts would interpret/],
    ['a space', BASE.replace('"quiet"', '"a b"'), 'kargs[1]', /a space outside double quotes/],
    ['kargs not an array', BASE.replace('["panic=10", "quiet"]', '"quiet"'), 'kargs', /must be an array of strings/],
    ['a console with a space', BASE.replace('"ttyS0,115200"', '"ttyS0 115200"'), 'console', /a space/],
  ];
  for (const [what, text, field, message] of cases) {
    t.throws(() => parseBoardProfile(text, 'b', 'board/profiles/b.toml'), { code: 'INVALID_INPUT', message: new RegExp(`board profile 'board/profiles/b.toml': field '${field.replace(/[[\]]/g, '\\$&')}' .*${message.source}`), data: { file: 'board/profiles/b.toml', field } }, what);
  }
  t.throws(() => parseBoardProfile('bootloader = \n', 'b', 'b.toml'), { code: 'INVALID_INPUT', message: /board profile 'b\.toml' is not valid TOML at line 1/ }, 'TOML syntax: line and column');
  t.throws(() => parseBoardProfile(BASE, '../x', 'b.toml'), { code: 'INVALID_INPUT', message: /'\.\.\/x' is not a board name/ }, 'a name that is not a file name');
});

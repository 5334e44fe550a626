/** larch image build: a bootable, partitioned disk image from an image definition or a commit. */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { LarchError } from '../../errors.ts';
import { imageBuild, loadBoardProfile } from '../../image/build.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, intOption, list, need, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

const DEFAULT_REPO_URL = 'http://10.0.2.2:8080/';

/** The running binary when it is larch's Bun build (same architecture as the host). */
function defaultLarchBinary(): string | undefined {
  return /^larch/.test(basename(process.execPath)) ? process.execPath : undefined;
}

export const imageBuildCommand: Command = {
  name: 'image build',
  summary: 'build a bootable disk image for a board from a definition or a commit',
  options: {
    ...REPO_OPTION,
    board: { type: 'string' },
    out: { type: 'string' },
    rev: { type: 'string' },
    ref: { type: 'string' },
    'sign-key': { type: 'string', multiple: true },
    keys: { type: 'string', multiple: true },
    'repo-url': { type: 'string' },
    'larch-bin': { type: 'string' },
    agent: { type: 'string' },
    cache: { type: 'string' },
    'work-dir': { type: 'string' },
    'boot-size': { type: 'string' },
    'root-size': { type: 'string' },
    compatible: { type: 'string' },
    'firmware-dir': { type: 'string' },
  },
  positionals: true,
  help: `NAME
  larch image build - a bootable disk image for a board

SYNOPSIS
  larch image build DEFINITION.toml --board BOARD --out disk.img --repo R --sign-key K.key
                    [--keys K.pub]... [--repo-url URL] [--larch-bin FILE] [--agent FILE] [--cache DIR]
                    [--boot-size MiB] [--root-size MiB] [--work-dir DIR] [--compatible ID]
                    [--firmware-dir DIR] [--json]
  larch image build --rev REV [--ref REF] --board BOARD --out disk.img --repo R --sign-key K.key ...

DESCRIPTION
  Composes the definition into R (as 'larch compose'), or takes the commit REV of R, publishes
  R's summary (signed with --sign-key), provisions a sysroot from it over HTTP exactly as a
  device's factory set-up does (the first deployment in slot A, marked good; the trusted keys;
  the config pointing at --repo-url), adds the larch binary as /larch/bin/larch when the commit
  carries no agent of its own (/usr/bin/larch, the definition's 'agent'), and writes a
  partitioned disk image: partition 1 FAT32 (the sysroot's /boot: the slots' kernels and
  initramfs, the boot state, and GRUB's grub.cfg, U-Boot's boot.scr or systemd-boot's
  entries), partition 2 ext4 (the rest of the sysroot); for GRUB, GRUB for BIOS in the gap
  before partition 1; for systemd-boot, a GPT disk whose partition 1 is the EFI system
  partition with systemd-boot as /EFI/BOOT/BOOTX64.EFI (taken from the commit's
  systemd-boot-efi, else the host's). Needs no root: mkfs.vfat + mcopy, mkfs.ext4 -d, sfdisk
  and dd on the image file, grub-mkimage or mkimage.
  docs/images.md describes the image.

BOARDS
  A board is a profile, board/profiles/BOARD.toml (docs/images.md, "Board profiles"): its
  bootloader, architecture, console and kernel arguments, where U-Boot keeps its env, the
  device tree, and files the board's firmware reads from the boot partition. Shipped:
  qemu-x86_64-grub (BIOS, GRUB), qemu-x86_64-uefi (OVMF, systemd-boot), qemu-arm64-uboot,
  and for real hardware rpi4-uboot (Raspberry Pi 4: Debian's u-boot-rpi, the env in files on
  the FAT partition; needs --firmware-dir) and emmc-arm64-uboot (an arm64 board booting from
  eMMC, U-Boot's redundant env in raw eMMC; its default env is the board vendor's).

OPTIONS
  --board BOARD     the board (required)
  --out FILE        the disk image to write (required; replaced)
  --repo R          repository the commit is composed into / taken from (required)
  --rev REV         build from this commit instead of a definition
  --ref REF         the branch the device follows (default: the definition's ref, or the only
                    ref pointing at REV)
  --sign-key K.key  signs the composed commit and the summary (required; repeatable)
  --keys K.pub      a key the device trusts (default: K.pub next to each K.key)
  --repo-url URL    the update server in the device's config (default ${DEFAULT_REPO_URL}: the
                    host, seen from QEMU's user network)
  --larch-bin FILE  the larch binary for the board's architecture, for a commit without an agent
                    of its own (default: this binary, when
                    it is larch's Bun build; 'node scripts/build.mjs linux-x64' makes dist/larch,
                    'node scripts/build.mjs linux-arm64' dist/larch-arm64)
  --agent FILE      composing: the agent the image carries at /usr/bin/larch, instead of the
                    definition's 'agent' (as larch compose --agent)
  --cache DIR       .deb cache for compose (default: as larch compose)
  --boot-size MiB, --root-size MiB   partition sizes (default: from the content, with room
                    for a second slot)
  --work-dir DIR    where the temporary sysroot and filesystems go (default: the OS temp dir)
  --compatible ID   the device's hardware-compatibility id (provision --compatible; default:
                    the commit's larch.compatible, else the board's name). The device is also
                    bound to the board's architecture and to R's collection id, if any
  --firmware-dir DIR  where the board's boot firmware is, for profiles that take files from it
                    (rpi4-uboot: start4.elf and fixup4.dat, from Debian's raspi-firmware
                    package, /usr/lib/raspi-firmware, or github.com/raspberrypi/firmware boot/)
  --json            print {"out", "board", "commit", "version", "ref", "compose", "layout"}

EXAMPLES
  larch image build images/qemu-x86_64-grub.toml --board qemu-x86_64-grub --out disk.img \\
      --repo repo --sign-key vendor.key
  qemu-system-x86_64 -machine pc -cpu max -m 1024 -nographic -nodefaults -serial stdio \\
      -drive file=disk.img,format=raw,if=virtio -nic none
  larch image build images/qemu-arm64-uboot.toml --board qemu-arm64-uboot --out disk.img \\
      --repo repo --sign-key vendor.key --larch-bin dist/larch-arm64
  qemu-system-aarch64 -machine virt -cpu cortex-a57 -m 1024 -nographic -nodefaults \\
      -serial stdio -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -nic none \\
      -drive if=none,file=disk.img,format=raw,id=hd0 -device virtio-blk-device,drive=hd0

EXIT STATUS
  0 written; 2 usage; 3 not found; 4 bad definition, or the definition or REV is for
  another architecture than the board's; 6 signatures; 9 a tool failed; 10 a tool
  is missing.
`,
  async run(args, io) {
    // The board first: an unknown one is the likeliest mistake, and its message lists the known ones.
    const board = await loadBoardProfile(need(args, 'board', 'image build'), args.positionals[0]);
    const out = need(args, 'out', 'image build');
    const rev = opt(args, 'rev');
    if (args.positionals.length > 1 || (args.positionals.length === 1) === (rev !== undefined)) {
      throw new LarchError('USAGE', 'image build: give either DEFINITION.toml or --rev REV', { hint: "run 'larch image build --help'", data: { command: 'image build', options: ['definition', 'rev'] } });
    }
    const signKeyFiles = list(args, 'sign-key');
    let keys = list(args, 'keys');
    if (keys.length === 0) keys = signKeyFiles.map((k) => k.replace(/\.key$/, '') + '.pub').filter((p) => existsSync(p));
    const larchBinary = opt(args, 'larch-bin') ?? defaultLarchBinary();
    if (!larchBinary) throw new LarchError('USAGE', 'image build: pass --larch-bin FILE (the larch binary for the board: node scripts/build.mjs linux-x64 makes dist/larch)', { data: { command: 'image build', option: 'larch-bin' } });
    const repo = await openRepo(args, 'image build');
    const result = await imageBuild(repo, {
      board,
      out,
      definitionPath: args.positionals[0],
      rev,
      ref: opt(args, 'ref'),
      signKeys: await Promise.all(signKeyFiles.map(readSecretKey)),
      trustedKeys: keys,
      repoUrl: opt(args, 'repo-url') ?? DEFAULT_REPO_URL,
      compatible: opt(args, 'compatible'),
      larchBinary,
      agent: opt(args, 'agent'),
      cacheDir: opt(args, 'cache') ?? join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'larch', 'debs'),
      defaultTimestamp: Number(process.env.SOURCE_DATE_EPOCH || 0) || 0,
      workDir: opt(args, 'work-dir'),
      bootSizeMiB: intOption(opt(args, 'boot-size'), 'boot-size', 'image build', 32),
      rootSizeMiB: intOption(opt(args, 'root-size'), 'root-size', 'image build', 64),
      firmwareDir: opt(args, 'firmware-dir'),
      progress: io.isTTY && !args.json ? (m) => io.err(`${m}\n`) : undefined,
    });
    if (args.json) printJson(io, result);
    else io.out(`${result.out}: ${result.board}, version ${result.version} (${result.commit.slice(0, 12)}) on ${result.ref}; ${Math.round(result.layout.size / 1048576)} MiB (boot ${result.layout.boot.size / 1048576} MiB, root ${result.layout.root.size / 1048576} MiB)\n`);
  },
};

/**
 * A partitioned disk image from a sysroot directory, without root: the boot partition (FAT, made
 * with mkfs.vfat and filled with mtools' mcopy) holds the sysroot's /boot; the root partition
 * (ext4, `mkfs.ext4 -d`) holds the rest; sfdisk writes an MBR partition table into the image file;
 * dd places the filesystems and GRUB's boot.img and core.img (i386-pc, from grub-pc-bin).
 */
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { runTool, stderrTail } from '../compose/_run.ts';

const MiB = 1024 * 1024;
const SECTOR = 512;
/** The first partition starts at 1 MiB; GRUB's core.img sits in the gap after the MBR (LBA 1). */
const FIRST_LBA = 2048;

/** The GRUB modules of core.img: enough for board/grub/grub.cfg, the grubenv on FAT and linux boot. */
export const GRUB_MODULES = ['biosdisk', 'part_msdos', 'fat', 'ext2', 'normal', 'configfile', 'loadenv', 'test', 'echo', 'linux', 'sleep', 'halt', 'reboot', 'serial', 'terminal', 'cat', 'ls'];
const GRUB_I386_DIR = '/usr/lib/grub/i386-pc';

export interface DiskLayout {
  /** Bytes of the whole image, partitions in bytes (multiples of 1 MiB). */
  size: number;
  boot: { start: number; size: number };
  root: { start: number; size: number };
}

export interface BuildDiskOptions {
  /** The sysroot directory: its boot/ becomes the boot partition (boot/ itself stays as the mount point). */
  sysroot: string;
  out: string;
  workDir: string;
  /** Contents of the boot partition's /grub/grub.cfg (sets the board's variables, then sources larch.cfg). */
  grubCfg: string;
  /** board/grub/grub.cfg, installed as /grub/larch.cfg. */
  larchCfg: string;
  bootSizeMiB?: number;
  rootSizeMiB?: number;
}

/** @throws IO or TOOL_MISSING when a tool fails */
async function tool(cmd: string, args: string[], provider: string, cwd?: string): Promise<string> {
  const r = await runTool(cmd, args, { cwd }).catch((err: unknown) => {
    if (err instanceof LarchError && err.code === 'TOOL_MISSING') throw new LarchError('TOOL_MISSING', `image build: '${cmd}' is not installed`, { hint: `apt-get install ${provider}` });
    throw err;
  });
  if (r.code !== 0) throw new LarchError('IO', `image build: ${cmd} failed: ${stderrTail(r.stderr) || `exit ${r.code}`}`, { data: { tool: cmd } });
  return r.stdout;
}

/** Bytes used by a tree, as du counts them (blocks), for sizing the partitions. */
async function treeBytes(dir: string): Promise<number> {
  const out = await tool('du', ['-s', '-B1', '--', dir], 'coreutils');
  return Number(out.split(/\s/)[0]);
}

const roundMiB = (bytes: number) => Math.ceil(bytes / MiB) * MiB;

export function planLayout(bootBytes: number, rootBytes: number, opts: { bootSizeMiB?: number; rootSizeMiB?: number } = {}): DiskLayout {
  // The boot partition holds two slots' kernels and initramfs: room for a second slot, and more.
  const bootSize = opts.bootSizeMiB ? opts.bootSizeMiB * MiB : Math.max(64 * MiB, roundMiB(bootBytes * 3 + 8 * MiB));
  // The root partition holds the repo, slot A, and must take slot B and an update's objects.
  const rootSize = opts.rootSizeMiB ? opts.rootSizeMiB * MiB : roundMiB(rootBytes * 2 + 128 * MiB);
  const bootStart = FIRST_LBA * SECTOR;
  const rootStart = bootStart + bootSize;
  return { size: rootStart + rootSize, boot: { start: bootStart, size: bootSize }, root: { start: rootStart, size: rootSize } };
}

export async function buildDisk(opts: BuildDiskOptions): Promise<DiskLayout> {
  const bootTree = join(opts.workDir, 'boot-partition');
  await rm(bootTree, { recursive: true, force: true });
  await rename(join(opts.sysroot, 'boot'), bootTree);
  await mkdir(join(opts.sysroot, 'boot'), { mode: 0o755 }); // the mount point
  await mkdir(join(bootTree, 'grub'), { recursive: true });
  await writeFile(join(bootTree, 'grub', 'grub.cfg'), opts.grubCfg);
  await writeFile(join(bootTree, 'grub', 'larch.cfg'), opts.larchCfg);

  const layout = planLayout(await treeBytes(bootTree), await treeBytes(opts.sysroot), opts);
  const bootImg = join(opts.workDir, 'boot.vfat');
  const rootImg = join(opts.workDir, 'root.ext4');
  await rm(bootImg, { force: true });
  await tool('mkfs.vfat', ['-C', '-F', '32', '-n', 'LARCHBOOT', bootImg, String(layout.boot.size / 1024)], 'dosfstools');
  const entries = await readdir(bootTree);
  if (entries.length > 0) await tool('mcopy', ['-s', '-p', '-m', '-i', bootImg, ...entries.map((e) => join(bootTree, e)), '::/'], 'mtools');
  await rm(rootImg, { force: true });
  await tool('mkfs.ext4', ['-q', '-F', '-L', 'larch-root', '-E', 'root_owner=0:0', '-d', opts.sysroot, rootImg, `${layout.root.size / 1024}k`], 'e2fsprogs');

  // core.img: GRUB for BIOS, with an embedded config that puts it on the serial port and reads
  // /grub/grub.cfg of the boot partition.
  const early = join(opts.workDir, 'early.cfg');
  await writeFile(early, 'serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\nset root=(hd0,msdos1)\nset prefix=(hd0,msdos1)/grub\nconfigfile $prefix/grub.cfg\n');
  const core = join(opts.workDir, 'core.img');
  await tool('grub-mkimage', ['-O', 'i386-pc', '-d', GRUB_I386_DIR, '-o', core, '-p', '(hd0,msdos1)/grub', '-c', early, ...GRUB_MODULES], 'grub-pc-bin');
  const coreSize = (await stat(core)).size;
  if (coreSize > (FIRST_LBA - 1) * SECTOR) throw new LarchError('IO', `image build: GRUB core.img is ${coreSize} bytes, more than the gap before the first partition`);

  await rm(opts.out, { force: true });
  await tool('truncate', ['-s', String(layout.size), opts.out], 'coreutils');
  const table = `label: dos\nunit: sectors\nstart=${layout.boot.start / SECTOR}, size=${layout.boot.size / SECTOR}, type=c, bootable\nstart=${layout.root.start / SECTOR}, size=${layout.root.size / SECTOR}, type=83\n`;
  const tableFile = join(opts.workDir, 'table.sfdisk');
  await writeFile(tableFile, table);
  await tool('sh', ['-c', 'sfdisk -q --no-reread --no-tell-kernel "$1" < "$2"', 'sh', opts.out, tableFile], 'fdisk');
  const dd = (input: string, args: string[]) => tool('dd', [`if=${input}`, `of=${opts.out}`, 'conv=notrunc,fsync', 'status=none', ...args], 'coreutils');
  await dd(join(GRUB_I386_DIR, 'boot.img'), ['bs=440', 'count=1']); // keeps the partition table
  await dd(core, ['bs=512', 'seek=1']);
  await dd(bootImg, ['bs=1M', `seek=${layout.boot.start / MiB}`]);
  await dd(rootImg, ['bs=1M', `seek=${layout.root.start / MiB}`]);
  await rm(bootImg, { force: true });
  await rm(rootImg, { force: true });
  return layout;
}

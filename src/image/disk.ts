/**
 * A partitioned disk image from a sysroot directory, without root: the boot partition (FAT, made
 * with mkfs.vfat and filled with mtools' mcopy) holds the sysroot's /boot plus the bootloader's
 * files; the root partition (ext4, `mkfs.ext4 -d`) holds the rest; sfdisk writes the partition
 * table (MBR, or GPT for UEFI, where the boot partition is the EFI system partition) into the
 * image file; dd places the filesystems. What is bootloader-specific (the table, files on the
 * boot partition, boot code before it) comes in a DiskBootloader: grub.ts, uboot.ts,
 * systemd-boot.ts.
 */
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LarchError } from '../errors.ts';
import { tool } from './_tool.ts';

const MiB = 1024 * 1024;
export const SECTOR = 512;
/** The first partition starts at 1 MiB (the gap before it holds GRUB's core.img on BIOS). */
const FIRST_LBA = 2048;

/** GPT partition type GUIDs (UEFI spec; systemd's Discoverable Partitions Specification). */
export const GPT_TYPE = { esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', linux: '0FC63DAF-8483-4772-8E79-3D69D8477DE4' } as const;
/** Room after the last partition for GPT's backup header and table (33 sectors; a whole MiB keeps the sizes round). */
const GPT_BACKUP_BYTES = MiB;

/** What a bootloader adds to the disk. */
export interface DiskBootloader {
  /** The partition table: 'mbr' (default; partition 1 FAT and bootable) or 'gpt' (partition 1 the EFI system partition). */
  table?: 'mbr' | 'gpt';
  /** Files for the boot partition, by path relative to its root (they replace the sysroot's). */
  bootFiles: Record<string, string | Uint8Array>;
  /** Writes boot code into the image after the partition table (MBR code, the gap before partition 1). */
  writeBootCode?(disk: string, firstPartitionStart: number): Promise<void>;
  /**
   * Bytes at fixed offsets of the disk, before partition 1 (a U-Boot env in the board's own
   * storage: fw_env.config's offsets). Partition 1 starts at the next MiB after the last of them.
   */
  rawAreas?: { offset: number; bytes: Uint8Array }[];
}

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
  bootloader: DiskBootloader;
  bootSizeMiB?: number;
  rootSizeMiB?: number;
}

/** Bytes used by a tree, as du counts them (blocks), for sizing the partitions. */
async function treeBytes(dir: string): Promise<number> {
  const out = await tool('du', ['-s', '-B1', '--', dir]);
  return Number(out.split(/\s/)[0]);
}

const roundMiB = (bytes: number) => Math.ceil(bytes / MiB) * MiB;

/**
 * Where partition 1 starts: at 1 MiB, or at the MiB after the last raw area.
 * @throws INVALID_INPUT when an area overlaps the partition table (sector 0; GPT: sectors 0-33)
 */
export function firstPartitionStart(rawAreas: { offset: number; bytes: Uint8Array }[] = [], table: 'mbr' | 'gpt' = 'mbr'): number {
  const tableBytes = (table === 'gpt' ? 34 : 1) * SECTOR;
  const clash = rawAreas.find((a) => a.offset < tableBytes);
  if (clash) throw new LarchError('INVALID_INPUT', `image build: a raw area at offset ${clash.offset} overlaps the partition table (the first ${tableBytes} bytes)`, { data: { offset: clash.offset } });
  return Math.max(FIRST_LBA * SECTOR, roundMiB(Math.max(0, ...rawAreas.map((a) => a.offset + a.bytes.length))));
}

export function planLayout(bootBytes: number, rootBytes: number, opts: { bootSizeMiB?: number; rootSizeMiB?: number; bootStart?: number } = {}): DiskLayout {
  // The boot partition holds two slots' kernels and initramfs: room for a second slot, and more.
  const bootSize = opts.bootSizeMiB ? opts.bootSizeMiB * MiB : Math.max(64 * MiB, roundMiB(bootBytes * 3 + 8 * MiB));
  // The root partition holds the repo, slot A, and must take slot B and an update's objects.
  const rootSize = opts.rootSizeMiB ? opts.rootSizeMiB * MiB : roundMiB(rootBytes * 2 + 128 * MiB);
  const bootStart = opts.bootStart ?? FIRST_LBA * SECTOR;
  const rootStart = bootStart + bootSize;
  return { size: rootStart + rootSize, boot: { start: bootStart, size: bootSize }, root: { start: rootStart, size: rootSize } };
}

export async function buildDisk(opts: BuildDiskOptions): Promise<DiskLayout> {
  const bootTree = join(opts.workDir, 'boot-partition');
  await rm(bootTree, { recursive: true, force: true });
  await rename(join(opts.sysroot, 'boot'), bootTree);
  await mkdir(join(opts.sysroot, 'boot'), { mode: 0o755 }); // the mount point
  for (const [path, content] of Object.entries(opts.bootloader.bootFiles)) {
    await mkdir(dirname(join(bootTree, path)), { recursive: true });
    await writeFile(join(bootTree, path), content);
  }

  const gpt = opts.bootloader.table === 'gpt';
  const rawAreas = opts.bootloader.rawAreas ?? [];
  const planned = planLayout(await treeBytes(bootTree), await treeBytes(opts.sysroot), { ...opts, bootStart: firstPartitionStart(rawAreas, gpt ? 'gpt' : 'mbr') });
  const layout = gpt ? { ...planned, size: planned.size + GPT_BACKUP_BYTES } : planned;
  const bootImg = join(opts.workDir, 'boot.vfat');
  const rootImg = join(opts.workDir, 'root.ext4');
  await rm(bootImg, { force: true });
  await tool('mkfs.vfat', ['-C', '-F', '32', '-n', 'LARCHBOOT', bootImg, String(layout.boot.size / 1024)]);
  const entries = await readdir(bootTree);
  if (entries.length > 0) await tool('mcopy', ['-s', '-p', '-m', '-i', bootImg, ...entries.map((e) => join(bootTree, e)), '::/']);
  await rm(rootImg, { force: true });
  await tool('mkfs.ext4', ['-q', '-F', '-L', 'larch-root', '-E', 'root_owner=0:0', '-d', opts.sysroot, rootImg, `${layout.root.size / 1024}k`]);

  await rm(opts.out, { force: true });
  await tool('truncate', ['-s', String(layout.size), opts.out]);
  await tool('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', opts.out], { input: partitionTable(layout, gpt ? 'gpt' : 'mbr') });
  await opts.bootloader.writeBootCode?.(opts.out, layout.boot.start);
  for (const [i, area] of rawAreas.entries()) {
    const file = join(opts.workDir, `raw-area-${i}`);
    await writeFile(file, area.bytes);
    await tool('dd', [`if=${file}`, `of=${opts.out}`, `seek=${area.offset}`, 'oflag=seek_bytes', 'conv=notrunc,fsync', 'status=none']);
    await rm(file, { force: true });
  }
  // sparse: the image is a fresh truncate, so the filesystems' zero blocks need no writing (most of the root partition).
  const dd = (input: string, args: string[]) => tool('dd', [`if=${input}`, `of=${opts.out}`, 'conv=notrunc,sparse,fsync', 'status=none', ...args]);
  await dd(bootImg, ['bs=1M', `seek=${layout.boot.start / MiB}`]);
  await dd(rootImg, ['bs=1M', `seek=${layout.root.start / MiB}`]);
  await rm(bootImg, { force: true });
  await rm(rootImg, { force: true });
  return layout;
}

/** The sfdisk script of the layout's two partitions. */
export function partitionTable(layout: DiskLayout, table: 'mbr' | 'gpt'): string {
  const at = (p: { start: number; size: number }) => `start=${p.start / SECTOR}, size=${p.size / SECTOR}`;
  // GPT: the firmware finds the ESP by its type; the names are what `lsblk -o PARTLABEL` shows.
  if (table === 'gpt') return `label: gpt\nunit: sectors\n${at(layout.boot)}, type=${GPT_TYPE.esp}, name="esp"\n${at(layout.root)}, type=${GPT_TYPE.linux}, name="larch-root"\n`;
  // Partition 1 bootable: U-Boot's distro_bootcmd looks for boot.scr on bootable partitions only.
  return `label: dos\nunit: sectors\n${at(layout.boot)}, type=c, bootable\n${at(layout.root)}, type=83\n`;
}

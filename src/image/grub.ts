/**
 * The GRUB (BIOS, i386-pc) part of a disk image: /grub/grub.cfg and /grub/larch.cfg on the boot
 * partition, and GRUB's boot.img (MBR code) plus core.img in the gap before the first partition.
 * core.img is made with grub-mkimage (grub-pc-bin), so no grub-install and no root. The boot state
 * (/grub/grubenv, and the LKG marker /grub/larch-lkg-B that larch.cfg tests) comes with the
 * sysroot's /boot, written by provision (createBootEnv in src/agent/boot.ts).
 */
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { tool } from './_tool.ts';
import { type DiskBootloader, SECTOR } from './disk.ts';

/**
 * The GRUB modules of core.img: enough for board/grub/grub.cfg (regexp: the release floor it
 * parses out of BOOT_RELEASES), the grubenv on FAT and linux boot. core.img is all there is: the
 * boot partition has no /grub/i386-pc/ to insmod from.
 */
export const GRUB_MODULES = ['biosdisk', 'part_msdos', 'fat', 'ext2', 'normal', 'configfile', 'loadenv', 'test', 'echo', 'regexp', 'linux', 'sleep', 'halt', 'reboot', 'serial', 'terminal', 'cat', 'ls'];
const GRUB_I386_DIR = '/usr/lib/grub/i386-pc';

export interface GrubBootloaderOptions {
  /** Contents of the boot partition's /grub/grub.cfg (sets the board's variables, then sources larch.cfg). */
  grubCfg: string;
  /** board/grub/grub.cfg, installed as /grub/larch.cfg. */
  larchCfg: string;
  workDir: string;
}

export function grubBootloader(opts: GrubBootloaderOptions): DiskBootloader {
  return {
    bootFiles: { 'grub/grub.cfg': opts.grubCfg, 'grub/larch.cfg': opts.larchCfg },
    async writeBootCode(disk, firstPartitionStart) {
      // core.img with an embedded config that puts GRUB on the serial port and reads
      // /grub/grub.cfg of the boot partition.
      const early = join(opts.workDir, 'early.cfg');
      await writeFile(early, 'serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\nset root=(hd0,msdos1)\nset prefix=(hd0,msdos1)/grub\nconfigfile $prefix/grub.cfg\n');
      const core = join(opts.workDir, 'core.img');
      await tool('grub-mkimage', ['-O', 'i386-pc', '-d', GRUB_I386_DIR, '-o', core, '-p', '(hd0,msdos1)/grub', '-c', early, ...GRUB_MODULES]);
      const coreSize = (await stat(core)).size;
      if (coreSize > firstPartitionStart - SECTOR) throw new LarchError('IO', `image build: GRUB core.img is ${coreSize} bytes, more than the gap before the first partition`, { data: { size: coreSize, max_bytes: firstPartitionStart - SECTOR } });
      const dd = (input: string, args: string[]) => tool('dd', [`if=${input}`, `of=${disk}`, 'conv=notrunc,fsync', 'status=none', ...args]);
      await dd(join(GRUB_I386_DIR, 'boot.img'), ['bs=440', 'count=1']); // keeps the partition table
      await dd(core, ['bs=512', 'seek=1']); // boot.img's block list points at LBA 1
    },
  };
}

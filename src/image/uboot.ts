/**
 * The U-Boot part of a disk image: /boot.scr on the boot partition, which U-Boot's distro_bootcmd
 * finds on a bootable partition. It is the board's settings followed by board/uboot/boot.cmd,
 * wrapped by mkimage (u-boot-tools). The boot state (the redundant env uboot.env + uboot-redund.env,
 * and the LKG marker larch-lkg-B when B is the last known good slot) is already in the sysroot's
 * /boot, written by provision (createBootEnv in src/agent/boot.ts); U-Boot itself comes from the board's firmware, so nothing goes before the
 * first partition.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../errors.ts';
import { tool } from './_tool.ts';
import type { DiskBootloader } from './disk.ts';

export interface UbootBootloaderOptions {
  /** U-Boot's name for the architecture (mkimage -A): arm64, arm. */
  arch: string;
  /** The image name recorded in the script's header. */
  name: string;
  /** Variables set before boot.cmd runs (larch_bootargs, larch_kernel, ...). */
  settings: Record<string, string>;
  /** board/uboot/boot.cmd */
  bootCmd: string;
  workDir: string;
}

/** The script text: `setenv` lines for the settings, then boot.cmd. Pure. */
export function ubootScript(settings: Record<string, string>, bootCmd: string, header: string): string {
  const lines = Object.entries(settings).map(([name, value]) => {
    // Values go inside hush double quotes: a quote, $ or backslash would be re-read by U-Boot.
    if (!/^[a-z_][a-z0-9_]*$/.test(name) || /["$\\\n]/.test(value)) throw new LarchError('INVALID_INPUT', `image build: U-Boot setting ${name}=${JSON.stringify(value)} cannot be written to boot.scr`, { hint: 'use names of [a-z0-9_] and values without ", $, \\ or newlines', data: { name, value } });
    return `setenv ${name} "${value}"`;
  });
  return `# ${header}\n${lines.join('\n')}\n\n${bootCmd}`;
}

export async function ubootBootloader(opts: UbootBootloaderOptions): Promise<DiskBootloader> {
  const cmd = join(opts.workDir, 'boot.cmd');
  const scr = join(opts.workDir, 'boot.scr');
  await writeFile(cmd, ubootScript(opts.settings, opts.bootCmd, `larch: ${opts.name}. Board settings, then board/uboot/boot.cmd.`));
  await tool('mkimage', ['-A', opts.arch, '-O', 'linux', '-T', 'script', '-C', 'none', '-n', `larch ${opts.name}`, '-d', cmd, scr]);
  return { bootFiles: { 'boot.scr': await readFile(scr) } };
}

/**
 * The systemd-boot part of a disk image (UEFI): a GPT disk whose boot partition is the EFI system
 * partition, with systemd-boot at the removable-media path /EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI on
 * arm64), which the firmware starts when its NVRAM names no boot entry, so nothing is written to
 * NVRAM and a board boots the disk as flashed. The loader's files (loader/loader.conf, the
 * entries, larch.env) are already in the sysroot's /boot, written by provision (createBootEnv in
 * src/agent/boot.ts; docs/boot.md, "systemd-boot").
 *
 * systemd-boot is taken from the commit's own tree (Debian's systemd-boot-efi in the image
 * definition), so the image boots the bootloader its release was composed with; a commit without
 * it gets the build host's.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import type { DiskBootloader } from './disk.ts';

/** UEFI's name for a Debian architecture: systemd-boot's file suffix and the removable-media path's. */
const EFI_ARCH: Record<string, { systemd: string; removable: string }> = {
  amd64: { systemd: 'x64', removable: 'BOOTX64.EFI' },
  arm64: { systemd: 'aa64', removable: 'BOOTAA64.EFI' },
};

/** Where Debian's systemd-boot-efi puts the loader, relative to a tree's root. */
export const systemdBootEfiPath = (efiArch: string) => `usr/lib/systemd/boot/efi/systemd-boot${efiArch}.efi`;

/**
 * The boot partition's files for a systemd-boot board of `architecture`: the loader from `tree`
 * (the deployment's root), else from the build host's root.
 * @throws INVALID_INPUT (an architecture UEFI larch knows no loader for), NOT_FOUND (no systemd-boot in the tree or on the host)
 */
export async function systemdBootBootloader(opts: { architecture: string; tree: string; hostRoot?: string }): Promise<DiskBootloader> {
  const arch = EFI_ARCH[opts.architecture];
  if (!arch) throw new LarchError('INVALID_INPUT', `image build: no systemd-boot for architecture ${opts.architecture} (known: ${Object.keys(EFI_ARCH).join(', ')})`, { data: { architecture: opts.architecture } });
  const rel = systemdBootEfiPath(arch.systemd);
  const candidates = [join(opts.tree, rel), join(opts.hostRoot ?? '/', rel)];
  for (const path of candidates) {
    const loader = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw fromSystemError(err, 'read', path);
    });
    if (loader !== null) return { table: 'gpt', bootFiles: { [`EFI/BOOT/${arch.removable}`]: loader } };
  }
  throw new LarchError('NOT_FOUND', `image build: systemd-boot (/${rel}) is neither in the commit's tree nor on this host`, {
    hint: "add 'systemd-boot-efi' to the image definition's packages (or install it on the build host)",
    data: { path: `/${rel}`, candidates },
  });
}

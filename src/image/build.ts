/**
 * larch image build: an image definition (composed now) or an existing commit becomes a bootable
 * disk image for a board. The sysroot is provisioned exactly as on a device (`provision` over
 * HTTP, from an in-process server on 127.0.0.1 over the repo after `publish`), the larch binary is
 * added as S/larch/bin/larch, and disk.ts lays it out into partitions. No root needed.
 */
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LarchError } from '../errors.ts';
import { LKG_MARKER, UBOOT_ENV_FILE2, fatEnvConfig } from '../agent/boot.ts';
import { provision } from '../agent/provision.ts';
import { httpRemote } from '../agent/remote-http.ts';
import { Sysroot } from '../agent/sysroot.ts';
import { parseFwEnvConfig } from '../bootcount/fw-env-config.ts';
import { DEFAULT_TRIES } from '../bootcount/state.ts';
import { type ComposeResult, METADATA_KEYS, compose } from '../compose/compose.ts';
import { decodePackageList } from '../compose/package-diff.ts';
import { publish } from '../server/publish.ts';
import { startServer } from '../server/serve.ts';
import type { CborValue } from '../store/cbor.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { type DiskBootloader, type DiskLayout, buildDisk } from './disk.ts';
import { grubBootloader } from './grub.ts';
import { ubootBootloader } from './uboot.ts';

/** Seconds: `larch publish`'s default (7 days). */
const SUMMARY_EXPIRES_IN = 7 * 24 * 3600;
/** Where the initramfs mounts the root partition, and where larch finds the sysroot on the device
 * (images/overlay/initramfs/usr/lib/larch/init: `larch boot-check --sysroot /sysroot`). */
export const DEVICE_SYSROOT = '/sysroot';

interface Board {
  bootloader: 'grub' | 'uboot';
  /** Debian architecture: the definition's must match. */
  architecture: string;
  /** Kernel arguments; the boot script appends larch.slot=A|B. */
  bootargs: string;
  /** U-Boot boards: mkimage's -A for boot.scr. */
  ubootArch?: string;
}

/** The boards `image build` knows. The disk is virtio (vda) on both; see docs/images.md. */
export const BOARDS = {
  'qemu-x86_64-grub': {
    bootloader: 'grub',
    architecture: 'amd64',
    bootargs: 'console=ttyS0,115200 panic=10 quiet larch.root=/dev/vda2 larch.boot=/dev/vda1',
  },
  // QEMU virt with Debian's u-boot-qemu as firmware; the console is the PL011 UART.
  'qemu-arm64-uboot': {
    bootloader: 'uboot',
    architecture: 'arm64',
    bootargs: 'console=ttyAMA0 panic=10 quiet larch.root=/dev/vda2 larch.boot=/dev/vda1',
    ubootArch: 'arm64',
  },
} satisfies Record<string, Board>;
export type BoardName = keyof typeof BOARDS;

export function isBoard(name: string): name is BoardName {
  return Object.hasOwn(BOARDS, name);
}

export interface ImageBuildOptions {
  board: BoardName;
  out: string;
  /** Compose this definition first; else `rev` names an existing commit. */
  definitionPath?: string;
  rev?: string;
  /** The ref the device follows (default: the definition's, or the one ref that points at rev). */
  ref?: string;
  /** Signs the composed commit and the published summary. */
  signKeys: SecretKey[];
  /** Public key files the device trusts. */
  trustedKeys: string[];
  /** The update server recorded in the device's config. */
  repoUrl: string;
  /** The larch binary for the board's architecture (S/larch/bin/larch). */
  larchBinary: string;
  cacheDir: string;
  defaultTimestamp: number;
  workDir?: string;
  bootSizeMiB?: number;
  rootSizeMiB?: number;
  progress?: (message: string) => void;
}

export interface ImageBuildResult {
  out: string;
  board: BoardName;
  commit: string;
  version: string;
  ref: string;
  compose: Pick<ComposeResult, 'commit' | 'packages' | 'kernel'> | null;
  layout: DiskLayout;
}

/** A file of board/: from the source tree, the working directory, next to the binary, or next to images/. */
async function boardFile(rel: string, definitionPath?: string): Promise<string> {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '..', '..', 'board', rel), join(process.cwd(), 'board', rel), join(dirname(process.execPath), '..', 'board', rel)];
  if (definitionPath) candidates.push(join(dirname(resolve(definitionPath)), '..', 'board', rel));
  for (const c of candidates) {
    const text = await readFile(c, 'utf8').catch(() => null);
    if (text !== null) return text;
  }
  throw new LarchError('NOT_FOUND', `image build: board/${rel} not found (looked in ${candidates.join(', ')})`, { hint: 'run from the larch source tree' });
}

export async function imageBuild(repo: Repo, opts: ImageBuildOptions): Promise<ImageBuildResult> {
  const board: Board = BOARDS[opts.board];
  if (opts.trustedKeys.length === 0) throw new LarchError('USAGE', 'image build: --keys K.pub is required (the keys the device trusts)');
  if (opts.signKeys.length === 0) throw new LarchError('USAGE', 'image build: --sign-key K.key is required (the summary the device reads must be signed)');
  // Read before any work, so a missing board/ file fails fast.
  const script = await boardFile(board.bootloader === 'grub' ? 'grub/grub.cfg' : 'uboot/boot.cmd', opts.definitionPath);
  const log = opts.progress ?? (() => {});

  let composed: ComposeResult | null = null;
  let commit: string;
  let ref = opts.ref;
  if (opts.definitionPath) {
    log(`composing ${opts.definitionPath}`);
    composed = await compose(repo, { definitionPath: opts.definitionPath, cacheDir: opts.cacheDir, defaultTimestamp: opts.defaultTimestamp, signKeys: opts.signKeys, workDir: opts.workDir });
    if (composed.architecture !== board.architecture) throw new LarchError('INVALID_INPUT', `image build: ${opts.definitionPath} is for ${composed.architecture}, board ${opts.board} is ${board.architecture}`);
    commit = composed.commit;
    ref ??= composed.ref;
  } else if (opts.rev) {
    commit = await repo.resolveRev(opts.rev);
    // Before any work: an image of another architecture's commit would be built, and never boot.
    const architectures = commitArchitectures((await repo.readCommit(commit)).metadata);
    const foreign = architectures.filter((a) => a !== board.architecture);
    if (foreign.length > 0) {
      throw new LarchError('INVALID_INPUT', `image build: commit ${commit.slice(0, 12)} (${opts.rev}) is for ${architectures.join(', ')}, board ${opts.board} is ${board.architecture}`, {
        hint: `build an image of a commit composed for ${board.architecture}, or choose a board of ${foreign[0]}`,
        data: { commit, architecture: architectures.join(','), board: opts.board, board_architecture: board.architecture },
      });
    }
    if (!ref) {
      const refs = (await repo.listRefs()).filter((r) => r.commit === commit).map((r) => r.branch);
      if (refs.length !== 1) throw new LarchError('USAGE', `image build: pass --ref: ${refs.length === 0 ? 'no ref points at' : `several refs point at`} ${commit.slice(0, 12)}`);
      ref = refs[0];
    }
  } else {
    throw new LarchError('USAGE', 'image build: give a definition, or --rev REV of a commit in --repo');
  }
  const version = (await repo.readCommit(commit)).version;

  // The device reads a signed summary, as from any remote: publish R's (as `larch publish` with
  // its default expiry, so a vendor repo is left with a normal summary, not a short-lived one).
  log('publishing the summary');
  await publish(repo, { signKeys: opts.signKeys, expiresInSeconds: SUMMARY_EXPIRES_IN });

  const work = await mkdtemp(join(opts.workDir ?? tmpdir(), 'larch-image-'));
  try {
    const sysrootPath = join(work, 'sysroot');
    await mkdir(sysrootPath);
    const server = await startServer({ root: repo.path, host: '127.0.0.1', port: 0 });
    try {
      log(`provisioning the sysroot from ${server.url}`);
      await provision(new Sysroot(sysrootPath), {
        remote: httpRemote(server.url),
        remoteUrl: opts.repoUrl,
        remoteKind: 'http',
        ref: ref!,
        keys: opts.trustedKeys.map((k) => resolve(k)),
        bootloader: board.bootloader,
        tries: DEFAULT_TRIES,
        target: commit,
      });
    } finally {
      await server.close();
    }
    const bin = join(sysrootPath, 'larch', 'bin', 'larch');
    await mkdir(dirname(bin), { recursive: true });
    await copyFile(opts.larchBinary, bin);
    await chmod(bin, 0o755);

    log(`writing ${opts.out}`);
    const bootloader = board.bootloader === 'grub' ? grubFiles(opts.board, board, script, work) : await ubootFiles(opts.board, board, script, sysrootPath, work);
    const layout = await buildDisk({ sysroot: sysrootPath, out: opts.out, workDir: work, bootloader, bootSizeMiB: opts.bootSizeMiB, rootSizeMiB: opts.rootSizeMiB });
    return { out: opts.out, board: opts.board, commit, version, ref: ref!, compose: composed ? { commit: composed.commit, packages: composed.packages, kernel: composed.kernel } : null, layout };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * The Debian architectures a commit is recorded for: compose's larch.architecture, else those of
 * its package list (not `all`). Empty when it records neither (a commit made from a directory
 * with `larch commit`): then nothing says what it runs on, and the build goes ahead.
 */
export function commitArchitectures(metadata: Map<string, CborValue>): string[] {
  const recorded = metadata.get(METADATA_KEYS.architecture);
  if (typeof recorded === 'string') return [recorded];
  const fromPackages = new Set((decodePackageList(metadata) ?? []).map((p) => p.architecture).filter((a) => a !== 'all'));
  return [...fromPackages].sort();
}

/** GRUB: a grub.cfg that sets the board's variables and sources larch.cfg (board/grub/grub.cfg). */
function grubFiles(name: BoardName, board: Board, larchCfg: string, work: string): DiskBootloader {
  const grubCfg = `# larch: board ${name}. The boot state logic is larch.cfg (board/grub/grub.cfg).\nset larch_bootargs="${board.bootargs}"\nsource \${prefix}/larch.cfg\n`;
  return grubBootloader({ grubCfg, larchCfg, workDir: work });
}

/**
 * U-Boot: boot.scr (the board's settings, then board/uboot/boot.cmd). provision wrote the
 * redundant env (uboot.env and uboot-redund.env) and an fw_env.config naming them by their paths
 * on this build host; the device reads the same files under DEVICE_SYSROOT/boot (the boot
 * partition), so the config is rewritten to that.
 */
async function ubootFiles(name: BoardName, board: Board, bootCmd: string, sysrootPath: string, work: string): Promise<DiskBootloader> {
  const sysroot = new Sysroot(sysrootPath);
  const configPath = sysroot.fwEnvConfigPath();
  const config = parseFwEnvConfig(await readFile(configPath, 'utf8'), `'${configPath}'`);
  const size = `0x${config.envSizeBytes.toString(16)}`;
  await writeFile(configPath, fatEnvConfig(join(DEVICE_SYSROOT, 'boot')));
  return ubootBootloader({
    arch: board.ubootArch ?? 'arm64',
    name,
    // The deployer names the slot's files vmlinuz and initrd.img (arm64's vmlinuz is an Image, as booti wants).
    settings: { larch_bootargs: board.bootargs, larch_kernel: 'vmlinuz', larch_initrd: 'initrd.img', larch_env: 'fat', larch_env_file: 'uboot.env', larch_env_file2: UBOOT_ENV_FILE2, larch_env_size: size, larch_lkg_marker: LKG_MARKER },
    bootCmd,
    workDir: work,
  });
}

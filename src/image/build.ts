/**
 * larch image build: an image definition (composed now) or an existing commit becomes a bootable
 * disk image for a board. The sysroot is provisioned exactly as on a device (`provision`, reading
 * the repo's files through the local fetcher, with a summary signed for this build and never
 * written into the repo), the larch binary is added as S/larch/bin/larch when the commit carries
 * no agent of its own (/usr/bin/larch), and disk.ts lays it out
 * into partitions. No root needed.
 */
import { chmod, copyFile, lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LarchError } from '../errors.ts';
import { LKG_MARKER, UBOOT_ENV_FILES, fatEnvConfig } from '../agent/boot.ts';
import { provision } from '../agent/provision.ts';
import { isAgentFile, legacyAgentPath, treeAgentPath } from '../agent/agent-binary.ts';
import { formatCommandLine } from '../agent/kargs.ts';
import type { FileFetcher } from '../agent/remote/fetcher.ts';
import { localFetcher } from '../agent/remote/local-fetch.ts';
import { remoteOver } from '../agent/remote/remote.ts';
import { type BootloaderKind, Sysroot } from '../agent/sysroot.ts';
import { formatFwEnvConfig, parseFwEnvConfig } from '../bootcount/fw-env-config.ts';
import { DEFAULT_TRIES } from '../bootcount/state.ts';
import { type ComposeResult, METADATA_KEYS, compose } from '../compose/compose.ts';
import { decodePackageList } from '../packages/package-diff.ts';
import { encodeSummary, signSummary } from '../protocol/summary.ts';
import { deltaTrust, publishedSerial, summaryContents } from '../server/publish.ts';
import { type Binding, commitBinding } from '../store/binding.ts';
import type { CborValue } from '../store/cbor.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { type DiskBootloader, type DiskLayout, buildDisk } from './disk.ts';
import { grubBootloader } from './grub.ts';
import { type BoardProfile, isProfileName, parseBoardProfile, profileKargs } from './profile.ts';
import { systemdBootBootloader } from './systemd-boot.ts';
import { ubootBootloader } from './uboot.ts';

/** Seconds the build's own summary is valid: it is read once, by the provision below. */
const BUILD_SUMMARY_EXPIRES_IN = 3600;
/** Where the initramfs mounts the root partition, and where larch finds the sysroot on the device
 * (images/overlay/initramfs/usr/lib/larch/init: `larch boot-check --sysroot /sysroot`). */
export const DEVICE_SYSROOT = '/sysroot';

export interface ImageBuildOptions {
  /** The board's profile (loadBoardProfile). */
  board: BoardProfile;
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
  /**
   * The device's hardware-compatibility id (provision --compatible): default the commit's
   * larch.compatible, else the board's name.
   */
  compatible?: string;
  /** Composing: the agent the image carries at /usr/bin/larch instead of the definition's `agent`. */
  agent?: string;
  /** The larch binary for the board's architecture (S/larch/bin/larch), for a commit that carries no agent. */
  larchBinary: string;
  cacheDir: string;
  defaultTimestamp: number;
  workDir?: string;
  bootSizeMiB?: number;
  rootSizeMiB?: number;
  /** Where the profile's `firmware` boot files are (the Raspberry Pi's start4.elf, fixup4.dat). */
  firmwareDir?: string;
  progress?: (message: string) => void;
}

export interface ImageBuildResult {
  out: string;
  /** The board's name. */
  board: string;
  commit: string;
  version: string;
  ref: string;
  compose: Pick<ComposeResult, 'commit' | 'packages' | 'kernel'> | null;
  layout: DiskLayout;
}

/** Where board/ may be: the source tree, the working directory, next to the binary, next to images/. */
function boardDirs(definitionPath?: string): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const dirs = [join(here, '..', '..', 'board'), join(process.cwd(), 'board'), join(dirname(process.execPath), '..', 'board')];
  if (definitionPath) dirs.push(join(dirname(resolve(definitionPath)), '..', 'board'));
  return dirs;
}

/** A file of board/ as bytes (a board's firmware files need not be text), with the path it was read from, or null. */
async function findBoardFileBytes(rel: string, definitionPath?: string): Promise<{ bytes: Buffer; path: string } | null> {
  for (const dir of boardDirs(definitionPath)) {
    const path = join(dir, rel);
    const bytes = await readFile(path).catch(() => null);
    if (bytes !== null) return { bytes, path };
  }
  return null;
}

/** A file of board/, with the path it was read from, or null. */
async function findBoardFile(rel: string, definitionPath?: string): Promise<{ text: string; path: string } | null> {
  const found = await findBoardFileBytes(rel, definitionPath);
  return found && { text: found.bytes.toString('utf8'), path: found.path };
}

/** A file of board/. @throws NOT_FOUND */
async function boardFile(rel: string, definitionPath?: string): Promise<string> {
  const found = await findBoardFile(rel, definitionPath);
  if (found) return found.text;
  const candidates = boardDirs(definitionPath).map((d) => join(d, rel));
  throw new LarchError('NOT_FOUND', `image build: board/${rel} not found (looked in ${candidates.join(', ')})`, { hint: 'run from the larch source tree', data: { path: `board/${rel}`, candidates } });
}

/** The boards whose profiles the first board/profiles/ found holds, sorted. */
export async function listBoards(definitionPath?: string): Promise<string[]> {
  for (const dir of boardDirs(definitionPath)) {
    const names = await readdir(join(dir, 'profiles')).catch(() => null);
    if (names !== null) return names.filter((n) => n.endsWith('.toml')).map((n) => n.slice(0, -'.toml'.length)).filter(isProfileName).sort();
  }
  return [];
}

/**
 * The profile of the board `name`: board/profiles/NAME.toml (docs/images.md, "Board profiles").
 * @throws USAGE (no such board, with the known ones), INVALID_INPUT (a bad profile)
 */
export async function loadBoardProfile(name: string, definitionPath?: string): Promise<BoardProfile> {
  const found = isProfileName(name) ? await findBoardFile(`profiles/${name}.toml`, definitionPath) : null;
  if (found === null) {
    const known = await listBoards(definitionPath);
    throw new LarchError('USAGE', `image build: unknown board '${name}' (known: ${known.join(', ')})`, { hint: 'a board is a profile in board/profiles/NAME.toml (docs/images.md, "Board profiles")', data: { command: 'image build', option: 'board', value: name, allowed: known } });
  }
  return parseBoardProfile(found.text, name, found.path);
}

export async function imageBuild(repo: Repo, opts: ImageBuildOptions): Promise<ImageBuildResult> {
  const board = opts.board;
  if (opts.trustedKeys.length === 0) throw new LarchError('USAGE', 'image build: --keys K.pub is required (the keys the device trusts)', { data: { command: 'image build', option: 'keys' } });
  if (opts.signKeys.length === 0) throw new LarchError('USAGE', 'image build: --sign-key K.key is required (the summary the device reads must be signed)', { data: { command: 'image build', option: 'sign-key' } });
  requireFirmwareDir(board, opts.firmwareDir);
  // Read before any work, so a missing board/ file fails fast.
  // systemd-boot has no script: its entries are data provision writes (docs/boot.md, "systemd-boot").
  const script = board.bootloader === 'systemd-boot' ? '' : await boardFile(board.bootloader === 'grub' ? 'grub/grub.cfg' : 'uboot/boot.cmd', opts.definitionPath);
  const log = opts.progress ?? (() => {});

  let composed: ComposeResult | null = null;
  let commit: string;
  let ref = opts.ref;
  if (opts.definitionPath) {
    log(`composing ${opts.definitionPath}`);
    composed = await compose(repo, { definitionPath: opts.definitionPath, cacheDir: opts.cacheDir, defaultTimestamp: opts.defaultTimestamp, signKeys: opts.signKeys, workDir: opts.workDir, agent: opts.agent });
    if (composed.architecture !== board.architecture) throw new LarchError('INVALID_INPUT', `image build: ${opts.definitionPath} is for ${composed.architecture}, board ${board.name} is ${board.architecture}`, { data: { path: opts.definitionPath, architecture: composed.architecture, board: board.name, board_architecture: board.architecture } });
    commit = composed.commit;
    ref ??= composed.ref;
  } else if (opts.rev) {
    commit = await repo.resolveRev(opts.rev);
    // Before any work: an image of another architecture's commit would be built, and never boot.
    const architectures = commitArchitectures((await repo.readCommit(commit)).metadata);
    const foreign = architectures.filter((a) => a !== board.architecture);
    if (foreign.length > 0) {
      throw new LarchError('INVALID_INPUT', `image build: commit ${commit.slice(0, 12)} (${opts.rev}) is for ${architectures.join(', ')}, board ${board.name} is ${board.architecture}`, {
        hint: `build an image of a commit composed for ${board.architecture}, or choose a board of ${foreign[0]}`,
        data: { commit, architecture: architectures.join(','), board: board.name, board_architecture: board.architecture },
      });
    }
    if (!ref) {
      const refs = (await repo.listRefs()).filter((r) => r.commit === commit).map((r) => r.branch);
      if (refs.length !== 1) throw new LarchError('USAGE', `image build: pass --ref: ${refs.length === 0 ? 'no ref points at' : `several refs point at`} ${commit.slice(0, 12)}`, { data: { command: 'image build', option: 'ref', commit, refs } });
      ref = refs[0];
    }
  } else {
    throw new LarchError('USAGE', 'image build: give a definition, or --rev REV of a commit in --repo', { data: { command: 'image build', options: ['definition', 'rev'] } });
  }
  const version = (await repo.readCommit(commit)).version;

  const work = await mkdtemp(join(opts.workDir ?? tmpdir(), 'larch-image-'));
  try {
    const sysrootPath = join(work, 'sysroot');
    await mkdir(sysrootPath);
    log(`provisioning the sysroot from ${repo.path}`);
    // The device is bound to the board's architecture and hardware (agent/product-binding.ts).
    const compatible = opts.compatible ?? commitBinding((await repo.readCommit(commit)).metadata).compatible ?? board.name;
    // U-Boot: the env where this build host can write it (files in the sysroot's /boot, or a file standing in for the disk's raw area).
    const env = board.bootloader === 'uboot' ? await ubootEnvPlan(board, sysrootPath, work, opts.definitionPath) : null;
    await provisionFromRepo(repo, sysrootPath, { ref: ref!, commit, signKeys: opts.signKeys, trustedKeys: opts.trustedKeys, repoUrl: opts.repoUrl, bootloader: board.bootloader, bind: { architecture: board.architecture, compatible }, kargs: profileKargs(board), ...(env ? { fwEnvConfig: env.buildConfigPath } : {}), ...(env?.raw ? { envDefaults: env.raw.defaultsPath } : {}) });
    // A commit carrying its agent (/usr/bin/larch) runs it; one without gets the legacy S/larch/bin/larch.
    const sysroot = new Sysroot(sysrootPath);
    if (!(await isAgentFile(treeAgentPath(sysroot.deployDir('A'))))) {
      const bin = legacyAgentPath(sysroot);
      await mkdir(dirname(bin), { recursive: true });
      await copyFile(opts.larchBinary, bin);
      await chmod(bin, 0o755);
    }

    log(`writing ${opts.out}`);
    const loader =
      board.bootloader === 'grub' ? grubFiles(board, script, work)
      : board.bootloader === 'uboot' ? await ubootFiles(board, script, sysrootPath, env!, work)
      : await systemdBootBootloader({ architecture: board.architecture, tree: sysroot.deployDir('A') });
    const extra = await boardBootFiles(board, sysroot.deployDir('A'), opts);
    const bootloader = { ...loader, bootFiles: { ...extra, ...loader.bootFiles } };
    const layout = await buildDisk({ sysroot: sysrootPath, out: opts.out, workDir: work, bootloader, bootSizeMiB: opts.bootSizeMiB, rootSizeMiB: opts.rootSizeMiB });
    return { out: opts.out, board: board.name, commit, version, ref: ref!, compose: composed ? { commit: composed.commit, packages: composed.packages, kernel: composed.kernel } : null, layout };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Provisions sysrootPath with commit of R as a device's factory set-up does (`provision`), reading
 * R's files through the local fetcher, as `provision --repo-url R` would. The device reads a
 * signed summary, as from any remote: this one is R's refs and deltas now, signed for this build
 * and kept in memory, so R's published summary (what devices in the field read) is left as it
 * is. Its serial is the published one (0 when none), so the image's device accepts R's current
 * summary and every later one (a higher serial would refuse R's until the next publish).
 */
export async function provisionFromRepo(repo: Repo, sysrootPath: string, opts: { ref: string; commit: string; signKeys: SecretKey[]; trustedKeys: string[]; repoUrl: string; bootloader: BootloaderKind; bind?: Partial<Binding>; kargs?: string[]; fwEnvConfig?: string; envDefaults?: string }): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const { refs, deltas } = await summaryContents(repo, await deltaTrust(repo, opts.signKeys));
  const summary = encodeSummary({ serial: await publishedSerial(repo), created: now, expires: now + BUILD_SUMMARY_EXPIRES_IN, refs, deltas, ...(repo.collectionId === null ? {} : { collectionId: repo.collectionId }) });
  const fetcher = withFiles(localFetcher(repo.path), { summary, 'summary.sig': await signSummary(summary, opts.signKeys) });
  await provision(new Sysroot(sysrootPath), {
    remote: remoteOver(fetcher),
    remoteUrl: opts.repoUrl,
    remoteKind: 'http',
    ref: opts.ref,
    keys: opts.trustedKeys.map((k) => resolve(k)),
    bootloader: opts.bootloader,
    tries: DEFAULT_TRIES,
    target: opts.commit,
    bind: opts.bind,
    kargs: opts.kargs,
    ...(opts.fwEnvConfig === undefined ? {} : { fwEnvConfig: opts.fwEnvConfig }),
    ...(opts.envDefaults === undefined ? {} : { envDefaults: opts.envDefaults }),
  });
}

/** A fetcher answering these repo-relative paths from memory, and every other one from f. */
function withFiles(f: FileFetcher, files: Record<string, Uint8Array>): FileFetcher {
  return {
    ...f,
    fetchBytes: async (path, o) => (Object.hasOwn(files, path) ? files[path] : f.fetchBytes(path, o)),
    exchange: (signal, fn) => f.exchange(signal, (inner) => fn(withFiles(inner, files))),
  };
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
function grubFiles(board: BoardProfile, larchCfg: string, work: string): DiskBootloader {
  // The profile's arguments hold no quote, `$` or `\` (profile.ts), so they pass GRUB's quoting as they are.
  const grubCfg = `# larch: board ${board.name}. The boot state logic is larch.cfg (board/grub/grub.cfg).\nset larch_bootargs="${formatCommandLine(profileKargs(board))}"\nsource \${prefix}/larch.cfg\n`;
  return grubBootloader({ grubCfg, larchCfg, workDir: work });
}

/**
 * Where provision writes a U-Boot board's env on this build host, and what the device's
 * fw_env.config says. `files`: the two files in the sysroot's /boot (the boot partition), named by
 * the device's path under DEVICE_SYSROOT. `raw`: the board's fw_env.config names the disk the image
 * is written to (e.g. /dev/mmcblk0) at its offsets; here a file stands in for the disk's first
 * bytes, and its copies become raw areas of the image.
 */
interface UbootEnvPlan {
  buildConfigPath: string;
  deviceConfig: string;
  layout: NonNullable<BoardProfile['ubootEnv']>;
  /** raw: the stand-in file, the board's default env (provision writes it with larch's state), the copies. */
  raw?: { path: string; defaultsPath: string; devices: { offset: number; size: number }[] };
}

async function ubootEnvPlan(board: BoardProfile, sysrootPath: string, work: string, definitionPath?: string): Promise<UbootEnvPlan> {
  const layout = board.ubootEnv ?? { kind: 'files', files: [...UBOOT_ENV_FILES] };
  const buildConfigPath = join(work, 'fw_env.config.build');
  if (layout.kind === 'files') {
    await writeFile(buildConfigPath, fatEnvConfig(join(sysrootPath, 'boot'), layout.files));
    return { buildConfigPath, deviceConfig: fatEnvConfig(join(DEVICE_SYSROOT, 'boot'), layout.files), layout };
  }
  const found = await findBoardFile(layout.fwEnvConfig, definitionPath);
  const defaultsFile = await findBoardFile(layout.defaultEnv, definitionPath);
  const missing = found === null ? layout.fwEnvConfig : defaultsFile === null ? layout.defaultEnv : null;
  if (missing !== null) throw new LarchError('NOT_FOUND', `image build: board ${board.name}: board/${missing} not found`, { hint: missing === layout.defaultEnv ? "put the board's default env there: U-Boot's build makes it (make u-boot-initial-env), one NAME=VALUE per line" : "put the board's fw_env.config there (board/uboot/fw_env.config.redundant is an example)", data: { board: board.name, path: `board/${missing}` } });
  const config = parseFwEnvConfig(found!.text, `'${found!.path}'`);
  const disks = [...new Set(config.devices.map((d) => d.path))];
  if (disks.length !== 1 || disks[0].startsWith(join(DEVICE_SYSROOT, 'boot')) || disks[0].startsWith('/boot/')) {
    throw new LarchError('INVALID_INPUT', `image build: board ${board.name}: ${found!.path} must name one device, the disk the image is written to (e.g. /dev/mmcblk0), at its offsets; it names ${disks.join(', ')}`, { hint: "an env in files on the boot partition is the profile's env_files, not fw_env_config", data: { board: board.name, path: found!.path, devices: disks } });
  }
  const rawPath = join(work, 'disk-env-area');
  const devices = config.devices.map((d) => ({ offset: d.offset, size: config.envSizeBytes }));
  await writeFile(rawPath, new Uint8Array(Math.max(...devices.map((d) => d.offset + d.size))));
  await writeFile(buildConfigPath, formatFwEnvConfig({ devices: config.devices.map((d) => ({ ...d, path: rawPath })) }));
  return { buildConfigPath, deviceConfig: found!.text, layout, raw: { path: rawPath, defaultsPath: defaultsFile!.path, devices } };
}

/** A profile with `firmware` boot files needs --firmware-dir. @throws USAGE naming the first such file */
function requireFirmwareDir(board: BoardProfile, firmwareDir: string | undefined): void {
  const f = board.bootFiles.find((b) => b.from === 'firmware');
  if (f === undefined || firmwareDir !== undefined) return;
  throw new LarchError('USAGE', `image build: board ${board.name} needs --firmware-dir DIR holding ${f.source} (the board's boot firmware, which larch does not ship)`, { hint: 'docs/images.md, "Board profiles", names where each board\'s firmware comes from', data: { command: 'image build', option: 'firmware-dir', board: board.name, file: f.source } });
}

/**
 * The profile's boot files: from the commit's tree (slot A's deployment), from board/, or from
 * --firmware-dir. @throws NOT_FOUND naming the file and where it was looked for, USAGE (no --firmware-dir)
 */
export async function boardBootFiles(board: BoardProfile, tree: string, opts: Pick<ImageBuildOptions, 'firmwareDir' | 'definitionPath'>): Promise<Record<string, Uint8Array>> {
  requireFirmwareDir(board, opts.firmwareDir);
  const files: Record<string, Uint8Array> = {};
  for (const f of board.bootFiles) {
    const path = f.from === 'tree' ? join(tree, f.source) : f.from === 'firmware' ? join(resolve(opts.firmwareDir!), f.source) : null;
    if (path === null) {
      const found = await findBoardFileBytes(f.source, opts.definitionPath);
      if (found === null) throw new LarchError('NOT_FOUND', `image build: board ${board.name}: board/${f.source} not found (for ${f.path} on the boot partition)`, { hint: 'run from the larch source tree', data: { board: board.name, path: `board/${f.source}` } });
      files[f.path] = found.bytes;
      continue;
    }
    // A path in the tree is read as the tree has it: a symlink there would resolve on this build host.
    if (f.from === 'tree' && (await lstat(path).catch(() => null))?.isSymbolicLink()) {
      throw new LarchError('INVALID_INPUT', `image build: board ${board.name}: the commit's /${f.source} is a symlink (for ${f.path} on the boot partition)`, { hint: "name the file it points to in the profile's boot_files", data: { board: board.name, path: `/${f.source}` } });
    }
    const bytes = await readFile(path).catch(() => null);
    if (bytes === null) {
      const where = f.from === 'tree' ? `the commit's /${f.source}` : path;
      const hint = f.from === 'tree' ? `add the package that ships /${f.source} to the image definition` : `put ${f.source} into ${opts.firmwareDir}`;
      throw new LarchError('NOT_FOUND', `image build: board ${board.name}: ${where} not found (for ${f.path} on the boot partition)`, { hint, data: { board: board.name, path: where, from: f.from } });
    }
    files[f.path] = bytes;
  }
  return files;
}

/**
 * U-Boot: boot.scr (the board's settings, then board/uboot/boot.cmd). provision wrote the boot
 * state where this build host reaches it (ubootEnvPlan); the device's fw_env.config is written
 * now: its env files under DEVICE_SYSROOT/boot, or the board's own file for a raw env, whose
 * copies (the board's default env with larch's state, provision --env-defaults) become raw areas
 * of the image.
 */
async function ubootFiles(board: BoardProfile, bootCmd: string, sysrootPath: string, env: UbootEnvPlan, work: string): Promise<DiskBootloader> {
  const sysroot = new Sysroot(sysrootPath);
  const config = parseFwEnvConfig(await readFile(env.buildConfigPath, 'utf8'), `'${env.buildConfigPath}'`);
  let rawAreas: DiskBootloader['rawAreas'];
  if (env.raw) {
    // provision wrote the board's default env with larch's state (U-Boot boots a stored env instead of its built-in one).
    const area = await readFile(env.raw.path);
    rawAreas = env.raw.devices.map((d) => ({ offset: d.offset, bytes: area.subarray(d.offset, d.offset + d.size) }));
  }
  await writeFile(sysroot.fwEnvConfigPath(), env.deviceConfig);
  const envSettings: Record<string, string> =
    env.layout.kind === 'files'
      ? { larch_env: 'fat', larch_env_file: env.layout.files[0], larch_env_file2: env.layout.files[1], larch_env_size: `0x${config.envSizeBytes.toString(16)}` }
      : { larch_env: 'native' };
  if (board.deviceTree !== undefined) {
    const dtb = join(sysrootPath, 'boot', 'A', 'dtbs', board.deviceTree);
    if ((await readFile(dtb).catch(() => null)) === null) throw new LarchError('NOT_FOUND', `image build: board ${board.name} loads the device tree dtbs/${board.deviceTree}, which the commit's /boot/dtbs/ does not hold`, { hint: `add its path (e.g. "usr/lib/linux-image-*/broadcom/${board.deviceTree}") to the definition's [boot] files`, data: { board: board.name, device_tree: board.deviceTree } });
  }
  const script = await ubootBootloader({
    arch: board.ubootArch ?? 'arm64',
    name: board.name,
    // The deployer names the slot's files vmlinuz and initrd.img (arm64's vmlinuz is an Image, as booti wants).
    settings: { larch_bootargs: formatCommandLine(profileKargs(board)), larch_kernel: 'vmlinuz', larch_initrd: 'initrd.img', ...(board.deviceTree === undefined ? {} : { larch_fdt: `dtbs/${board.deviceTree}` }), ...envSettings, larch_lkg_marker: LKG_MARKER },
    bootCmd,
    workDir: work,
  });
  return rawAreas === undefined ? script : { ...script, rawAreas };
}

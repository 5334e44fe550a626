/**
 * Board profiles (`board/profiles/NAME.toml`, docs/images.md "Board profiles"): what `larch image
 * build` needs to know of a board, as data instead of code: its bootloader, architecture, serial
 * console and default kernel arguments, and how the initramfs finds the root and boot
 * partitions (by filesystem label or UUID, never by a device name, which depends on the order in
 * which the kernel probes disks). Pure: the caller reads the file.
 */
import { describe, fail, onlyFields, readTomlFile, str, strings, table } from '../_toml-fields.ts';
import { LarchError, quash } from '../errors.ts';
import { kargKey, kargProblem } from '../agent/kargs.ts';
import { BOOTLOADER_KINDS, type BootloaderKind } from '../agent/sysroot.ts';

export interface BoardProfile {
  /** The file's name without `.toml`: what `image build --board` takes. */
  name: string;
  /** The backend provision sets up, and the disk layout image build writes (systemd-boot: GPT, the ESP first). */
  bootloader: BootloaderKind;
  /** Debian architecture: the image definition's must match. */
  architecture: string;
  /** mkimage's -A for boot.scr (U-Boot boards). */
  ubootArch?: string;
  /** The kernel's console= value (a serial port and its speed), when the board has a serial console. */
  console?: string;
  /** Default kernel arguments besides the console and the partitions. */
  kargs: string[];
  /** The root (ext4) and boot (FAT) partitions, as LABEL=... or UUID=... */
  root: string;
  boot: string;
  /** U-Boot boards: the device tree the boot script loads for the slot's kernel, a file name in the commit's /boot/dtbs/. */
  deviceTree?: string;
  /** U-Boot boards: where larch's boot state lives (default: two files on the boot partition). */
  ubootEnv?: UbootEnvLayout;
  /** Files image build puts on the boot partition for the board's firmware (the Raspberry Pi's start4.elf, config.txt, U-Boot). */
  bootFiles: BoardBootFile[];
}

/**
 * U-Boot boards: `files`, a redundant env in two files on the boot partition (one copy each),
 * which boot.cmd reads and writes itself (larch_env=fat); or `raw`, U-Boot's own env storage
 * (larch_env=native) as the board's fw_env.config lays it out on the disk the image is written
 * to, with the board's default env (U-Boot's u-boot-initial-env) written with larch's state.
 */
export type UbootEnvLayout = { kind: 'files'; files: [string, string] } | { kind: 'raw'; fwEnvConfig: string; defaultEnv: string };

/** A file for the boot partition: from the commit's tree, from board/, or from `image build --firmware-dir`. */
export interface BoardBootFile {
  /** Where it goes, relative to the boot partition's root. */
  path: string;
  from: 'tree' | 'board' | 'firmware';
  /** The source: a path in the commit's tree, under board/, or under the firmware directory. */
  source: string;
}

const FIELDS = ['bootloader', 'architecture', 'uboot_arch', 'console', 'kargs', 'root', 'boot', 'device_tree', 'env_files', 'fw_env_config', 'uboot_default_env', 'boot_files'];
const BOOT_FILE_FIELDS = ['path', 'tree', 'board', 'firmware'];
/** A file name on the boot partition (FAT: no '/', nothing a U-Boot script would interpret). */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
/** A relative path of such names. */
const RELATIVE_PATH = /^[A-Za-z0-9][A-Za-z0-9._+-]*(\/[A-Za-z0-9][A-Za-z0-9._+-]*)*$/;
const NAME = /^[a-z0-9][a-z0-9_-]*$/;
const ARCHITECTURE = /^[a-z0-9][a-z0-9-]*$/;
/** A partition as the initramfs resolves it (busybox findfs): by filesystem label or UUID. */
const PARTITION = /^(LABEL|UUID)=[A-Za-z0-9._-]+$/;
/**
 * Characters a profile's arguments may not hold: they are written into grub.cfg inside double
 * quotes and into a U-Boot script, where quotes, `$` and `\` would be interpreted, not passed on.
 */
const SCRIPT_SPECIAL = /["'$\\`;]/;
/** The arguments larch sets itself: the slot (per boot), the partitions (root and boot above). */
const LARCH_KEYS = ['larch.slot', 'larch.root', 'larch.boot'];

/** True when `name` can be a profile's name (a file name under board/profiles/). */
export const isProfileName = (name: string): boolean => NAME.test(name);

/**
 * Parses and checks a board profile; `name` is the file's name without `.toml`, `file` is used in
 * messages only. @throws INVALID_INPUT naming the file and the field (data: {file, field})
 */
export function parseBoardProfile(text: string, name: string, file: string): BoardProfile {
  if (!isProfileName(name)) throw new LarchError('INVALID_INPUT', `board profile '${file}': '${quash(name)}' is not a board name (lowercase letters, digits, '_' and '-')`, { data: { file } });
  return readTomlFile(text, 'board profile', file, 'fix the field named in the message (docs/images.md, "Board profiles", lists every field)', (doc) => {
    onlyFields(doc, FIELDS, '');
    const bootloader = str(doc.bootloader, 'bootloader', true);
    if (!(BOOTLOADER_KINDS as readonly string[]).includes(bootloader)) return fail('bootloader', `'${quash(bootloader)}' is not a bootloader larch drives (${BOOTLOADER_KINDS.join(', ')})`);
    const architecture = str(doc.architecture, 'architecture', true);
    if (!ARCHITECTURE.test(architecture)) fail('architecture', `'${quash(architecture)}' is not a Debian architecture name (e.g. amd64, arm64)`);
    const ubootArch = str(doc.uboot_arch, 'uboot_arch', false);
    if (ubootArch === undefined && bootloader === 'uboot') fail('uboot_arch', 'is required for a U-Boot board (mkimage -A: arm64, arm, ...)');
    if (ubootArch !== undefined && bootloader !== 'uboot') fail('uboot_arch', 'is only for U-Boot boards');
    if (ubootArch !== undefined && !ARCHITECTURE.test(ubootArch)) fail('uboot_arch', `'${quash(ubootArch)}' is not an mkimage architecture (e.g. arm64, arm)`);
    const console = str(doc.console, 'console', false);
    if (console !== undefined) argument(`console=${console}`, 'console');
    const kargs = strings(doc.kargs, 'kargs');
    kargs.forEach((arg, i) => {
      const field = `kargs[${i}]`;
      argument(arg, field);
      if (kargKey(arg) === 'console') fail(field, "is a console: give it in the field 'console', so the board's console is in one place");
      if (LARCH_KEYS.includes(kargKey(arg))) fail(field, `sets ${kargKey(arg)}, which larch sets itself (the partitions: fields 'root' and 'boot')`);
    });
    const root = partition(str(doc.root, 'root', true), 'root');
    const boot = partition(str(doc.boot, 'boot', true), 'boot');
    const ubootOnly = (field: string) => {
      if (doc[field] !== undefined && bootloader !== 'uboot') fail(field, 'is only for U-Boot boards');
    };
    ['device_tree', 'env_files', 'fw_env_config', 'uboot_default_env'].forEach(ubootOnly);
    const deviceTree = str(doc.device_tree, 'device_tree', false);
    if (deviceTree !== undefined && !FILE_NAME.test(deviceTree)) fail('device_tree', `'${quash(deviceTree)}' is not a file name in /boot/dtbs/ (the definition's [boot] files put device trees there by their names)`);
    const ubootEnv = bootloader === 'uboot' ? ubootEnvLayout(doc) : undefined;
    const bootFiles = boardBootFiles(doc.boot_files);
    return {
      name,
      bootloader: bootloader as BootloaderKind,
      architecture,
      ...(ubootArch === undefined ? {} : { ubootArch }),
      ...(console === undefined ? {} : { console }),
      kargs,
      root,
      boot,
      ...(deviceTree === undefined ? {} : { deviceTree }),
      ...(ubootEnv === undefined ? {} : { ubootEnv }),
      bootFiles,
    };
  });
}

/** env_files (default uboot.env, uboot-redund.env), or fw_env_config with uboot_default_env. */
function ubootEnvLayout(doc: Record<string, unknown>): UbootEnvLayout {
  const config = str(doc.fw_env_config, 'fw_env_config', false);
  const defaults = str(doc.uboot_default_env, 'uboot_default_env', false);
  if (config !== undefined) {
    if (doc.env_files !== undefined) fail('env_files', "goes with the boot partition's env; 'fw_env_config' says the env is in U-Boot's own storage: give one of them");
    if (!RELATIVE_PATH.test(config)) fail('fw_env_config', `'${quash(config)}' is not a path under board/ (e.g. uboot/fw_env.config.redundant)`);
    // U-Boot takes a valid env from its storage instead of its built-in one: larch's state alone would leave it without bootcmd.
    if (defaults === undefined) return fail('uboot_default_env', "is required with 'fw_env_config': the board's default env (U-Boot's u-boot-initial-env), which image build writes with larch's state, since U-Boot boots a valid stored env instead of its built-in one");
    if (!RELATIVE_PATH.test(defaults)) fail('uboot_default_env', `'${quash(defaults)}' is not a path under board/`);
    return { kind: 'raw', fwEnvConfig: config, defaultEnv: defaults };
  }
  if (defaults !== undefined) fail('uboot_default_env', "goes with 'fw_env_config' (U-Boot's own env storage)");
  const files = doc.env_files === undefined ? ['uboot.env', 'uboot-redund.env'] : strings(doc.env_files, 'env_files');
  if (files.length !== 2) fail('env_files', `must name two files (the redundant env's two copies), got ${files.length}`);
  files.forEach((f, i) => {
    if (!FILE_NAME.test(f)) fail(`env_files[${i}]`, `'${quash(f)}' is not a file name on the boot partition (letters, digits, '.', '_', '+', '-')`);
  });
  if (files[0] === files[1]) fail('env_files', 'names the same file twice');
  return { kind: 'files', files: [files[0], files[1]] };
}

function boardBootFiles(value: unknown): BoardBootFile[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return fail('boot_files', `must be an array of tables ([[boot_files]]), got ${describe(value)}`);
  const seen = new Set<string>();
  return value.map((v, i) => {
    const field = `boot_files[${i}]`;
    const t = table(v, field);
    onlyFields(t, BOOT_FILE_FIELDS, field);
    const path = str(t.path, `${field}.path`, true);
    if (!RELATIVE_PATH.test(path)) fail(`${field}.path`, `'${quash(path)}' is not a relative path on the boot partition`);
    if (seen.has(path.toLowerCase())) fail(`${field}.path`, `'${quash(path)}' is given twice (FAT does not tell case apart)`);
    seen.add(path.toLowerCase());
    const sources = (['tree', 'board', 'firmware'] as const).filter((k) => t[k] !== undefined);
    if (sources.length !== 1) fail(field, "must have exactly one of 'tree' (a path in the commit), 'board' (a path under board/), 'firmware' (a file of image build --firmware-dir)");
    const from = sources[0];
    const source = str(t[from], `${field}.${from}`, true);
    if (!RELATIVE_PATH.test(source)) fail(`${field}.${from}`, `'${quash(source)}' is not a relative path`);
    return { path, from, source };
  });
}

/** A kernel argument a boot script can carry as it is. */
function argument(arg: string, field: string): void {
  const problem = kargProblem(arg);
  if (problem !== null) fail(field, `'${quash(arg)}' is not a kernel argument: ${problem}`);
  if (SCRIPT_SPECIAL.test(arg)) fail(field, `'${quash(arg)}' holds one of " ' $ \\ \` ; which the boot scripts would interpret`);
  if (arg.includes('/dev/')) fail(field, `'${quash(arg)}' names a device: device names depend on the order disks are found; use LABEL= or UUID=`);
}

function partition(value: string, field: string): string {
  if (value.startsWith('/dev/')) fail(field, `'${quash(value)}' is a device name, which depends on the order disks are found: give LABEL=... or UUID=...`);
  if (!PARTITION.test(value)) fail(field, `'${quash(value)}' is not LABEL=... or UUID=... (letters, digits, '.', '_', '-')`);
  return value;
}

/** The kernel command line the board's bootloader passes (it appends larch.slot=A|B itself). */
export function profileKargs(profile: BoardProfile): string[] {
  // larch.tty: where the initramfs writes and starts its shell, so a deployment whose arguments
  // lost console= (larch kargs --delete console) still talks on the board's serial line.
  const tty = profile.console === undefined ? [] : [`console=${profile.console}`, `larch.tty=${profile.console.split(',')[0]}`];
  return [...tty, ...profile.kargs, `larch.root=${profile.root}`, `larch.boot=${profile.boot}`];
}

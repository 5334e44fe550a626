/**
 * Board profiles (`board/profiles/NAME.toml`, docs/images.md "Board profiles"): what `larch image
 * build` needs to know of a board, as data instead of code: its bootloader, architecture, serial
 * console and default kernel arguments, and how the initramfs finds the root and boot
 * partitions (by filesystem label or UUID, never by a device name, which depends on the order in
 * which the kernel probes disks). Pure: the caller reads the file.
 */
import { fail, onlyFields, readTomlFile, str, strings } from '../_toml-fields.ts';
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
}

const FIELDS = ['bootloader', 'architecture', 'uboot_arch', 'console', 'kargs', 'root', 'boot'];
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
    return { name, bootloader: bootloader as BootloaderKind, architecture, ...(ubootArch === undefined ? {} : { ubootArch }), ...(console === undefined ? {} : { console }), kargs, root, boot };
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

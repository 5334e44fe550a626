#!/usr/bin/env node
// Makes sure everything the tests use is on this machine, installing it when we can (root + apt),
// and failing loudly with what to install otherwise. Then fetches the real Debian packages the
// fidelity tests unpack into .cache/debs/ (kept between runs).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// A tool is a command on PATH, or (when it starts with '/') a file a package installs.
const has = (tool) => (tool.startsWith('/') ? existsSync(tool) : spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0);
const isRoot = process.getuid?.() === 0;

/** tool -> Debian package that provides it */
const TOOLS = {
  getfattr: 'attr', setfattr: 'attr', mkfifo: 'coreutils', sync: 'coreutils', 'dpkg-deb': 'dpkg', tar: 'tar', 'apt-get': 'apt', ostree: 'ostree',
  // boot state: the real env tools larch is cross-checked with, and the bootloaders the board/ scripts run on
  fw_printenv: 'libubootenv-tool', fw_setenv: 'libubootenv-tool', mkenvimage: 'u-boot-tools', mkimage: 'u-boot-tools',
  'grub-editenv': 'grub-common', 'grub-script-check': 'grub-common', 'grub-emu': 'grub-emu',
  nginx: 'nginx', // the device tests fetch updates from a real web server too
  '/usr/sbin/mosquitto': 'mosquitto', mosquitto_passwd: 'mosquitto', // the MQTT tests run a real broker on loopback
  ss: 'iproute2', // which process listens on a port (the test broker's readiness, a restarted server)
  openssl: 'openssl', // the MQTT TLS test makes its CA and certificates
  'qemu-system-aarch64': 'qemu-system-arm', '/usr/lib/u-boot/qemu_arm64/u-boot.bin': 'u-boot-qemu', mcopy: 'mtools', 'mkfs.vfat': 'dosfstools',
  // larch image build and its QEMU boot test: filesystems and partitions on image files, GRUB for BIOS, the initramfs
  'mkfs.ext4': 'e2fsprogs', debugfs: 'e2fsprogs', sfdisk: 'fdisk', 'grub-mkimage': 'grub-common', '/usr/lib/grub/i386-pc/boot.img': 'grub-pc-bin',
  'qemu-system-x86_64': 'qemu-system-x86', cpio: 'cpio', mdir: 'mtools', mtype: 'mtools', mdel: 'mtools',
  // the UEFI board (qemu-x86_64-uefi): OVMF as its firmware; systemd-boot comes from the image's own packages
  '/usr/share/OVMF/OVMF_CODE_4M.fd': 'ovmf',
  socat: 'socat', // the fake lab's serial adapter (hil-tests/fake-lab.test.ts)
};
const missing = [...new Set(Object.entries(TOOLS).filter(([t]) => !has(t)).map(([, p]) => p))];
if (missing.length > 0) {
  if (!isRoot || !has('apt-get')) {
    console.error(`test-setup: missing tools from Debian packages: ${missing.join(' ')}\nInstall them (apt-get install -y ${missing.join(' ')}) and run again.`);
    process.exit(1);
  }
  console.error(`test-setup: installing ${missing.join(' ')}`);
  const upd = spawnSync('apt-get', ['update'], { stdio: 'inherit' });
  const inst = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (upd.status !== 0 || inst.status !== 0) {
    console.error(`test-setup: apt-get install ${missing.join(' ')} failed`);
    process.exit(1);
  }
}

// The image test composes the arm64 demo image (images/qemu-arm64-uboot.toml) from Debian's arm64
// packages, so apt needs arm64 indexes next to the host's: added here (root), or a loud failure.
const hostArch = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
const FOREIGN_ARCHES = hostArch === 'arm64' ? [] : ['arm64'];
const aptKnows = (arch) => /Candidate: (?!\(none\))/.test(spawnSync('apt-cache', ['policy', `libc6:${arch}`], { encoding: 'utf8' }).stdout ?? '');
const noIndexes = FOREIGN_ARCHES.filter((a) => !aptKnows(a));
if (noIndexes.length > 0) {
  const how = noIndexes.map((a) => `dpkg --add-architecture ${a}`).join(' && ') + ' && apt-get update';
  if (!isRoot) {
    console.error(`test-setup: apt has no ${noIndexes.join(', ')} indexes (the image test composes images for them). Run as root: ${how}`);
    process.exit(1);
  }
  console.error(`test-setup: adding apt indexes for ${noIndexes.join(', ')}: ${how}`);
  const r = spawnSync('sh', ['-c', how], { stdio: 'inherit' });
  if (r.status !== 0 || noIndexes.some((a) => !aptKnows(a))) {
    console.error(`test-setup: '${how}' did not give apt ${noIndexes.join(', ')} indexes`);
    process.exit(1);
  }
}

/** Real packages for the fidelity test: symlinks, setuid binaries, many small files, large libraries. */
export const FIDELITY_PACKAGES = [
  'bash', 'dash', 'coreutils', 'sed', 'grep', 'gzip', 'tar', 'findutils', 'diffutils', 'less',
  'sudo', 'passwd', 'mount', 'tzdata', 'ncurses-base', 'ca-certificates', 'zlib1g', 'libc6',
  'busybox', 'hostname', 'iputils-ping', 'procps',
];
/**
 * dpkg and what it needs to run inside a container (ldconfig: libc-bin; GNU tar, from the
 * fidelity list, needs libacl1): the OCI pipeline test (oci-tools.test.ts) builds on a base that
 * runs `dpkg -i` in a Containerfile. Kept apart from FIDELITY_PACKAGES, whose test commits every
 * .deb of its directory.
 */
export const OCI_PACKAGES = ['dpkg', 'libc-bin', 'libacl1', 'libbz2-1.0', 'liblzma5', 'libmd0', 'libselinux1', 'libpcre2-8-0', 'libzstd1'];

/** apt-get download of the packages dir lacks (apt-get update first and again, as root, when that fails). */
function download(packages, dir) {
  mkdirSync(dir, { recursive: true });
  const have = new Set(readdirSync(dir).filter((f) => f.endsWith('.deb')).map((f) => f.split('_')[0]));
  const need = packages.filter((p) => !have.has(p));
  if (need.length === 0) return;
  let r = spawnSync('apt-get', ['download', ...need], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0 && isRoot) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    r = spawnSync('apt-get', ['download', ...need], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  }
  if (r.status !== 0) {
    console.error(`test-setup: 'apt-get download ${need.join(' ')}' failed:\n${r.stderr}`);
    process.exit(1);
  }
}
const debs = join(root, '.cache', 'debs');
download(FIDELITY_PACKAGES, debs);
download(OCI_PACKAGES, join(root, '.cache', 'debs-oci'));
if (!existsSync(join(debs, readdirSync(debs).find((f) => f.startsWith('bash_')) ?? 'none'))) {
  console.error('test-setup: Debian packages are missing from .cache/debs');
  process.exit(1);
}
console.error(`test-setup: tools present; ${FIDELITY_PACKAGES.length} Debian packages in .cache/debs`);

/**
 * The QEMU backend of Board: the disk image is the board's storage (it persists across power
 * cycles, and with it the bootloader env on its FAT partition), the QEMU process is the power
 * (start = power on, SIGKILL = power cut), the serial port is a pty opened with `serialport`.
 * QEMU starts paused (-S) and is let go (QMP `cont`) only once the pty is open: QEMU's pty drops
 * what it sends while nobody has it open, which would lose the bootloader's first lines.
 * TCG only: KVM is present but broken on the machines this was written on; never pass
 * -enable-kvm.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import type { Board, Bootloader } from './board.ts';
import { Console } from './console.ts';
import { Qmp } from './qmp.ts';

export interface QemuProfile {
  bootloader: Bootloader;
  /** Debian architecture of the image (the larch binary must match). */
  architecture: 'amd64' | 'arm64';
  qemu: string;
  /** Machine arguments; the disk, console, QMP and network arguments are added. */
  machine: string[];
  /** How the disk is attached, given its path. */
  disk: (path: string) => string[];
  /** The network: QEMU user networking (slirp), the guest's virtio-net. */
  net: string[];
  /** Where the bootloader env lives on the boot partition (FAT at 1 MiB), as mtools names it: one file per copy (U-Boot: the redundant pair). None on systemd-boot, whose state is its entries' names. */
  envFiles: string[];
  /** UEFI: the firmware's code (read-only pflash) and the template of its variable store, copied next to the disk when the board is flashed (the board's NVRAM). */
  uefi?: { code: string; vars: string };
  /** Shell commands after boot: the kernel's virtio-net module from the deployment, and slirp's fixed address. */
  setup: string[];
}

/** virtio-net is a module in Debian's kernels; load it (and what it needs) from the booted tree. */
function netSetup(): string[] {
  const mods = 'kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko';
  return [
    `for m in ${mods}; do busybox insmod /lib/modules/$(busybox uname -r)/$m 2>/dev/null; done; true`,
    // QEMU user networking: the guest is 10.0.2.15/24, the gateway 10.0.2.2 forwards to the host's loopback.
    'n=0; while ! busybox ip link show eth0 >/dev/null 2>&1 && [ $n -lt 50 ]; do n=$((n+1)); busybox sleep 0.1; done; busybox ip link set lo up; busybox ip link set eth0 up && busybox ip addr add 10.0.2.15/24 dev eth0 2>/dev/null; busybox ip route add default via 10.0.2.2 2>/dev/null; busybox ip -4 addr show eth0 | busybox grep -q 10.0.2.15',
  ];
}

export const QEMU_PROFILES: Record<string, QemuProfile> = {
  'qemu-x86_64-grub': {
    bootloader: 'grub',
    architecture: 'amd64',
    qemu: 'qemu-system-x86_64',
    // -cpu max: the Bun binary needs AVX2, which TCG has since QEMU 7.2.
    machine: ['-machine', 'pc', '-cpu', 'max', '-m', '1024', '-smp', '1'],
    disk: (path) => ['-drive', `file=${path},format=raw,if=virtio`],
    net: ['-nic', 'user,model=virtio-net-pci'],
    envFiles: ['::/grub/grubenv'],
    setup: netSetup(),
  },
  'qemu-arm64-uboot': {
    bootloader: 'uboot',
    architecture: 'arm64',
    qemu: 'qemu-system-aarch64',
    // As test/integration/image.test.ts: Debian's U-Boot as the firmware, cortex-a57 (ARMv8.0, as small boards have).
    machine: ['-machine', 'virt', '-cpu', 'cortex-a57', '-m', '1024', '-smp', '1', '-bios', '/usr/lib/u-boot/qemu_arm64/u-boot.bin'],
    // virtio-mmio, whose driver the initramfs loads (virtio_pci is a module the image may not keep).
    disk: (path) => ['-drive', `if=none,file=${path},format=raw,id=hd0`, '-device', 'virtio-blk-device,drive=hd0'],
    net: ['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0'],
    envFiles: ['::/uboot.env', '::/uboot-redund.env'],
    setup: netSetup(),
  },
  'qemu-x86_64-uefi': {
    bootloader: 'systemd-boot',
    architecture: 'amd64',
    qemu: 'qemu-system-x86_64',
    // Q35, as OVMF expects; -cpu max for the Bun binary's AVX2 (as the GRUB board).
    machine: ['-machine', 'q35', '-cpu', 'max', '-m', '1024', '-smp', '1'],
    disk: (path) => ['-drive', `file=${path},format=raw,if=virtio`],
    net: ['-nic', 'user,model=virtio-net-pci'],
    envFiles: [],
    // Debian's ovmf: the 4 MiB build; a fresh variable store names no boot entry, so the firmware starts /EFI/BOOT/BOOTX64.EFI.
    uefi: { code: '/usr/share/OVMF/OVMF_CODE_4M.fd', vars: '/usr/share/OVMF/OVMF_VARS_4M.fd' },
    setup: netSetup(),
  },
};

export interface QemuBoardOptions {
  board: string;
  /** The disk image: the board's storage (written in place). */
  disk: string;
  /** Scratch directory for the QMP socket and env copies. */
  workDir: string;
  /** The console log file. */
  logPath: string;
  /** The host's larch binary (reads and writes the env on the disk image: `larch bootenv`). */
  larchBin: string;
}

/**
 * QEMU runs under this sh, which prints QEMU's pid and kills it (SIGKILL) when the sh's stdin
 * reaches its end: when this process closes it or dies (a test timeout's SIGKILL), so no QEMU
 * outlives the run. Arguments: the QEMU binary, then its arguments.
 */
// (A background list's stdin is /dev/null unless redirected: hence fd 3 for the watchdog's cat.)
const WATCHDOG = 'exec 3<&0; q="$1"; shift; "$q" "$@" </dev/null & pid=$!; echo "hil-qemu-pid $pid" >&2; { cat <&3 >/dev/null; kill -9 "$pid" 2>/dev/null; } & wait "$pid"';

export class QemuBoard implements Board {
  readonly name: string;
  readonly bootloader: Bootloader;
  readonly console: Console;
  readonly setupCommands: string[];
  private readonly profile: QemuProfile;
  private proc: ChildProcess | null = null;
  private qemuPid: number | null = null;
  private exited: Promise<void> | null = null;
  private port: SerialPort | null = null;
  private qmp: Qmp | null = null;

  constructor(private readonly opts: QemuBoardOptions) {
    const profile = QEMU_PROFILES[opts.board];
    if (!profile) throw new Error(`hil: unknown QEMU board '${opts.board}' (known: ${Object.keys(QEMU_PROFILES).join(', ')})`);
    this.profile = profile;
    this.name = opts.board;
    this.bootloader = profile.bootloader;
    this.setupCommands = profile.setup;
    this.console = new Console(opts.logPath);
  }

  get powered(): boolean {
    return this.proc !== null;
  }

  async flash(image: string): Promise<void> {
    if (this.powered) throw new Error('hil: flash while the board is powered');
    const r = spawnSync('cp', ['--sparse=always', '--reflink=auto', image, this.opts.disk]);
    if (r.status !== 0) throw new Error(`hil: cp ${image} ${this.opts.disk}: ${r.stderr}`);
    // A new board's NVRAM: nothing from the last run (a boot entry, systemd-boot's variables) stays.
    if (this.profile.uefi) copyFileSync(this.profile.uefi.vars, this.nvramPath());
  }

  /** The UEFI variable store of this board (beside its disk). */
  private nvramPath(): string {
    return `${this.opts.disk}.nvram`;
  }

  async powerOn(): Promise<void> {
    if (this.proc) throw new Error('hil: power on while already on');
    const qmpPath = join(this.opts.workDir, `qmp-${process.pid}.sock`);
    rmSync(qmpPath, { force: true });
    const uefi = this.profile.uefi;
    if (uefi && !existsSync(this.nvramPath())) copyFileSync(uefi.vars, this.nvramPath());
    const args = [
      ...this.profile.machine,
      ...(uefi ? ['-drive', `if=pflash,format=raw,readonly=on,file=${uefi.code}`, '-drive', `if=pflash,format=raw,file=${this.nvramPath()}`] : []),
      '-display', 'none', '-nodefaults', '-S',
      '-chardev', 'pty,id=ser0', '-serial', 'chardev:ser0',
      '-qmp', `unix:${qmpPath},server=on,wait=off`,
      ...this.profile.disk(this.opts.disk),
      ...this.profile.net,
    ];
    const proc = spawn('sh', ['-c', WATCHDOG, 'hil-qemu', this.profile.qemu, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = proc;
    this.qemuPid = null;
    let out = '';
    this.exited = new Promise((resolve) => proc.on('exit', () => resolve()));
    proc.on('exit', (code, signal) => {
      proc.stdin!.end(); // ends the watchdog's cat
      if (this.proc === proc) {
        // Not a power cut of ours: QEMU died (or the guest powered itself off).
        this.console.note(`qemu exited by itself (code ${code}, signal ${signal}): ${out.trim().slice(-500)}`);
        this.proc = null;
        this.console.attach(null);
        this.console.abort(`the board lost power: qemu exited (code ${code}, signal ${signal})`);
      }
    });
    const pty = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`hil: qemu printed no pty path within 20 s: ${out}`)), 20_000);
      const onData = (d: Buffer) => {
        out += d.toString();
        const pid = /hil-qemu-pid (\d+)/.exec(out);
        if (pid) this.qemuPid = Number(pid[1]);
        const m = /char device redirected to (\/dev\/pts\/\d+) \(label ser0\)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`hil: ${this.profile.qemu} exited ${code} at start: ${out.trim()}`));
      });
    });
    // Reopen every time: a restarted QEMU may get the same /dev/pts number, but it is a new pty.
    const port = new SerialPort({ path: pty, baudRate: 115200, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(e) : resolve())));
    port.on('data', (d: Buffer) => this.console.push(d));
    port.on('error', () => {});
    this.port = port;
    this.console.attach(
      (data) =>
        new Promise((resolve, reject) => {
          port.write(Buffer.from(data, 'latin1'), (e) => (e ? reject(e) : port.drain(() => resolve())));
        }),
    );
    this.qmp = await Qmp.connect(qmpPath);
    this.console.note(`power on (qemu pid ${this.qemuPid}, console ${pty})`);
    await this.qmp.execute('cont');
  }

  async powerOff(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    this.console.note('power cut (SIGKILL qemu)');
    this.console.attach(null);
    if (this.qemuPid !== null) {
      try {
        process.kill(this.qemuPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    proc.stdin!.end(); // the watchdog kills QEMU too, should the pid not have been read
    await this.exited;
    this.qmp?.close();
    this.qmp = null;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    this.console.abort('the board was powered off');
  }

  async readBootEnv(): Promise<Map<string, string> | null> {
    if (this.powered) throw new Error('hil: read the boot env only while the board is off (QEMU caches the disk)');
    if (this.bootloader === 'systemd-boot') return this.readEsp();
    const copies = this.copyPaths();
    for (const [i, file] of this.profile.envFiles.entries()) {
      rmSync(copies[i], { force: true });
      spawnSync('mcopy', ['-o', '-n', '-i', `${this.opts.disk}@@1M`, file, copies[i]], { encoding: 'utf8' });
    }
    if (!copies.some((c) => existsSync(c))) return null;
    const list = spawnSync(this.opts.larchBin, ['bootenv', 'list', ...this.envArgs(copies), '--lock', `${copies[0]}.lock`, '--json'], { encoding: 'utf8' });
    if (list.status !== 0) return null; // corrupt: the bootloader reads it as the empty env
    return new Map(Object.entries((JSON.parse(list.stdout) as { vars: Record<string, string> }).vars));
  }

  async writeBootEnv(env: Record<string, string> | 'missing' | 'corrupt'): Promise<void> {
    if (this.powered) throw new Error('hil: write the boot env only while the board is off');
    if (this.bootloader === 'systemd-boot') return this.writeEsp(env);
    const img = `${this.opts.disk}@@1M`;
    if (env === 'missing') {
      for (const file of this.profile.envFiles) spawnSync('mdel', ['-i', img, file]);
      return;
    }
    const copies = this.copyPaths();
    for (const copy of copies) {
      rmSync(copy, { force: true });
      if (this.bootloader === 'uboot') writeFileSync(copy, Buffer.alloc(0x4000));
    }
    const vars = env === 'corrupt' ? { BOOT_ORDER: 'B A' } : env;
    const r = spawnSync(this.opts.larchBin, ['bootenv', 'init', ...this.envArgs(copies), '--lock', `${copies[0]}.lock`, '--force', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`hil: larch bootenv init: ${r.stderr}`);
    for (const [i, copy] of copies.entries()) {
      if (env === 'corrupt') {
        // GRUB: a bad signature line; U-Boot: a bad CRC in every copy. Both read as the empty env.
        const b = readFileSync(copy);
        b[this.bootloader === 'grub' ? 2 : 0] ^= 0xff;
        writeFileSync(copy, b);
      }
      const w = spawnSync('mcopy', ['-o', '-i', img, copy, this.profile.envFiles[i]], { encoding: 'utf8' });
      if (w.status !== 0) throw new Error(`hil: mcopy ${copy} to ${this.profile.envFiles[i]}: ${w.stderr}`);
    }
  }

  /**
   * systemd-boot's state: the ESP's loader/entries, loader/larch.env and the slots' entry.conf
   * copied to the host, read by the host's larch as the variables the other boards' envs hold
   * (`larch bootenv list --systemd-boot`). Null: no entry of larch's (none can boot).
   */
  private readEsp(): Map<string, string> | null {
    const dir = this.copyEsp();
    if (!readdirSync(join(dir, 'loader', 'entries')).some((n) => n.startsWith('larch-'))) return null;
    const list = spawnSync(this.opts.larchBin, ['bootenv', 'list', '--systemd-boot', dir, '--lock', `${dir}.lock`, '--json'], { encoding: 'utf8' });
    if (list.status !== 0) throw new Error(`hil: larch bootenv list --systemd-boot ${dir}: ${list.stderr}`);
    return new Map(Object.entries((JSON.parse(list.stdout) as { vars: Record<string, string> }).vars));
  }

  async readBootEntries(): Promise<Map<string, string>> {
    if (this.powered) throw new Error('hil: read the ESP only while the board is off (QEMU caches the disk)');
    const entries = join(this.copyEsp(), 'loader', 'entries');
    return new Map(readdirSync(entries).filter((n) => n.startsWith('larch-')).map((n) => [n, readFileSync(join(entries, n), 'utf8')]));
  }

  /** The ESP's files larch's boot state is made of, copied into workDir/esp (replacing an earlier copy). */
  private copyEsp(): string {
    const img = `${this.opts.disk}@@1M`;
    const dir = join(this.opts.workDir, 'esp');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'loader', 'entries'), { recursive: true });
    // Absent files are fine (a slot without a deployment has no entry.conf): mcopy fails, nothing is copied.
    spawnSync('mcopy', ['-s', '-n', '-i', img, '::/loader/entries', join(dir, 'loader')]);
    spawnSync('mcopy', ['-n', '-i', img, '::/loader/larch.env', join(dir, 'loader', 'larch.env')]);
    for (const slot of ['A', 'B']) {
      mkdirSync(join(dir, slot));
      spawnSync('mcopy', ['-n', '-i', img, `::/${slot}/entry.conf`, join(dir, slot, 'entry.conf')]);
    }
    return dir;
  }

  /** Replaces larch's entries on the ESP: written on a host copy by `larch bootenv init --systemd-boot`, then copied back. */
  private writeEsp(env: Record<string, string> | 'missing' | 'corrupt'): void {
    const img = `${this.opts.disk}@@1M`;
    this.giveSlotBBootFiles();
    const dir = this.copyEsp();
    const entries = join(dir, 'loader', 'entries');
    rmSync(entries, { recursive: true, force: true });
    mkdirSync(entries);
    // The env lost ('missing', 'corrupt'), as test/unit/bootcount/bls.test.ts models it: the slot
    // entries absent or garbage beside the rescue entry (this backend's LKG marker), on A.
    const lost = { BOOT_ORDER: 'A B', BOOT_A_GOOD: '0', BOOT_A_LEFT: '0', BOOT_B_GOOD: '0', BOOT_B_LEFT: '0', BOOT_LKG: 'A' };
    const vars = typeof env === 'object' ? env : lost;
    const r = spawnSync(this.opts.larchBin, ['bootenv', 'init', '--systemd-boot', dir, '--lock', `${dir}.lock`, '--force', ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`hil: larch bootenv init --systemd-boot: ${r.stderr}`);
    if (typeof env === 'string') {
      for (const name of readdirSync(entries)) if (name !== 'larch-rescue.conf') rmSync(join(entries, name));
      if (env === 'corrupt') for (const name of ['larch-a.conf', 'larch-b.conf']) writeFileSync(join(entries, name), '\x00garbage\n');
    }
    spawnSync('mdel', ['-i', img, '::/loader/entries/larch-*']);
    spawnSync('mdel', ['-i', img, '::/loader/larch.env']);
    for (const name of readdirSync(entries)) {
      const w = spawnSync('mcopy', ['-o', '-i', img, join(entries, name), `::/loader/entries/${name}`], { encoding: 'utf8' });
      if (w.status !== 0) throw new Error(`hil: mcopy ${name} to the ESP: ${w.stderr}`);
    }
    if (existsSync(join(dir, 'loader', 'larch.env'))) {
      const w = spawnSync('mcopy', ['-o', '-i', img, join(dir, 'loader', 'larch.env'), '::/loader/larch.env'], { encoding: 'utf8' });
      if (w.status !== 0) throw new Error(`hil: mcopy larch.env to the ESP: ${w.stderr}`);
    }
  }

  /**
   * The table's rows boot either slot, but systemd-boot passes over an entry whose kernel is
   * missing (no try spent) and larch writes no entry for a slot without boot files, so on a
   * board whose slot B was never deployed, B gets A's kernel and initramfs under /B/ and a body
   * saying larch.slot=B. Its boots reach the init's `larch: systemd-boot:` line, which is all the
   * table reads; past it the init stops at "slot B has no deployment".
   */
  private giveSlotBBootFiles(): void {
    const img = `${this.opts.disk}@@1M`;
    if (spawnSync('mtype', ['-i', img, '::/B/entry.conf']).status === 0) return;
    const tmp = join(this.opts.workDir, 'slot-b');
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    const mtools = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, ['-i', img, ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`hil: ${cmd} ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const body = mtools('mtype', ['::/A/entry.conf']).replaceAll('/A/', '/B/').replace(/larch\.slot=A$/m, 'larch.slot=B');
    writeFileSync(join(tmp, 'entry.conf'), body);
    for (const f of ['vmlinuz', 'initrd.img']) mtools('mcopy', ['-n', `::/A/${f}`, join(tmp, f)]);
    spawnSync('mmd', ['-i', img, '::/B']);
    for (const f of ['vmlinuz', 'initrd.img', 'entry.conf']) mtools('mcopy', ['-o', join(tmp, f), `::/B/${f}`]);
  }

  /** Host copies of the env files, one per copy. */
  private copyPaths(): string[] {
    return this.profile.envFiles.map((_, i) => join(this.opts.workDir, `env${i}.copy`));
  }

  async close(): Promise<void> {
    await this.powerOff();
  }

  private envArgs(copies: string[]): string[] {
    if (this.bootloader === 'grub') return ['--grub', copies[0]];
    // The redundant pair, as S/boot/fw_env.config lists it (one copy per file).
    const config = `${copies[0]}.config`;
    writeFileSync(config, copies.map((c) => `${c} 0x0 0x4000\n`).join(''));
    return ['--uboot', config];
  }
}

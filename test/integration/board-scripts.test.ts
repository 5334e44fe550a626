/**
 * The real bootloaders run board/boot-cases.json: U-Boot (Debian's qemu_arm64 build under QEMU TCG)
 * sources board/uboot/boot.scr from a FAT disk holding the redundant env (uboot.env and
 * uboot-redund.env, or the former single uboot.env) and the LKG marker, and GRUB (grub-emu, GRUB in
 * userspace) runs board/grub/grub.cfg against a grubenv on a FAT disk image. After every boot the
 * chosen slot and the env on the disk must match the table, which bootloaderChoose() also passes
 * (test/unit/bootcount/state.test.ts): the scripts and the in-process simulation are the same thing.
 * Then a few boots with a slot's own kernel arguments file (X/larch.env, X/kargs.grubenv; docs/boot.md
 * "Kernel arguments per slot"): valid (quotes and $ arrive as data), absent (larch_bootargs), damaged
 * (the slot does not boot).
 * A machine without the tools skips a bootloader; under CI the test fails naming what is missing.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { selectCopy } from '../../src/bootcount/uboot-env.ts';
import { encodeGrubenv } from '../../src/bootcount/grubenv.ts';
import { encodeSlotKargs } from '../../src/bootcount/slot-kargs.ts';
import { type BootCase, type TableBoot, TORN_AT, loadBootCases } from '../../hil-tests/lib/boot-table.ts';
import { ROOT, missingTools, tempDir, testNeeding } from '../helpers.ts';

const cases = loadBootCases(ROOT);

const UBOOT_BIN = '/usr/lib/u-boot/qemu_arm64/u-boot.bin';
const ENV_SIZE = 0x4000;
const ENV_FILES = ['uboot.env', 'uboot-redund.env'];
const MARKER = 'larch-lkg-B';
/** What a "corrupt" env holds before its check fails: A staged and unconfirmed, B good. */
const CORRUPT_VARS = { BOOT_ORDER: 'A B', BOOT_A_GOOD: '0', BOOT_A_LEFT: '3', BOOT_B_GOOD: '1', BOOT_LKG: 'B' };
const PART_OFFSET = 1024 * 1024;
const cannotRun = (tools: string[]) => missingTools(tools).length > 0 && `missing: ${missingTools(tools).join(', ')} (node scripts/test-setup.mjs installs them, as root)`;

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/**
 * A disk image: one MBR partition (FAT, type 0x0c) at 1 MiB holding `files` at its root and `tree`
 * (path under the root, e.g. B/larch.env: bytes). No root, no loop devices.
 */
function makeFatDisk(path: string, files: string[], tree: Record<string, Uint8Array> = {}): void {
  const part = `${path}.part`;
  run('mkfs.vfat', ['-C', part, '2048']);
  if (files.length) run('mcopy', ['-i', part, ...files, '::/']);
  const dirs = new Set<string>();
  for (const [name, bytes] of Object.entries(tree)) {
    const dir = name.split('/').slice(0, -1).join('/');
    if (dir && !dirs.has(dir)) run('mmd', ['-i', part, `::/${dir}`]);
    dirs.add(dir);
    writeFileSync(`${path}.file`, bytes);
    run('mcopy', ['-i', part, `${path}.file`, `::/${name}`]);
  }
  const partBytes = readFileSync(part);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, PART_OFFSET + partBytes.length);
    const mbr = Buffer.alloc(512);
    mbr[446 + 4] = 0x0c;
    mbr.writeUInt32LE(PART_OFFSET / 512, 446 + 8);
    mbr.writeUInt32LE(partBytes.length / 512, 446 + 12);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    writeSync(fd, mbr, 0, 512, 0);
    writeSync(fd, partBytes, 0, partBytes.length, PART_OFFSET);
  } finally {
    closeSync(fd);
  }
}

/** Copies a file out of the disk's FAT partition; null when it is not there. */
function readFromDisk(disk: string, name: string, dest: string): Buffer | null {
  const r = spawnSync('mcopy', ['-o', '-n', '-i', `${disk}@@${PART_OFFSET}`, `::/${name}`, dest]);
  return r.status === 0 ? readFileSync(dest) : null;
}

function parseLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/**
 * What the env should hold after each boot: the last write, or the initial env (a torn newer
 * copy: U-Boot reads the previous copy, GRUB has no valid grubenv).
 */
function expectedEnvs(c: BootCase, bootloader: 'uboot' | 'grub'): (Record<string, string> | null)[] {
  let current = typeof c.env === 'string' ? null : c.torn ? (bootloader === 'uboot' ? c.previous! : null) : c.env;
  return c.boots.map((b) => (current = b.wrote ? b.env! : current));
}

function parseChoice(output: string): Omit<TableBoot, 'env'> | null {
  const m = /larch: slot=([AB]) rescue=([01]) wrote=([01])/.exec(output);
  return m ? { slot: m[1] as 'A' | 'B', rescue: m[2] === '1', wrote: m[3] === '1' } : null;
}

// ---- A slot's kernel arguments -----------------------------------------------------------------

/** A slot's own arguments: a quoted one and a $, which must arrive as data. */
const SLOT_KARGS = ['console=ttyS0', 'quiet', 'opt="a b"', 'x=$y'];
/** The board's arguments, for a slot without its file. */
const BOARD_KARGS = 'console=ttyAMA0 root=LABEL=larch-root';

/**
 * A boot with a slot's kernel arguments file: env missing, so the safe default boots `slot` (the LKG
 * marker makes it B) with no write. `args`: the printed arguments (U-Boot: bootargs, with
 * larch.slot=; GRUB: larch_kargs, without), or null when the file is damaged and the slot must not boot.
 */
interface KargsCase {
  name: string;
  slot: 'A' | 'B';
  tree: Record<string, Uint8Array>;
  args: string | null;
}

const ubootValidB = encodeSlotKargs('uboot', 'B', SLOT_KARGS);
/** Run in this order: the short file follows the valid one, so the RAM after its end still holds the rest of a valid file. */
const ubootKargsCases: KargsCase[] = [
  { name: 'valid file', slot: 'B', tree: { 'A/larch.env': encodeSlotKargs('uboot', 'A', ['wrong-slot']), 'B/larch.env': ubootValidB }, args: `${SLOT_KARGS.join(' ')} larch.slot=B` },
  { name: 'short file (the rest of a valid one in RAM)', slot: 'B', tree: { 'B/larch.env': ubootValidB.subarray(0, 2048) }, args: null },
  { name: 'no file', slot: 'A', tree: { 'B/larch.env': ubootValidB }, args: `${BOARD_KARGS} larch.slot=A` },
  // Zeros from byte 30 (past them it is zeros already): bootargs cut short, the CRC no longer matches.
  { name: 'torn file (zeros from byte 30: bad CRC)', slot: 'A', tree: { 'A/larch.env': encodeSlotKargs('uboot', 'A', SLOT_KARGS).fill(0, 30) }, args: null },
  { name: "the other slot's file", slot: 'B', tree: { 'B/larch.env': encodeSlotKargs('uboot', 'A', SLOT_KARGS) }, args: null },
];

const grubKargsCases: KargsCase[] = [
  { name: 'valid file', slot: 'B', tree: { 'A/kargs.grubenv': encodeSlotKargs('grub', 'A', ['wrong-slot']), 'B/kargs.grubenv': encodeSlotKargs('grub', 'B', SLOT_KARGS) }, args: SLOT_KARGS.join(' ') },
  { name: 'valid file, no arguments', slot: 'A', tree: { 'A/kargs.grubenv': encodeSlotKargs('grub', 'A', []) }, args: '' },
  { name: 'no file', slot: 'A', tree: { 'B/kargs.grubenv': encodeSlotKargs('grub', 'B', SLOT_KARGS) }, args: BOARD_KARGS },
  { name: 'torn file (signature gone)', slot: 'B', tree: { 'B/kargs.grubenv': encodeSlotKargs('grub', 'B', SLOT_KARGS).fill(0, 0, 25) }, args: null },
  { name: 'a grubenv without larch_kargs', slot: 'A', tree: { 'A/kargs.grubenv': encodeGrubenv(new Map([['larch_bootargs', 'x']]), 4096) }, args: null },
];

/**
 * The printed arguments (null: none printed) and whether the damaged-file line names `file`. Not
 * anchored at a line start: grub-emu's progress line for a file it reads ends without a newline.
 */
function parseKargs(output: string, kind: 'bootargs' | 'kargs', file: string): { args: string | null; damaged: boolean } {
  const lines = [...output.matchAll(new RegExp(`larch: ${kind}=([^\\n]*)`, 'g'))].map((m) => m[1]);
  return {
    args: lines.length === 1 ? lines[0] : lines.length === 0 ? null : `${lines.length} lines`,
    damaged: output.includes(`: its kernel arguments file ${file} is damaged\n`),
  };
}

// ---- U-Boot -------------------------------------------------------------------------------------

/** A U-Boot console on QEMU's serial port (stdio): send a line, wait for a marker it echoes. */
class UbootConsole {
  private output = '';
  private waiters: (() => void)[] = [];
  private readonly child;
  private exited = false;

  constructor(disks: string[]) {
    const args = ['-machine', 'virt', '-cpu', 'cortex-a57', '-m', '256', '-nographic', '-nodefaults', '-serial', 'stdio', '-bios', UBOOT_BIN, '-nic', 'none'];
    disks.forEach((disk, i) => args.push('-drive', `if=none,file=${disk},format=raw,id=hd${i}`, '-device', `virtio-blk-device,drive=hd${i}`));
    this.child = spawn('qemu-system-aarch64', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const onData = (d: Buffer) => {
      this.output += d.toString('latin1').replace(/\r/g, '');
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout.on('data', onData);
    this.child.stderr.on('data', onData);
    this.child.on('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits until `marker` shows up after offset `from`; returns the text before it. */
  async waitFor(marker: string, from: number, timeoutMs = 20000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.output.indexOf(marker, from);
      if (at >= 0) return this.output.slice(from, at);
      if (this.exited) throw new Error(`QEMU exited before '${marker}':\n${this.output.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`no '${marker}' within ${timeoutMs} ms:\n${this.output.slice(-2000)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private counter = 0;

  /** Runs one command line and returns its output. The marker is split by "" so the echoed input never matches it. */
  async command(line: string): Promise<string> {
    const n = ++this.counter;
    const from = this.output.length;
    this.child.stdin.write(`${line}; echo @@DO""NE-${n}@@\r`);
    return this.waitFor(`@@DONE-${n}@@`, from);
  }

  async start(): Promise<void> {
    await this.waitFor('Hit any key to stop autoboot', 0);
    this.child.stdin.write('\r');
    await this.waitFor('=> ', 0);
  }

  get log(): string {
    return this.output;
  }

  stop(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** One env copy made by mkenvimage (-r: redundant, with `flags`); `damage` breaks its CRC. */
function makeUbootCopy(dir: string, env: Record<string, string>, redundant: boolean, flags: number, damage: 'none' | 'flip' | 'torn'): Buffer {
  const path = join(dir, 'copy.bin');
  run('mkenvimage', ['-s', `0x${ENV_SIZE.toString(16)}`, ...(redundant ? ['-r'] : []), '-o', path, '-'], Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(''));
  const bytes = readFileSync(path);
  if (redundant) bytes[4] = flags;
  if (damage === 'flip') bytes[0] ^= 0xff;
  if (damage === 'torn') bytes.fill(0xff, TORN_AT);
  return bytes;
}

/** The env files of a case: [uboot.env] for the single layout, else the redundant pair. */
function makeUbootEnvFiles(dir: string, c: BootCase): Buffer[] {
  const redundant = c.uboot_layout !== 'single';
  const copies = redundant ? 2 : 1;
  if (c.env === 'missing') return [];
  if (c.env === 'zero') return Array.from({ length: copies }, () => Buffer.alloc(ENV_SIZE));
  if (c.env === 'corrupt') return Array.from({ length: copies }, (_, i) => makeUbootCopy(dir, CORRUPT_VARS, redundant, 1 - i, 'flip'));
  if (!redundant) return [makeUbootCopy(dir, c.env, false, 0, 'none')];
  // As provisioned: both copies, copy 0 selected (flags 1 over 0). With `previous`: the older copy
  // 0 (flags 1) and the newer copy 1 (flags 2), whose write may have been torn.
  if (!c.previous) return [makeUbootCopy(dir, c.env, true, 1, 'none'), makeUbootCopy(dir, c.env, true, 0, 'none')];
  return [makeUbootCopy(dir, c.previous, true, 1, 'none'), makeUbootCopy(dir, c.env, true, 2, c.torn ? 'torn' : 'none')];
}

const ubootTools = ['mkimage', 'mkenvimage', 'mkfs.vfat', 'mcopy', 'fw_printenv', 'qemu-system-aarch64', UBOOT_BIN];

testNeeding(t, 'U-Boot boot.scr follows boot-cases.json (QEMU aarch64, TCG)', cannotRun(ubootTools), {}, async (t) => {
  const dir = tempDir(t);
  const scr = join(dir, 'boot.scr');
  run('mkimage', ['-A', 'arm64', '-O', 'linux', '-T', 'script', '-C', 'none', '-n', 'larch', '-d', join(ROOT, 'board', 'uboot', 'boot.cmd'), scr]);
  const names = ['BOOT_ORDER', 'BOOT_A_GOOD', 'BOOT_A_LEFT', 'BOOT_B_GOOD', 'BOOT_B_LEFT', 'BOOT_LKG', 'BOOT_RESCUE'];

  const empty = join(dir, MARKER);
  writeFileSync(empty, '');
  /** The files every disk holds: boot.scr, and case.txt whose length says which disk it is. */
  const baseFiles = (i: number) => {
    // Each disk says which case it holds: QEMU and U-Boot do not number virtio-mmio disks in -drive order.
    const idFile = join(dir, `id${i}`);
    run('mkdir', ['-p', idFile]);
    writeFileSync(join(idFile, 'case.txt'), 'x'.repeat(i + 1));
    return [scr, join(idFile, 'case.txt')];
  };
  const disks = cases.map((c, i) => {
    const files = baseFiles(i);
    if (c.lkg_marker === 'B') files.push(empty);
    // mcopy names each file after its source, so stage them under their names.
    const staged = join(dir, `stage${i}`);
    run('mkdir', ['-p', staged]);
    const initial = makeUbootEnvFiles(dir, c);
    initial.forEach((bytes, k) => {
      writeFileSync(join(staged, ENV_FILES[k]), bytes);
      files.push(join(staged, ENV_FILES[k]));
    });
    const disk = join(dir, `disk${i}.img`);
    makeFatDisk(disk, files);
    return { disk, initial, redundant: c.uboot_layout !== 'single' };
  });
  // The kernel arguments disks come after the cases' (disk cases.length + j), in the last QEMU run.
  const kargsDisks = ubootKargsCases.map((k, j) => {
    const i = cases.length + j;
    const files = baseFiles(i);
    if (k.slot === 'B') files.push(empty);
    const disk = join(dir, `disk${i}.img`);
    makeFatDisk(disk, files, k.tree);
    return disk;
  });
  const allDisks = [...disks.map((d) => d.disk), ...kargsDisks];
  // virt has 32 virtio-mmio slots: one disk per case, one QEMU run per 32 cases.
  const started = Date.now();
  const log: string[] = [];
  for (let first = 0; first < allDisks.length; first += 32) {
    const batch = allDisks.slice(first, first + 32);
    const uboot = new UbootConsole(batch);
    t.teardown(() => uboot.stop());
    await uboot.start();
    const deviceOf = new Map<number, number>();
    for (let dev = 0; dev < batch.length; dev++) {
      // load sets filesize (hex): the file's length names the case.
      // U-Boot reads device numbers as hex.
      const out = await uboot.command(`setenv filesize 0; load virtio ${dev.toString(16)}:1 \${kernel_addr_r} case.txt; echo "case-of-${dev}=\${filesize}="`);
      const m = new RegExp(`case-of-${dev}=([0-9a-f]+)=`).exec(out);
      if (m && m[1] !== '0') deviceOf.set(parseInt(m[1], 16) - 1, dev);
    }
    t.equal(deviceOf.size, batch.length, `U-Boot sees every disk ${first + 1}..${first + batch.length}`);
    for (const [caseIndex, c] of cases.entries()) {
      if (caseIndex < first || caseIndex >= first + batch.length) continue;
      const i = deviceOf.get(caseIndex)!.toString(16);
      const expected = expectedEnvs(c, 'uboot');
      for (const [k, boot] of c.boots.entries()) {
        const at = `${c.name} boot ${k + 1}`;
        // A power-on: U-Boot's default env, then the script as distro_bootcmd would run it.
        const out = await uboot.command(`env default -f -a; setenv larch_dryrun 1; setenv devtype virtio; setenv devnum ${i}; setenv distro_bootpart 1; load virtio ${i}:1 \${scriptaddr} boot.scr; source \${scriptaddr}`);
        t.same(parseChoice(out), { slot: boot.slot, rescue: boot.rescue, wrote: boot.wrote }, `${at}: choice`);
        const want = expected[k];
        if (want) {
          const printed = `printenv ${[...new Set([...names, ...Object.keys(want)])].join(' ')}`;
          const lines = (out: string) => parseLines(out.split('\n').filter((l) => !l.startsWith('## ') && !l.includes(' bytes read') && !l.includes('copy-ok=')).join('\n'));
          if (!disks[caseIndex].redundant) {
            // U-Boot's own view of the file it just wrote (or left alone).
            const shown = await uboot.command(`env default -f -a; load virtio ${i}:1 \${kernel_addr_r} uboot.env; env import -c \${kernel_addr_r} \${filesize}; ${printed}`);
            t.same(lines(shown), want, `${at}: env as U-Boot reads it back`);
          } else {
            // Each copy as U-Boot's CRC check reads it (the CRC moved over the flags byte, as boot.cmd
            // does); the copy in use picked by selectCopy, which libubootenv agrees with (below).
            const copies = [];
            for (const file of ENV_FILES) {
              const shown = await uboot.command(
                `env default -f -a; setenv f none; if load virtio ${i}:1 \${kernel_addr_r} ${file} 0x4000; then setexpr t \${kernel_addr_r} + 4; setexpr.b f *\${t}; setexpr p \${kernel_addr_r} + 1; setexpr s \${kernel_addr_r} + 10000; cp.b \${kernel_addr_r} \${s} 4; cp.b \${s} \${p} 4; if env import -c \${p} 3fff; then echo "copy-ok=\${f}="; ${printed}; fi; fi`,
              );
              const ok = /copy-ok=([0-9a-f]+)=/.exec(shown);
              copies.push({ crcValid: ok !== null, flags: ok ? parseInt(ok[1], 16) : 0, vars: lines(shown) });
            }
            const active = selectCopy([copies[0], copies[1]]);
            t.not(active, null, `${at}: a valid copy`);
            t.same(active === null ? null : copies[active].vars, want, `${at}: env as U-Boot reads it back (copy ${active})`);
          }
        }
      }
    }
    for (const [j, k] of ubootKargsCases.entries()) {
      if (cases.length + j < first || cases.length + j >= first + batch.length) continue;
      const i = deviceOf.get(cases.length + j)!.toString(16);
      const at = `kernel arguments, ${k.name}`;
      const out = await uboot.command(`env default -f -a; setenv larch_dryrun 1; setenv larch_bootargs "${BOARD_KARGS}"; setenv devtype virtio; setenv devnum ${i}; setenv distro_bootpart 1; load virtio ${i}:1 \${scriptaddr} boot.scr; source \${scriptaddr}`);
      t.same(parseChoice(out), { slot: k.slot, rescue: false, wrote: false }, `${at}: choice`);
      t.same(parseKargs(out, 'bootargs', `${k.slot}/larch.env`), { args: k.args, damaged: k.args === null }, `${at}: ${k.args === null ? 'damaged, no bootargs' : 'bootargs'}\n${out.slice(-800)}`);
    }
    log.push(uboot.log);
    uboot.stop();
  }
  t.notMatch(log.join(''), /^INJECTED$/m, 'no env value ran as a command');
  t.comment(`U-Boot: ${cases.reduce((n, c) => n + c.boots.length, 0) + ubootKargsCases.length} boots in ${Date.now() - started} ms`);

  // The files on the disks, decoded on the host by libubootenv's fw_printenv (CRC checked; two
  // lines in fw_env.config: redundant, the newer valid copy).
  for (const [i, c] of cases.entries()) {
    const final = expectedEnvs(c, 'uboot').at(-1);
    const files = disks[i].redundant ? ENV_FILES : ENV_FILES.slice(0, 1);
    const got = files.map((name, k) => readFromDisk(disks[i].disk, name, join(dir, `out${i}-${k}.env`)));
    if (!c.boots.some((b) => b.wrote)) {
      t.same(got, files.map((_, k) => disks[i].initial[k] ?? null), `${c.name}: env files untouched`);
      continue;
    }
    const config = join(dir, `out${i}.config`);
    writeFileSync(config, files.map((_, k) => `${join(dir, `out${i}-${k}.env`)} 0x0 0x${ENV_SIZE.toString(16)}\n`).join(''));
    t.same(parseLines(run('fw_printenv', ['-c', config])), final, `${c.name}: fw_printenv reads the final env`);
  }
});

// ---- GRUB ---------------------------------------------------------------------------------------

const grubTools = ['grub-emu', 'grub-editenv', 'grub-script-check', 'mkfs.vfat', 'mcopy', 'mmd'];

/**
 * grub-emu runs ${prefix}/grub.cfg with prefix (host)/caseDir: a power-on that sources the fragment,
 * with root the disk's partition (where /A and /B are) and the grubenv and marker on it.
 */
function writeGrubSetup(caseDir: string, disk: string): void {
  const fragment = join(ROOT, 'board', 'grub', 'grub.cfg');
  writeFileSync(join(caseDir, 'device.map'), `(hd0) ${disk}\n`);
  writeFileSync(
    join(caseDir, 'grub.cfg'),
    `insmod part_msdos\ninsmod fat\nset root=(hd0,msdos1)\nset larch_dryrun=1\nset larch_bootargs="${BOARD_KARGS}"\nset larch_grubenv=(hd0,msdos1)/grubenv\nset larch_lkg_marker=(hd0,msdos1)/${MARKER}\nsource (host)${fragment}\nreboot\n`,
  );
}

/** One grub-emu power-on; its console output. */
function grubBoot(caseDir: string): string {
  const r = spawnSync('grub-emu', ['-d', caseDir, '-r', 'host', '-m', join(caseDir, 'device.map')], { input: '', encoding: 'latin1', timeout: 20000 });
  return r.stdout.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
}

testNeeding(t, 'GRUB grub.cfg follows boot-cases.json (grub-emu)', cannotRun(grubTools), {}, async (t) => {
  const fragment = join(ROOT, 'board', 'grub', 'grub.cfg');
  const check = spawnSync('grub-script-check', [fragment], { encoding: 'utf8' });
  t.equal(check.status, 0, `grub-script-check: ${check.stdout}${check.stderr}`);

  const dir = tempDir(t);
  const started = Date.now();
  let boots = 0;
  for (const [i, c] of cases.entries()) {
    if (c.only === 'uboot') continue;
    const caseDir = join(dir, `case${i}`);
    run('mkdir', ['-p', caseDir]);
    const grubenv = join(caseDir, 'grubenv');
    const files: string[] = [];
    if (c.lkg_marker === 'B') {
      writeFileSync(join(caseDir, MARKER), '');
      files.push(join(caseDir, MARKER));
    }
    if (c.env !== 'missing') {
      if (c.env === 'corrupt' || c.torn) {
        // Right size, wrong signature line (a write cut before its first sector): load_env refuses it.
        writeFileSync(grubenv, `# GRUB Environment Blok\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\n`.padEnd(1024, '#'));
      } else if (c.env === 'zero') {
        writeFileSync(grubenv, Buffer.alloc(1024));
      } else {
        run('grub-editenv', [grubenv, 'create']);
        const pairs = Object.entries(c.env).map(([k, v]) => `${k}=${v}`);
        if (pairs.length) run('grub-editenv', [grubenv, 'set', ...pairs]);
      }
      files.push(grubenv);
    }
    const disk = join(caseDir, 'disk.img');
    makeFatDisk(disk, files);
    const initial = c.env === 'missing' ? null : readFileSync(grubenv);
    writeGrubSetup(caseDir, disk);
    const expected = expectedEnvs(c, 'grub');
    for (const [k, boot] of c.boots.entries()) {
      const at = `${c.name} boot ${k + 1}`;
      const out = grubBoot(caseDir);
      boots++;
      t.notMatch(out, /^INJECTED$/m, `${at}: no env value ran as a command`);
      t.same(parseChoice(out), { slot: boot.slot, rescue: boot.rescue, wrote: boot.wrote }, `${at}: choice\n${out.slice(-600)}`);
      const got = readFromDisk(disk, 'grubenv', join(caseDir, 'out.env'));
      if (expected[k] === null) {
        t.same(got, initial, `${at}: env file untouched`);
        continue;
      }
      t.same(parseLines(run('grub-editenv', [join(caseDir, 'out.env'), 'list'])), expected[k], `${at}: grub-editenv reads the env`);
      if (!boot.wrote && k === 0) t.same(got, initial, `${at}: not rewritten`);
    }
  }

  for (const [j, k] of grubKargsCases.entries()) {
    const at = `kernel arguments, ${k.name}`;
    const caseDir = join(dir, `kargs${j}`);
    run('mkdir', ['-p', caseDir]);
    const files: string[] = [];
    if (k.slot === 'B') {
      writeFileSync(join(caseDir, MARKER), '');
      files.push(join(caseDir, MARKER));
    }
    const disk = join(caseDir, 'disk.img');
    makeFatDisk(disk, files, k.tree);
    writeGrubSetup(caseDir, disk);
    const out = grubBoot(caseDir);
    boots++;
    t.same(parseChoice(out), { slot: k.slot, rescue: false, wrote: false }, `${at}: choice\n${out.slice(-600)}`);
    t.same(parseKargs(out, 'kargs', `${k.slot}/kargs.grubenv`), { args: k.args, damaged: k.args === null }, `${at}: ${k.args === null ? 'damaged, no kargs' : 'kargs'}\n${out.slice(-600)}`);
  }
  t.comment(`GRUB: ${boots} boots in ${Date.now() - started} ms`);
});

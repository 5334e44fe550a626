/**
 * larch image build for qemu-x86_64-grub, through the Bun binary: the demo definition
 * (images/qemu-x86_64-grub.toml, real Debian packages, cached in .cache/compose) becomes a disk
 * image built without root; its partition table (sfdisk -d), boot partition (mtools) and root
 * partition (debugfs) hold what docs/images.md says; then it boots under qemu-system-x86_64
 * (TCG, never KVM): GRUB picks slot A, the initramfs mounts the deployment and runs
 * `larch boot-check`, whose result is read from the serial console.
 */
import t from 'tap';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { BIN, ROOT, larch, larchOk, sh, tempDir } from '../helpers.ts';

const CACHE = join(ROOT, '.cache', 'compose');
const TOOLS = ['qemu-system-x86_64', 'grub-mkimage', 'sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'debugfs', 'cpio', 'grub-editenv', 'mtype'];
const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
const native = sh('dpkg --print-architecture').trim() === 'amd64';

t.test('image build: usage errors', async (t) => {
  const dir = tempDir(t, 'larch-image-usage-');
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const cases: [string, string[], RegExp][] = [
    ['unknown board', ['image', 'build', 'x.toml', '--board', 'pi9', '--out', join(dir, 'd.img'), '--repo', repo], /unknown board 'pi9' \(known: qemu-x86_64-grub\)/],
    ['definition and --rev', ['image', 'build', 'x.toml', '--rev', 'HEAD', '--board', 'qemu-x86_64-grub', '--out', join(dir, 'd.img'), '--repo', repo], /either DEFINITION\.toml or --rev/],
    ['neither', ['image', 'build', '--board', 'qemu-x86_64-grub', '--out', join(dir, 'd.img'), '--repo', repo], /either DEFINITION\.toml or --rev/],
    ['no --out', ['image', 'build', 'x.toml', '--board', 'qemu-x86_64-grub', '--repo', repo], /--out/],
  ];
  for (const [name, args, message] of cases) {
    const r = await larch(args, { cwd: dir });
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.stderr, message, `${name}: message`);
  }
});

/** Boots the image until the init has synced after boot-check; QEMU is stopped (and waited for) before returning. */
async function boot(t: { teardown(fn: () => unknown): void }, disk: string): Promise<{ console: string; outcome: Record<string, unknown>; seconds: number }> {
  const started = Date.now();
  const qemu: ChildProcess = spawn('qemu-system-x86_64', ['-machine', 'pc', '-cpu', 'max', '-m', '1024', '-nographic', '-nodefaults', '-serial', 'stdio', '-drive', `file=${disk},format=raw,if=virtio`, '-nic', 'none', '-no-reboot'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => qemu.on('exit', () => resolve()));
  t.teardown(() => {
    if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  });
  let raw = '';
  const clean = () => raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
  try {
    const line = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no boot-check within 150 s; console:\n${clean().slice(-3000)}`)), 150_000);
      const onData = (d: Buffer) => {
        raw += d.toString('latin1');
        const text = clean();
        const m = /^larch: boot-check: (.*)$/m.exec(text);
        if (m && /larch: init: synced/.test(text)) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      qemu.stdout!.on('data', onData);
      qemu.stderr!.on('data', onData);
      qemu.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qemu exited ${code}; console:\n${clean().slice(-3000)}`));
      });
    });
    const seconds = (Date.now() - started) / 1000;
    return { console: clean(), outcome: JSON.parse(line) as Record<string, unknown>, seconds };
  } finally {
    qemu.kill('SIGKILL');
    await exited;
  }
}

t.test('image build: qemu-x86_64-grub disk image, booted under QEMU to boot-check', { skip: missing.length ? `missing: ${missing.join(' ')}` : !native ? 'needs an amd64 host (apt indexes for amd64)' : false, timeout: 300_000 }, async (t) => {
  const dir = tempDir(t, 'larch-image-');
  const repo = join(dir, 'repo');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  await larchOk(['keygen', '--out', join(dir, 'vendor')]);
  const disk = join(dir, 'disk.img');
  const started = Date.now();
  const built = await larchOk(['image', 'build', join(ROOT, 'images', 'qemu-x86_64-grub.toml'), '--board', 'qemu-x86_64-grub', '--out', disk, '--repo', repo, '--sign-key', join(dir, 'vendor.key'), '--larch-bin', BIN, '--cache', CACHE, '--work-dir', dir, '--json'], { cwd: dir });
  const result = JSON.parse(built.stdout);
  t.comment(`image built in ${((Date.now() - started) / 1000).toFixed(1)} s: ${Math.round(result.layout.size / 1048576)} MiB`);
  t.equal(result.board, 'qemu-x86_64-grub');
  t.match(result.commit, /^[0-9a-f]{64}$/);
  t.equal(result.compose.kernel.release, '6.1.0-56-cloud-amd64');

  // The partition table: FAT32 boot (bootable) at 1 MiB, then the ext4 root.
  const table = sh(`sfdisk -d '${disk}'`);
  const parts = table.split('\n').filter((l) => l.startsWith(disk));
  t.equal(parts.length, 2, 'two partitions');
  t.match(parts[0], /start=\s*2048, size=\s*\d+, type=c, bootable/);
  t.match(parts[1], /type=83/);
  const rootStart = Number(/start=\s*(\d+)/.exec(parts[1])![1]) * 512;
  t.equal(rootStart, result.layout.root.start);

  // GRUB in the MBR gap: boot.img's code, then core.img from LBA 1.
  const mbr = spawnSync('dd', [`if=${disk}`, 'bs=512', 'count=2', 'status=none']).stdout as Buffer;
  t.equal(mbr.readUInt16LE(510), 0xaa55, 'MBR signature');
  t.ok(mbr.subarray(0, 440).includes(Buffer.from('GRUB')), "GRUB's boot.img in the MBR");

  // The boot partition: grub.cfg (board settings) + larch.cfg (board/grub/grub.cfg), grubenv, slot A.
  const img = `${disk}@@1M`;
  const grubDir = sh(`mdir -b -i '${img}' ::/grub`);
  for (const f of ['grub.cfg', 'larch.cfg', 'grubenv']) t.match(grubDir, new RegExp(`/grub/${f.replace('.', '\\.')}\\b`), `/grub/${f}`);
  t.match(sh(`mtype -i '${img}' ::/grub/grub.cfg`), /source \$\{prefix\}\/larch\.cfg/);
  const env = sh(`mtype -i '${img}' ::/grub/grubenv`);
  t.match(env, /^# GRUB Environment Block\n/);
  t.match(env, /BOOT_ORDER=A B\nBOOT_A_GOOD=1\n/, 'slot A good and first');
  const slotA = sh(`mdir -b -i '${img}' ::/A`);
  t.match(slotA, /\/A\/vmlinuz\b/);
  t.match(slotA, /\/A\/initrd\.img\b/);

  // The root partition: the sysroot, with slot A deployed and the larch binary.
  const debugfs = (cmd: string) => sh(`debugfs -R '${cmd}' '${disk}?offset=${rootStart}' 2>/dev/null`);
  t.match(debugfs('ls -p /larch/deploy'), /\/A\//, 'slot A deployed');
  t.match(debugfs('ls -p /larch/deploy/A/usr/bin'), /\/busybox\//);
  t.match(debugfs('stat /larch/bin/larch'), /Size: \d{7,}/, 'larch binary');
  t.match(debugfs('ls -p /larch/keys'), /vendor\.pub/);
  t.match(debugfs('cat /larch/config.json'), /"bootloader":\s*"grub"/);

  // Boot it: TCG only (-cpu max: Bun needs AVX2, which TCG has since QEMU 7.2).
  const first = await boot(t, disk);
  t.comment(`power-on to boot-check: ${first.seconds.toFixed(1)} s`);
  t.match(first.console, /larch: slot=A rescue=0 wrote=0/, 'GRUB chose slot A from the grubenv without a write');
  t.match(first.console, /larch: init: slot A mounted/);
  t.equal(first.outcome.slot, 'A');
  t.equal(first.outcome.commit, result.commit, 'the booted deployment is the built commit');
  t.equal(first.outcome.healthy, true);
  t.equal(first.outcome.outcome, 'already-good', 'provisioned slot A was already good');
  t.equal(first.outcome.fell_back, false);

  // Slot A unconfirmed with 3 tries (as after an upgrade): GRUB spends one (save_env on the FAT
  // grubenv), boot-check finds it healthy and marks it good from Linux; the grubenv says so after.
  const envFile = join(dir, 'grubenv');
  sh(`mcopy -o -i '${img}' ::/grub/grubenv '${envFile}' && grub-editenv '${envFile}' set BOOT_A_GOOD=0 BOOT_A_LEFT=3 && mcopy -o -i '${img}' '${envFile}' ::/grub/grubenv`);
  const second = await boot(t, disk);
  t.comment(`power-on to boot-check (unconfirmed slot): ${second.seconds.toFixed(1)} s`);
  t.match(second.console, /larch: slot=A rescue=0 wrote=1/, 'GRUB spent a try on slot A');
  t.equal(second.outcome.outcome, 'confirmed', 'boot-check marked slot A good');
  t.equal(second.outcome.healthy, true);
  const after = sh(`mtype -i '${img}' ::/grub/grubenv`);
  t.match(after, /BOOT_A_GOOD=1\n/, 'marked good in the grubenv');
  t.match(after, /BOOT_A_LEFT=0\n/);
  t.match(after, /BOOT_LKG=A\n/);
});

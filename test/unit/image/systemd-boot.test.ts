/**
 * The systemd-boot part of image build (src/image/systemd-boot.ts) and the GPT table of
 * src/image/disk.ts: the loader comes from the commit's tree before the host's, lands at the
 * removable-media path of the architecture, a missing loader names the package to add, and the
 * table sfdisk writes has the ESP type on partition 1 (read back with sfdisk --json).
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { GPT_TYPE, partitionTable, planLayout } from '../../../src/image/disk.ts';
import { systemdBootBootloader, systemdBootEfiPath } from '../../../src/image/systemd-boot.ts';
import { missingTools, tempDir, testNeeding } from '../../helpers.ts';

async function tree(files: Record<string, string>): Promise<string> {
  const dir = tempDir(t, 'larch-sdboot-');
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

t.test("the loader is the commit's own, at the architecture's removable-media path", async (t) => {
  const commit = await tree({ [systemdBootEfiPath('x64')]: 'systemd-boot of the release' });
  const host = await tree({ [systemdBootEfiPath('x64')]: "the host's systemd-boot" });
  const b = await systemdBootBootloader({ architecture: 'amd64', tree: commit, hostRoot: host });
  t.equal(b.table, 'gpt');
  t.same(Object.keys(b.bootFiles), ['EFI/BOOT/BOOTX64.EFI']);
  t.equal(Buffer.from(b.bootFiles['EFI/BOOT/BOOTX64.EFI']).toString(), 'systemd-boot of the release');
  t.equal(b.writeBootCode, undefined, 'nothing before the first partition: UEFI reads the ESP');

  const arm = await systemdBootBootloader({ architecture: 'arm64', tree: await tree({ [systemdBootEfiPath('aa64')]: 'aa64' }), hostRoot: host });
  t.same(Object.keys(arm.bootFiles), ['EFI/BOOT/BOOTAA64.EFI']);
});

t.test("a commit without systemd-boot-efi gets the host's; with neither, the error names the package", async (t) => {
  const host = await tree({ [systemdBootEfiPath('x64')]: "the host's systemd-boot" });
  const empty = await tree({});
  const b = await systemdBootBootloader({ architecture: 'amd64', tree: empty, hostRoot: host });
  t.equal(Buffer.from(b.bootFiles['EFI/BOOT/BOOTX64.EFI']).toString(), "the host's systemd-boot");
  await t.rejects(systemdBootBootloader({ architecture: 'amd64', tree: empty, hostRoot: empty }), { code: 'NOT_FOUND', message: /systemd-boot \(\/usr\/lib\/systemd\/boot\/efi\/systemd-bootx64\.efi\) is neither in the commit's tree nor on this host/, hint: /systemd-boot-efi/ });
  await t.rejects(systemdBootBootloader({ architecture: 'armhf', tree: empty, hostRoot: host }), { code: 'INVALID_INPUT', message: /no systemd-boot for architecture armhf/ });
});

const noSfdisk = missingTools(['sfdisk']).length > 0 && 'sfdisk is not installed (fdisk)';
testNeeding(t, 'the GPT table sfdisk writes: partition 1 is the ESP, partition 2 Linux data, the backup header fits', noSfdisk, {}, async (t) => {
  const layout = planLayout(10 << 20, 20 << 20);
  const gptSize = layout.size + (1 << 20);
  const disk = join(tempDir(t, 'larch-gpt-'), 'disk.img');
  execFileSync('truncate', ['-s', String(gptSize), disk]);
  execFileSync('sfdisk', ['-q', '--no-reread', '--no-tell-kernel', disk], { input: partitionTable(layout, 'gpt') });
  const read = JSON.parse(execFileSync('sfdisk', ['--json', disk], { encoding: 'utf8' })).partitiontable;
  t.equal(read.label, 'gpt');
  t.match(read.partitions, [
    { start: layout.boot.start / 512, size: layout.boot.size / 512, type: GPT_TYPE.esp, name: 'esp' },
    { start: layout.root.start / 512, size: layout.root.size / 512, type: GPT_TYPE.linux, name: 'larch-root' },
  ]);
  t.ok(read.lastlba < gptSize / 512 - 33, 'the backup table after the last usable sector fits in the image');
  const mbr = partitionTable(layout, 'mbr');
  t.match(mbr, /^label: dos\n/);
  t.match(mbr, /type=c, bootable\n/);
});

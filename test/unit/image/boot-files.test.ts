/**
 * A board profile's boot files (src/image/build.ts boardBootFiles): each from its source (the
 * commit's tree, board/, --firmware-dir), and every way one can be missing or unsafe refused with
 * the file named.
 */
import t from 'tap';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { boardBootFiles } from '../../../src/image/build.ts';
import type { BoardProfile, BoardBootFile } from '../../../src/image/profile.ts';
import { ROOT, tempDir } from '../../helpers.ts';

const board = (bootFiles: BoardBootFile[]): BoardProfile => ({ name: 'pi', bootloader: 'uboot', architecture: 'arm64', ubootArch: 'arm64', kargs: [], root: 'LABEL=r', boot: 'LABEL=b', bootFiles });

t.test('boot files come from the tree, board/ and the firmware directory', async (t) => {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'usr/lib/u-boot'), { recursive: true });
  await writeFile(join(tree, 'usr/lib/u-boot/u-boot.bin'), 'uboot');
  await mkdir(join(dir, 'fw'));
  await writeFile(join(dir, 'fw/start4.elf'), 'start4');
  const files = await boardBootFiles(
    board([
      { path: 'u-boot.bin', from: 'tree', source: 'usr/lib/u-boot/u-boot.bin' },
      { path: 'config.txt', from: 'board', source: 'rpi4/config.txt' },
      { path: 'start4.elf', from: 'firmware', source: 'start4.elf' },
    ]),
    tree,
    { firmwareDir: join(dir, 'fw') },
  );
  t.same(Object.keys(files), ['u-boot.bin', 'config.txt', 'start4.elf']);
  t.equal(Buffer.from(files['u-boot.bin']).toString(), 'uboot');
  t.equal(Buffer.from(files['config.txt']).toString(), await readFile(join(ROOT, 'board/rpi4/config.txt'), 'utf8'));
  t.equal(Buffer.from(files['start4.elf']).toString(), 'start4');
});

t.test('missing or unsafe sources are refused, naming the file', async (t) => {
  const dir = tempDir(t);
  const tree = join(dir, 'tree');
  await mkdir(join(tree, 'boot'), { recursive: true });
  await symlink('/etc/hostname', join(tree, 'boot/link.bin'));
  const one = (f: BoardBootFile, firmwareDir?: string) => boardBootFiles(board([f]), tree, firmwareDir === undefined ? {} : { firmwareDir });
  await t.rejects(one({ path: 'start4.elf', from: 'firmware', source: 'start4.elf' }), { code: 'USAGE', message: /board pi needs --firmware-dir DIR holding start4\.elf/ }, 'no --firmware-dir');
  await t.rejects(one({ path: 'start4.elf', from: 'firmware', source: 'start4.elf' }, join(dir, 'fw')), { code: 'NOT_FOUND', message: /fw\/start4\.elf not found \(for start4\.elf on the boot partition\)/ }, 'not in the firmware directory');
  await t.rejects(one({ path: 'u-boot.bin', from: 'tree', source: 'usr/lib/u-boot/u-boot.bin' }), { code: 'NOT_FOUND', message: /the commit's \/usr\/lib\/u-boot\/u-boot\.bin not found/, hint: /add the package that ships/ }, 'not in the tree');
  await t.rejects(one({ path: 'x.bin', from: 'tree', source: 'boot/link.bin' }), { code: 'INVALID_INPUT', message: /the commit's \/boot\/link\.bin is a symlink/ }, "a symlink in the tree is not followed onto the build host");
  await t.rejects(one({ path: 'config.txt', from: 'board', source: 'rpi9/config.txt' }), { code: 'NOT_FOUND', message: /board\/rpi9\/config\.txt not found/ }, 'not in board/');
});

/**
 * Issue 19, must-show 4: nothing in src/ names QEMU's disk (/dev/vda) or a QEMU console (ttyS0,
 * ttyAMA0). Boards are data: board/profiles/*.toml hold the consoles, and partitions are found
 * by label or UUID (src/image/profile.ts).
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../helpers.ts';

/** QEMU's virtio disks, and the consoles of QEMU's PC and virt machines. */
const BOARD_SPECIFIC = /\/dev\/vd[a-z]|\bttyS\d|\bttyAMA\d/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

t.test('src/ names no QEMU disk and no QEMU console', async (t) => {
  const files = sourceFiles(join(ROOT, 'src'));
  t.ok(files.length > 100, `${files.length} source files read`);
  const found = files.flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .flatMap((line, i) => (BOARD_SPECIFIC.test(line) ? [`${relative(ROOT, file)}:${i + 1}: ${line.trim()}`] : [])),
  );
  t.same(found, [], 'a board-specific name belongs in board/profiles/');
});

t.test('the check finds what it looks for', async (t) => {
  for (const line of ["root: '/dev/vda2'", 'console=ttyS0,115200', 'console=ttyAMA0']) t.ok(BOARD_SPECIFIC.test(line), line);
  for (const line of ['/dev/mmcblk0', 'console=tty0', 'LABEL=larch-root']) t.notOk(BOARD_SPECIFIC.test(line), line);
});

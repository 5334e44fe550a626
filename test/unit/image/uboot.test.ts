/** The boot.scr text image build writes for a U-Boot board: the board's settings, then boot.cmd. */
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { ubootScript } from '../../../src/image/uboot.ts';

t.test('settings become setenv lines before boot.cmd', async (t) => {
  const text = ubootScript({ larch_bootargs: 'console=ttyAMA0 larch.root=LABEL=larch-root', larch_kernel: 'vmlinuz' }, 'echo boot.cmd\n', 'larch: board x');
  t.equal(text, '# larch: board x\nsetenv larch_bootargs "console=ttyAMA0 larch.root=LABEL=larch-root"\nsetenv larch_kernel "vmlinuz"\n\necho boot.cmd\n');
});

t.test('values U-Boot would re-read are refused', async (t) => {
  // Inside hush double quotes, " ends the value, $ expands, \ escapes: none may reach boot.scr.
  for (const value of ['a"b', 'root=$x', 'a\\b', 'a\nb']) {
    t.throws(() => ubootScript({ larch_bootargs: value }, '', 'h'), { code: 'INVALID_INPUT', message: /larch_bootargs/ }, JSON.stringify(value));
  }
  t.throws(() => ubootScript({ 'bad name': 'x' }, '', 'h'), LarchError);
});

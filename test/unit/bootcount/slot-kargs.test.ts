import t from 'tap';
import { SLOT_KARGS_FILE_BYTES, decodeSlotKargs, encodeSlotKargs, slotKargsFileName } from '../../../src/bootcount/slot-kargs.ts';

const KARGS = ['console=ttyS0,115200', 'quiet', 'larch.root=LABEL=larch-root', 'opt="a b"', 'x=$y'];

for (const kind of ['uboot', 'grub'] as const) {
  t.test(`${kind}: the file round-trips, is ${SLOT_KARGS_FILE_BYTES} bytes, and holds what the bootloader reads`, async (t) => {
    const bytes = encodeSlotKargs(kind, 'B', KARGS);
    t.equal(bytes.length, SLOT_KARGS_FILE_BYTES);
    t.equal(decodeSlotKargs(kind, 'B', bytes, 'B/f'), KARGS.join(' '));
    t.equal(decodeSlotKargs(kind, 'A', encodeSlotKargs(kind, 'A', []), 'A/f'), '');
    const text = Buffer.from(bytes).toString('latin1');
    if (kind === 'uboot') t.match(text, `bootargs=${KARGS.join(' ')} larch.slot=B\0`);
    else t.match(text, `larch_kargs=${KARGS.join(' ')}\n`);
  });

  t.test(`${kind}: a torn or damaged file is ENV_CORRUPT naming the file`, async (t) => {
    const bytes = encodeSlotKargs(kind, 'A', KARGS);
    const torn = bytes.slice();
    torn.fill(0, 30);
    const damaged = kind === 'uboot' ? torn : new Uint8Array(SLOT_KARGS_FILE_BYTES);
    t.throws(() => decodeSlotKargs(kind, 'A', damaged, '/boot/A/f'), { code: 'ENV_CORRUPT', message: /\/boot\/A\/f/ });
    if (kind === 'uboot') t.throws(() => decodeSlotKargs(kind, 'B', bytes, 'f'), /larch\.slot=B/, "slot A's file is not slot B's");
  });
}

t.test('the file names', async (t) => {
  t.equal(slotKargsFileName('uboot'), 'larch.env');
  t.equal(slotKargsFileName('grub'), 'kargs.grubenv');
});

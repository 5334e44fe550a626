/**
 * The disk layout (src/image/disk.ts) with raw areas before partition 1 (a U-Boot env in the
 * board's own storage, image build for emmc-arm64-uboot): partition 1 moves to the MiB after the
 * last area, never before 1 MiB, and no area may overlap the partition table. Pure.
 */
import t from 'tap';
import { firstPartitionStart, planLayout } from '../../../src/image/disk.ts';

const MiB = 1024 * 1024;
const area = (offset: number, size = 0x4000) => ({ offset, bytes: new Uint8Array(size) });

t.test('partition 1 starts at 1 MiB, or at the MiB after the last raw area', async (t) => {
  t.equal(firstPartitionStart(), MiB, 'no raw area: 1 MiB (GRUB core.img fits before it)');
  t.equal(firstPartitionStart([area(0x8000)]), MiB, 'an area inside the first MiB: still 1 MiB');
  t.equal(firstPartitionStart([area(0x400000), area(0x404000)]), 5 * MiB, 'the redundant env at 4 MiB: 5 MiB');
  t.equal(firstPartitionStart([area(0x404000), area(0x400000)]), 5 * MiB, 'in any order');
  t.equal(firstPartitionStart([area(MiB - 0x4000)]), MiB, 'an area ending exactly at 1 MiB');
  t.equal(firstPartitionStart([area(MiB - 0x2000)]), 2 * MiB, 'one byte over: the next MiB');
  t.throws(() => firstPartitionStart([area(0)]), { code: 'INVALID_INPUT', message: /a raw area at offset 0 overlaps the partition table \(the first 512 bytes\)/ }, 'over the MBR');
  t.equal(firstPartitionStart([area(512)]), MiB, 'right after the MBR');
  t.throws(() => firstPartitionStart([area(512)], 'gpt'), { message: /the first 17408 bytes/ }, "over GPT's header and table");
  const layout = planLayout(10 * MiB, 20 * MiB, { bootStart: 5 * MiB });
  t.equal(layout.boot.start, 5 * MiB);
  t.equal(layout.root.start, layout.boot.start + layout.boot.size, 'the root partition follows');
  t.equal(layout.size, layout.root.start + layout.root.size);
});

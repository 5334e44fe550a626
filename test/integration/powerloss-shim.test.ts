/**
 * The power-loss machinery checked on its own, before it judges larch: through blockshim, a
 * loop-mounted ext4 sees flushes pass through, a file written and fsynced survives every crash
 * state, a file written without fsync is lost in the state that keeps only what the last
 * barrier covered (it was still in the page cache), and every state is a consistent ext4.
 */
import t from 'tap';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { prng, sh, tempDir } from '../helpers.ts';
import { gate, makeExt4, mountImage, mountRecorded, writeState } from '../powerloss/blockdev.ts';
import { crashStates } from '../powerloss/replay.ts';

t.test('blockshim: synced writes survive a power cut, unsynced ones are lost', gate(120_000), async (t) => {
  const work = tempDir(t, 'larch-powerloss-shim-');
  const base = join(work, 'base.img');
  makeExt4(base, 32);
  const image = join(work, 'run.img');
  sh(`cp --sparse=always '${base}' '${image}'`);
  const mnt = join(work, 'mnt');
  const rec = await mountRecorded(t, image, mnt, work);

  // The loop device declares a volatile write cache, so the block layer sends it flushes (and,
  // with no FUA, turns a FUA write into a write and a flush); the loop driver passes each on as
  // fsync of the shim's file.
  const loop = sh(`findmnt -no SOURCE '${mnt}'`).trim().replace('/dev/', '');
  t.equal(readFileSync(`/sys/block/${loop}/queue/write_cache`, 'utf8').trim(), 'write back', `${loop} has a write-back cache: flushes are sent`);
  const synced = 'synced '.repeat(2000);
  const fd = openSync(join(mnt, 'synced.txt'), 'w');
  writeSync(fd, synced);
  fsyncSync(fd);
  closeSync(fd);
  const dir = openSync(mnt, 'r');
  fsyncSync(dir);
  closeSync(dir);
  const unsynced = 'UNSYNCED-'.repeat(2000);
  writeFileSync(join(mnt, 'unsynced.txt'), unsynced);

  const atCrash = await rec.snapshot(); // the power cut: whatever the kernel still holds is lost
  const whole = await rec.close(); // umount writes back the page cache: more records
  const flushes = atCrash.filter((r) => r.kind === 'flush').length;
  t.ok(flushes >= 1, `the fsyncs reached the shim as flush barriers through the loop device (${flushes})`);
  const holds = (rs: typeof whole, text: string) => rs.some((r) => r.kind === 'write' && Buffer.from(r.data).includes(text.slice(0, 64)));
  t.ok(holds(atCrash, synced), 'the synced file content was written before the cut');
  t.notOk(holds(atCrash, unsynced), 'the unsynced file content had not reached the device at the cut (page cache)');
  t.ok(holds(whole, unsynced), 'it reaches the device later, at umount: the shim sees the writeback too');

  // Cut points: the crash, every moment of the writeback at umount just before one of its
  // flushes (where the most is pending), and its end.
  const random = prng(14);
  const beforeFlushes = whole.flatMap((r, i) => (i > atCrash.length && r.kind === 'flush' ? [i] : []));
  t.ok(beforeFlushes.length >= 1, `the writeback at umount ends in flushes (${beforeFlushes.length})`);
  const atCut = crashStates(atCrash, atCrash.length, 4, random);
  const states = [
    ...atCut,
    ...beforeFlushes.flatMap((cut) => crashStates(whole, cut, 3, random)),
    ...crashStates(whole, whole.length, 1, random),
  ];
  const pending = states.filter((s) => s.dropped > 0 || s.reordered).length;
  // At least the writeback's data writes are pending before the commit's preflush (how many cuts more, varies).
  t.ok(pending >= 1, `${pending} of ${states.length} states dropped or reordered writes`);
  for (const [i, state] of states.entries()) {
    const img = join(work, `state-${i}.img`);
    await writeState(base, img, state.writes);
    const umount = mountImage(t, img, mnt); // ext4 replays its journal, as at boot
    const what = `state ${i} (${state.name}, ${state.dropped} of ${state.pending} pending sectors dropped${state.reordered ? ', reordered' : ''})`;
    t.equal(readFileSync(join(mnt, 'synced.txt'), 'utf8'), synced, `${what}: the synced file is whole`);
    const last = i === states.length - 1;
    if (last) t.equal(readFileSync(join(mnt, 'unsynced.txt'), 'utf8'), unsynced, `${what}: after the whole log, the unsynced file is there too`);
    else if (i < atCut.length) t.notOk(existsSync(join(mnt, 'unsynced.txt')), `${what}: the unsynced file is lost (it was in the page cache at the cut)`);
    else if (existsSync(join(mnt, 'unsynced.txt'))) {
      // data=ordered never shows stale blocks, but it can show zeros: the size and an unwritten
      // extent commit before the data lands, and the extent becomes written in a later
      // transaction (dioread_nolock, the default since Linux 5.6). A rename of a file written
      // without fsync can leave exactly this: the reason for larch's fsync before rename.
      const got = readFileSync(join(mnt, 'unsynced.txt'));
      const sane = [...got].every((byte, k) => byte === 0 || byte === unsynced.charCodeAt(k));
      t.ok(sane && got.length <= unsynced.length, `${what}: the unsynced file holds its own bytes or zeros, never others (${got.length} bytes, ${got.filter((b) => b !== 0).length} non-zero)`);
    }
    await umount();
    const fsck = sh(`e2fsck -fn '${img}' 2>&1; echo "exit $?"`);
    t.match(fsck, /exit 0\s*$/, `${what}: e2fsck finds a clean filesystem`);
  }
});

/**
 * The systemd-boot store on a temporary ESP (src/bootcount/bls-store.ts): what it writes is
 * exactly bls.ts's plan, it reads back the state it wrote, systemd-boot's renames (firmwareBoot)
 * and systemd-bless-boot's are read as larch's state, and damage reads as the safe default.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BODY_FILE, formatBody, slotBody } from '../../../src/bootcount/bls.ts';
import { LOADER_CONF, blsEnvStore, readSlotBody } from '../../../src/bootcount/bls-store.ts';
import { type BootState, INITIAL_STATE, decode, encode, mergeInto, next } from '../../../src/bootcount/state.ts';

async function esp(t: { teardown: (f: () => unknown) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'larch-bls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const slot of ['A', 'B'] as const) {
    await mkdir(join(dir, slot));
    await writeFile(join(dir, slot, 'vmlinuz'), 'kernel');
    await writeFile(join(dir, slot, 'initrd.img'), 'initrd');
  }
  await writeFile(join(dir, 'A', BODY_FILE), formatBody(slotBody('A', ['console=ttyS0', 'quiet'], (f) => f !== 'dtb')));
  const store = blsEnvStore(dir, { lockPath: join(dir, 'lock') });
  return { dir, store, entries: () => readdir(join(dir, 'loader', 'entries')).then((n) => n.sort()) };
}

const stateOf = async (store: ReturnType<typeof blsEnvStore>) => decode(await store.read());
const change = (store: ReturnType<typeof blsEnvStore>, f: (s: BootState) => BootState) => store.update((vars) => {
  const merged = mergeInto(vars, f(decode(vars)));
  vars.clear();
  for (const [k, v] of merged) vars.set(k, v);
});

t.test('init writes loader.conf, slot A from its body and the rescue entry; reads back the factory state', async (t) => {
  const { dir, store, entries } = await esp(t);
  await store.init(new Map(encode(INITIAL_STATE)));
  t.same(await entries(), ['larch-a.conf', 'larch-rescue.conf']);
  t.equal(await readFile(join(dir, 'loader', 'loader.conf'), 'utf8'), LOADER_CONF, 'no default: systemd-boot would pin a bad slot with one');
  t.equal(await readFile(join(dir, 'loader', 'entries', 'larch-a.conf'), 'utf8'), 'title larch A\nsort-key larch\nversion 1\nlinux /A/vmlinuz\ninitrd /A/initrd.img\noptions console=ttyS0 quiet larch.slot=A\n', "the slot's options: its arguments and larch.slot=A");
  t.same(await stateOf(store), INITIAL_STATE);
  await t.rejects(store.init(new Map(encode(INITIAL_STATE))), { code: 'EXISTS' }, 'init refuses entries that are there');
});

t.test('an upgrade, the tries systemd-boot spends, the fallback, and mark-good, through the files', async (t) => {
  const { dir, store, entries } = await esp(t);
  await store.init(new Map(encode(INITIAL_STATE)));
  await change(store, (s) => next(s, { type: 'slot-prepared', slot: 'B' }));
  await writeFile(join(dir, 'B', BODY_FILE), formatBody(slotBody('B', ['quiet'], (f) => f !== 'dtb')));
  await change(store, (s) => next(s, { type: 'upgrade-staged', slot: 'B', tries: 2 }));
  await store.update((vars) => vars.set('BOOT_RELEASES', '0 1 2'));
  t.same(await entries(), ['larch-a.conf', 'larch-b+2.conf', 'larch-rescue.conf'], 'B counted, A good, the rescue entry still on A');
  t.equal((await store.read()).get('BOOT_RELEASES'), '0 1 2', 'what names cannot hold is kept in loader/larch.env');
  t.match(await readFile(join(dir, 'loader', 'entries', 'larch-b+2.conf'), 'utf8'), /^version 2\noptions quiet larch\.slot=B$|options quiet larch\.slot=B\n$/m, "B's entry has B's arguments");
  const boots = [];
  for (let i = 0; i < 3; i++) {
    const c = (await store.firmwareBoot())!;
    boots.push(`${c.slot}${c.wrote ? '*' : ''}`);
  }
  t.same(boots, ['B*', 'B*', 'A'], 'two tries spent by renaming, then A');
  t.same(await entries(), ['larch-a.conf', 'larch-b+0-2.conf', 'larch-rescue.conf'], 'as systemd-boot 252 leaves them');
  const s = await stateOf(store);
  t.same(s.slots.B, { good: false, triesLeft: 0 }, 'larch reads what systemd-boot decremented');
  await change(store, (st) => next(next(st, { type: 'fallback-recorded', booted: 'A' }), { type: 'marked-good', slot: 'A' }));
  t.same((await stateOf(store)).order, ['A', 'B'], 'the fallback recorded: A first (one version rewrite)');
  t.match(await readFile(join(dir, 'loader', 'entries', 'larch-a.conf'), 'utf8'), /^version 3$/m);
  t.same(await entries(), ['larch-a.conf', 'larch-b+0-2.conf', 'larch-rescue.conf'], 'the bad entry keeps its DONE count');
});

t.test('systemd-bless-boot both ways: a blessed entry is good to larch; larch blesses the same way', async (t) => {
  const { dir, store, entries } = await esp(t);
  await store.init(new Map(encode(INITIAL_STATE)));
  await change(store, (s) => next(s, { type: 'upgrade-staged', slot: 'B', tries: 3 }));
  await store.firmwareBoot();
  t.same(await entries(), ['larch-a.conf', 'larch-b+2-1.conf', 'larch-rescue.conf']);
  // systemd-bless-boot good: renames the booted entry to its name without counters.
  await rename(join(dir, 'loader', 'entries', 'larch-b+2-1.conf'), join(dir, 'loader', 'entries', 'larch-b.conf'));
  const blessed = await stateOf(store);
  t.same(blessed.slots.B, { good: true, triesLeft: 0 }, 'larch reads B good');
  t.equal(blessed.lastGood, 'A', 'the rescue entry is still on A (boot-check catches up)');
  await change(store, (s) => next(s, { type: 'marked-good', slot: 'B' }));
  t.same(await entries(), ['larch-a.conf', 'larch-b.conf', 'larch-rescue.conf']);
  t.match(await readFile(join(dir, 'loader', 'entries', 'larch-rescue.conf'), 'utf8'), /larch\.slot=B larch\.rescue=1/, 'the rescue entry moved to B');
  // larch's mark-good strips the counter exactly as systemd-bless-boot good does.
  await change(store, (s) => next(s, { type: 'slot-prepared', slot: 'A' }));
  await change(store, (s) => next(s, { type: 'upgrade-staged', slot: 'A', tries: 3 }));
  await store.firmwareBoot();
  t.same(await entries(), ['larch-a+2-1.conf', 'larch-b.conf', 'larch-rescue.conf']);
  await change(store, (s) => next(s, { type: 'marked-good', slot: 'A' }));
  t.same(await entries(), ['larch-a.conf', 'larch-b.conf', 'larch-rescue.conf'], 'larch-a+2-1.conf -> larch-a.conf');
  // systemd-bless-boot bad: LEFT 0.
  await change(store, (s) => next(s, { type: 'upgrade-staged', slot: 'B', tries: 3 }));
  await rename(join(dir, 'loader', 'entries', 'larch-b+3.conf'), join(dir, 'loader', 'entries', 'larch-b+0.conf'));
  t.same((await stateOf(store)).slots.B, { good: false, triesLeft: 0 }, 'blessed bad: not bootable');
});

t.test('damage reads as the safe default and the next write replaces it', async (t) => {
  const { dir, store, entries } = await esp(t);
  await store.init(new Map(encode(INITIAL_STATE)));
  const e = join(dir, 'loader', 'entries');
  await writeFile(join(e, 'larch-a.conf.tmp'), 'half');
  await writeFile(join(e, '.tmp-1-abc'), 'half');
  await writeFile(join(e, 'larch-b+3.conf'), '');
  await writeFile(join(dir, 'loader', 'larch.env'), 'not a grubenv');
  const { problems } = await store.snapshot();
  t.equal(problems.length, 3, `named: ${problems.join('; ')}`);
  t.same((await stateOf(store)).slots.B, { good: false, triesLeft: 0 }, 'an empty entry is not bootable');
  await change(store, (s) => next(s, { type: 'marked-bad', slot: 'B' }));
  t.same((await entries()).length, 5, 'a change that changes nothing writes nothing');
  await store.write(await store.read());
  t.same(await entries(), ['larch-a.conf', 'larch-rescue.conf'], 'the next write removes what larch did not write (B had no readable entry)');
  await writeFile(join(dir, 'B', BODY_FILE), 'garbage');
  t.equal(await readSlotBody(dir, 'B'), null, 'a damaged body');
  await change(store, (s) => next(s, { type: 'upgrade-staged', slot: 'B', tries: 3 }));
  t.same(await entries(), ['larch-a.conf', 'larch-rescue.conf'], 'a slot with a damaged body is not made bootable');
  await rm(join(dir, 'B', BODY_FILE));
  t.same((await readSlotBody(dir, 'B'))?.options, 'larch.slot=B', 'no body: the kernel files, no arguments');
});

/**
 * BLS Type #1 entry names with boot counting and entry files (src/bootcount/bls.ts), against
 * systemd-boot's rules as measured under OVMF (docs/design/issue-19-real-boards.md §4.2:
 * larch-b+2.conf -> larch-b+1-1.conf -> larch-b+0-2.conf).
 */
import t from 'tap';
import { afterAttempt, entryName, formatEntry, parseEntry, parseEntryName } from '../../../src/bootcount/bls.ts';

t.test('entry names: counters as systemd-boot writes them', async (t) => {
  t.same(parseEntryName('larch-a.conf'), { id: 'A', left: null, done: 0 }, 'no counter: good');
  t.same(parseEntryName('larch-b+2.conf'), { id: 'B', left: 2, done: 0 }, 'LEFT only');
  t.same(parseEntryName('larch-b+0-2.conf'), { id: 'B', left: 0, done: 2 }, 'LEFT and DONE');
  t.same(parseEntryName('larch-rescue.conf'), { id: 'rescue', left: null, done: 0 }, 'the rescue entry');
  for (const bad of ['larch-rescue+1.conf', 'larch-A.conf', 'larch-c.conf', 'larch-a+01.conf', 'larch-a+1-.conf', 'larch-a+x.conf', 'debian.conf', 'larch-a.conf.tmp', 'larch-a+9999999.conf']) {
    t.equal(parseEntryName(bad), null, `${bad}: not one of larch's`);
  }
  // The sequence measured under OVMF (§4.2, power-ons 1 and 2), then the good rename of systemd-bless-boot.
  let e = parseEntryName('larch-b+2.conf')!;
  e = afterAttempt(e);
  t.equal(entryName(e), 'larch-b+1-1.conf', 'first attempt');
  e = afterAttempt(e);
  t.equal(entryName(e), 'larch-b+0-2.conf', 'second attempt');
  t.equal(entryName(afterAttempt(e)), 'larch-b+0-3.conf', 'an all-bad boot still counts DONE (measured, power-on 4)');
  t.equal(entryName({ ...e, left: null }), 'larch-b.conf', 'blessed good: no counter');
  t.equal(entryName(afterAttempt({ id: 'A', left: null, done: 0 })), 'larch-a.conf', 'a good entry is never renamed (power-on 3)');
  t.throws(() => entryName({ id: 'rescue', left: 1, done: 0 }), RangeError);
  for (const name of ['larch-a.conf', 'larch-a+3.conf', 'larch-b+0-12.conf', 'larch-rescue.conf']) t.equal(entryName(parseEntryName(name)!), name, `${name} round-trips`);
});

t.test('entry files: exactly what larch writes, read back; anything else is damaged', async (t) => {
  const entry = { title: 'larch B 2', sortKey: 'larch', version: '2', linux: '/B/vmlinuz', initrd: '/B/initrd.img', options: 'console=ttyS0 quiet larch.slot=B' };
  const text = formatEntry(entry);
  t.equal(text, 'title larch B 2\nsort-key larch\nversion 2\nlinux /B/vmlinuz\ninitrd /B/initrd.img\noptions console=ttyS0 quiet larch.slot=B\n', 'one key per line, in order');
  t.same(parseEntry(text), entry, 'read back');
  t.same(parseEntry('# larch\n\n' + text.split('\n').reverse().join('\n')), entry, 'comments, blank lines and another order are the specification\'s syntax');
  t.equal(parseEntry(text + 'options x\n'), null, 'a key twice');
  t.equal(parseEntry(text + 'efi /x.efi\n'), null, 'a key larch does not write');
  t.equal(parseEntry(text.replace('linux /B/vmlinuz\n', '')), null, 'no linux line');
  t.equal(parseEntry('title\n'), null, 'a key without a value');
  t.throws(() => formatEntry({ ...entry, options: 'a\nlinux /evil' }), RangeError, 'a line break in a value is refused');
  t.same(parseEntry(formatEntry({ ...entry, devicetree: '/B/board.dtb', initrd: undefined })), { title: 'larch B 2', sortKey: 'larch', version: '2', linux: '/B/vmlinuz', devicetree: '/B/board.dtb', options: entry.options }, 'devicetree, no initrd');
});

// ---- the ESP as state, the write plan and systemd-boot's choice --------------------------------

import { type BlsBody, type BlsOp, applyBlsOps, blsChoose, blsState, compareVersions, planBlsWrite, readBls, rescueSlot, slotBody } from '../../../src/bootcount/bls.ts';
import { type BootEvent, type BootState, type Slot, INITIAL_STATE, SLOTS, attemptBoot, decode, next } from '../../../src/bootcount/state.ts';

const BODIES: Record<Slot, BlsBody> = { A: slotBody('A', ['console=ttyS0'], () => true), B: slotBody('B', ['quiet'], () => true) };
const EMPTY = new Map<string, string>();

/** The files a state is written as, from an empty ESP. */
function filesOf(state: BootState, bodies: Record<Slot, BlsBody | null> = BODIES): Map<string, string> {
  return applyBlsOps(EMPTY, planBlsWrite(EMPTY, state, bodies));
}

/** What larch must read back: the state without the rescue flag (read from the names) and, with one slot entry, without the order of the other. */
function comparable(s: BootState, files: ReadonlyMap<string, string>) {
  const both = SLOTS.every((x) => [...files.keys()].some((n) => n.startsWith(`larch-${x.toLowerCase()}`)));
  return { slots: s.slots, lastGood: s.lastGood, first: both ? s.order[0] : null };
}

/** Every state with tries 0..3 (and B also without any entry). */
function allStates(): BootState[] {
  const slotStates = [{ good: true, triesLeft: 0 }, ...[0, 1, 2, 3].map((n) => ({ good: false, triesLeft: n }))];
  const out: BootState[] = [];
  for (const first of SLOTS) for (const a of slotStates) for (const b of slotStates) for (const lastGood of SLOTS) {
    out.push({ order: [first, first === 'A' ? 'B' : 'A'], slots: { A: a, B: b }, lastGood, rescue: false });
  }
  return out;
}

const EVENTS: BootEvent[] = SLOTS.flatMap((slot): BootEvent[] => [
  { type: 'marked-good', slot },
  { type: 'marked-bad', slot },
  { type: 'upgrade-staged', slot, tries: 3 },
  { type: 'slot-prepared', slot },
  { type: 'rollback-requested', slot },
  { type: 'upgrade-cancelled', slot },
  { type: 'slot-cleaned', slot },
  { type: 'fallback-recorded', booted: slot },
]);

t.test('readBls: names, versions and the rescue entry as BOOT_* variables', async (t) => {
  const files = filesOf(INITIAL_STATE);
  t.same([...files.keys()].sort(), ['larch-a.conf', 'larch-rescue.conf'], 'factory state: A good, the rescue entry on A, no entry for B');
  t.equal(files.get('larch-rescue.conf'), 'title larch rescue\nsort-key larch\nversion 0\nlinux /A/vmlinuz\ninitrd /A/initrd.img\ndevicetree /A/dtb\noptions console=ttyS0 larch.slot=A larch.rescue=1\n', 'the rescue entry boots A with its arguments');
  t.same(Object.fromEntries(readBls(files, new Map([['BOOT_RELEASES', '0 1 0'], ['BOOT_A_GOOD', '0']])).vars), { BOOT_RELEASES: '0 1 0', BOOT_A_GOOD: '1', BOOT_A_LEFT: '0', BOOT_B_GOOD: '0', BOOT_B_LEFT: '0', BOOT_ORDER: 'A B', BOOT_LKG: 'A', BOOT_RESCUE: '0' }, 'larch.env adds what names cannot say; never the named variables');
  const staged = filesOf(next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B', tries: 3 }));
  t.ok(staged.has('larch-b+3.conf'), 'a staged slot is counted');
  t.match(staged.get('larch-b+3.conf'), /^version 2$/m, 'and primary: the higher version');
  const { vars, problems } = readBls(new Map([...staged, ['larch-b.conf', staged.get('larch-b+3.conf')!], ['larch-a.conf.tmp', 'x']]));
  t.notOk(vars.has('BOOT_B_GOOD'), 'two entries for B: the safe default');
  t.equal(problems.length, 2, 'each oddity named (the tmp file, two entries)');
  t.equal(readBls(new Map([['larch-a.conf', 'garbage\n']])).vars.get('BOOT_A_GOOD'), '0', 'a damaged entry is not bootable');
  t.equal(readBls(new Map([['larch-a+0-3.conf', files.get('larch-a.conf')!]])).vars.get('BOOT_RESCUE'), '1', 'nothing bootable: rescue');
  t.equal(readBls(new Map([['larch-a+12.conf', files.get('larch-a.conf')!]])).vars.get('BOOT_A_LEFT'), '9', 'a count beyond 9 (not larch\'s) reads as 9');
  t.equal(rescueSlot(new Map()), null, 'no rescue entry: no marker');
});

t.test('planBlsWrite: every state round-trips, and every event from every state reads back as next()', async (t) => {
  let n = 0;
  for (const s of allStates()) {
    const files = filesOf(s);
    t.same(comparable(blsState(files), files), comparable(s, files), `written from nothing: ${JSON.stringify(s)}`);
    t.same(planBlsWrite(files, blsState(files), BODIES), [], 'writing what is there does nothing');
    for (const e of EVENTS) {
      const target = next(blsState(files), e);
      const after = applyBlsOps(files, planBlsWrite(files, target, BODIES));
      if (JSON.stringify(comparable(blsState(after), after)) !== JSON.stringify(comparable(target, after))) t.fail(`${JSON.stringify(s)} ${JSON.stringify(e)}`);
      n++;
    }
  }
  t.ok(n > 1000, `${n} transitions read back as next()`);
});

/**
 * A power cut after any operation: no slot bad or unconfirmed on both sides of the write is good,
 * a slot good on both sides keeps a good slot present, and what systemd-boot boots is a slot
 * bootable on one side (or the last known good one of either side, in rescue).
 */
t.test('planBlsWrite: a cut after any operation is safe', async (t) => {
  let cuts = 0;
  for (const s of allStates()) {
    const files = filesOf(s);
    const before = blsState(files);
    for (const e of EVENTS) {
      const target = next(before, e);
      const ops = planBlsWrite(files, target, BODIES);
      const after = blsState(applyBlsOps(files, ops));
      for (let k = 0; k <= ops.length; k++) {
        const mid = applyBlsOps(files, ops.slice(0, k));
        const m = blsState(mid);
        const at = `${JSON.stringify(s)} ${e.type} ${e.type === 'fallback-recorded' ? e.booted : 'slot' in e ? e.slot : ''}, cut after ${k}/${ops.length}`;
        for (const x of SLOTS) if (m.slots[x].good && !before.slots[x].good && !after.slots[x].good) t.fail(`${at}: ${x} good`);
        if (SLOTS.some((x) => before.slots[x].good && after.slots[x].good) && !SLOTS.some((x) => m.slots[x].good)) t.fail(`${at}: no good slot`);
        const c = blsChoose(mid);
        if (!c) t.fail(`${at}: nothing to boot`);
        else {
          const ok = [before, after].some((st) => st.slots[c.slot].good || st.slots[c.slot].triesLeft > 0 || (c.rescue && st.lastGood === c.slot));
          if (!ok) t.fail(`${at}: systemd-boot boots ${c.slot}${c.rescue ? ' (rescue)' : ''}`);
          if (c.rescue !== (m.rescue)) t.fail(`${at}: larch reads rescue ${m.rescue}, systemd-boot ${c.rescue}`);
        }
        cuts++;
      }
    }
  }
  t.ok(cuts > 2000, `${cuts} cuts checked`);
});

t.test('blsChoose: systemd-boot 252 as measured under OVMF (§4.2)', async (t) => {
  const entry = (slot: Slot, version: number, extra = '') => `title larch ${slot}\nsort-key larch\nversion ${version}\nlinux /${slot}/vmlinuz\noptions console=ttyS0 panic=1 larch.slot=${slot}${extra}\n`;
  let files = new Map([['larch-a.conf', entry('A', 1)], ['larch-b+2.conf', entry('B', 2)]]);
  const seen: string[] = [];
  for (let i = 0; i < 3; i++) {
    const c = blsChoose(files)!;
    seen.push(`${c.slot}:${[...c.files.keys()].sort().join(',')}:${c.wrote}`);
    files = c.files;
  }
  t.same(seen, ['B:larch-a.conf,larch-b+1-1.conf:true', 'B:larch-a.conf,larch-b+0-2.conf:true', 'A:larch-a.conf,larch-b+0-2.conf:false'], 'power-ons 1-3');
  files = new Map([['larch-a+0.conf', entry('A', 1)], ['larch-b+0-2.conf', entry('B', 2)]]);
  const allBad = blsChoose(files)!;
  t.same([allBad.slot, allBad.wrote, [...allBad.files.keys()].sort()], ['B', true, ['larch-a+0.conf', 'larch-b+0-3.conf']], 'power-on 4: all bad, the higher version, DONE counted');
  files.set('larch-rescue.conf', entry('A', 0, ' larch.rescue=1'));
  const rescue = blsChoose(files)!;
  t.same([rescue.slot, rescue.rescue, rescue.wrote], ['A', true, false], 'power-on 5: the uncounted rescue entry, no write');
  const missing = blsChoose(new Map([['larch-a.conf', entry('A', 1)], ['larch-b+3.conf', entry('B', 2)]]), { kernelExists: (p) => !p.startsWith('/B/') })!;
  t.same([missing.slot, missing.wrote, [...missing.files.keys()].sort()], ['A', false, ['larch-a.conf', 'larch-b+3.conf']], 'power-on 7: a missing kernel is passed over, no try spent');
  t.equal(blsChoose(new Map()), null, 'nothing to boot');
  t.equal(blsChoose(new Map([['larch-a.conf', entry('A', 3)], ['larch-b.conf', entry('B', 3)]]))!.slot, 'B', 'equal versions: id descending');
  t.ok(compareVersions('10', '9') > 0 && compareVersions('2', '10') < 0 && compareVersions('1', '1') === 0, 'versions by number');
});

t.test('blsChoose agrees with attemptBoot on every state larch writes', async (t) => {
  let n = 0;
  for (const s of allStates()) {
    const files = filesOf(s);
    const st = blsState(files);
    const c = blsChoose(files)!;
    const a = attemptBoot(st);
    t.equal(c.slot, a.slot, `${JSON.stringify(s)}: slot`);
    t.equal(c.rescue, a.rescue, 'rescue');
    if (!a.rescue) {
      t.equal(c.wrote, a.wrote, 'a try spent exactly when attemptBoot spends one');
      t.same(blsState(c.files).slots, a.state.slots, 'the rename is the try larch reads');
    } else t.equal(c.wrote, false, 'a rescue boot writes nothing (the other backends set BOOT_RESCUE once)');
    n++;
  }
  t.equal(n, allStates().length);
  t.same(decode(readBls(filesOf(INITIAL_STATE)).vars), INITIAL_STATE, 'the factory state');
});

t.test('the ops a staging write makes, in order', async (t) => {
  const files = filesOf(INITIAL_STATE);
  const prepared = next(blsState(files), { type: 'slot-prepared', slot: 'B' });
  t.same(planBlsWrite(files, prepared, BODIES), [], 'preparing a slot with no entry changes nothing');
  const bGood = filesOf(next(next(INITIAL_STATE, { type: 'upgrade-staged', slot: 'B' }), { type: 'marked-good', slot: 'B' }));
  t.same([...bGood.keys()].sort(), ['larch-a.conf', 'larch-b.conf', 'larch-rescue.conf']);
  const prep = planBlsWrite(bGood, next(blsState(bGood), { type: 'slot-prepared', slot: 'A' }), BODIES);
  t.same(prep.map((o: BlsOp) => o.op + ' ' + (o.op === 'rename' ? `${o.from}>${o.to}` : o.name)), ['rename larch-a.conf>larch-a+0.conf'], 'A is parked; B is already primary and the rescue entry already on B (marked good last)');
  t.match(bGood.get('larch-rescue.conf'), /larch\.slot=B larch\.rescue=1$/m);
  const aLkg = filesOf({ ...blsState(bGood), lastGood: 'A' });
  const prepA = planBlsWrite(aLkg, next(blsState(aLkg), { type: 'slot-prepared', slot: 'A' }), BODIES);
  t.same(prepA.map((o: BlsOp) => o.op + ' ' + (o.op === 'rename' ? `${o.from}>${o.to}` : o.name)), ['write larch-rescue.conf', 'rename larch-a.conf>larch-a+0.conf'], 'the rescue entry leaves A first (B is good on both sides), then A is parked');
  const afterPrep = applyBlsOps(bGood, prep);
  const stage = planBlsWrite(afterPrep, next(blsState(afterPrep), { type: 'upgrade-staged', slot: 'A', tries: 2 }), { ...BODIES, A: slotBody('A', ['new'], () => false) });
  t.same(stage.map((o: BlsOp) => o.op + ' ' + (o.op === 'rename' ? `${o.from}>${o.to}` : o.name)), ['remove larch-a+0.conf', 'write larch-a+2.conf'], 'staging: the parked entry removed, the new one written from the body');
  t.match((stage[1] as { text: string }).text, /^options new larch\.slot=A$/m, "the new deployment's arguments");
  t.match((stage[1] as { text: string }).text, /^version 3$/m, 'above B (version 2)');
});

// ---- board/boot-cases.json on systemd-boot (docs/design/issue-19-real-boards.md §4.4) ----------

import { readFileSync } from 'node:fs';
import { parkedVars } from '../../../src/bootcount/bls.ts';
import { decodeGate } from '../../../src/bootcount/release-gate.ts';
import { join } from 'node:path';
import { type BootCase, type TableBoot } from '../../../hil-tests/lib/boot-table.ts';
import { ROOT } from '../../helpers.ts';

/** A boot's expectation on systemd-boot: the row's, with its `systemd_boot` fields over it. */
function blsExpected(b: TableBoot): TableBoot {
  return { ...b, ...b.systemd_boot };
}

/**
 * The ESP a case starts from: its variables written by the store's plan from nothing (the
 * release floor in loader/larch.env); "missing", "corrupt" and "zero" (the env lost) are slot
 * entries that are absent, garbage or empty beside the rescue entry, which names the marker's slot
 * (the rescue entry is this backend's marker: it survives what happens to the slot entries).
 */
function caseFiles(c: BootCase): { files: Map<string, string>; env: Map<string, string> } {
  const lkg = c.lkg_marker ?? 'A';
  if (typeof c.env === 'string') {
    const withRescue = filesOf({ ...INITIAL_STATE, lastGood: lkg, slots: { A: { good: false, triesLeft: 0 }, B: { good: false, triesLeft: 0 } } });
    const files = new Map([...withRescue].filter(([n]) => n === 'larch-rescue.conf'));
    if (c.env === 'corrupt') for (const n of ['larch-a.conf', 'larch-b.conf']) files.set(n, '\u0000garbage\n');
    if (c.env === 'zero') for (const n of ['larch-a.conf', 'larch-b.conf']) files.set(n, '');
    return { files, env: new Map() };
  }
  const vars = new Map(Object.entries(c.env));
  const state = decode(vars, { lkgMarker: lkg });
  const gate = decodeGate(vars);
  const release = vars.get('BOOT_RELEASES');
  const env = new Map([...(release ? [['BOOT_RELEASES', release] as [string, string]] : []), ...parkedVars(state, gate)]);
  return { files: applyBlsOps(EMPTY, planBlsWrite(EMPTY, state, BODIES, gate)), env };
}

t.test('boot-cases.json through the systemd-boot mapping (blsChoose on the entries the store writes)', async (t) => {
  const table = JSON.parse(readFileSync(join(ROOT, 'board', 'boot-cases.json'), 'utf8')) as { cases: BootCase[] };
  let run = 0;
  for (const c of table.cases) {
    // Redundant copies and torn env writes are U-Boot's and GRUB's; this backend's cut writes are
    // the enumeration above (every prefix of every plan).
    if (c.only === 'uboot' || c.previous || c.torn) continue;
    let { files, env } = caseFiles(c);
    c.boots.forEach((raw, i) => {
      const expected = blsExpected(raw);
      const at = `${c.name} boot ${i + 1}`;
      if (raw.systemd_boot) t.ok(Object.entries(raw.systemd_boot).some(([k, v]) => JSON.stringify(v) !== JSON.stringify(raw[k as keyof TableBoot])), `${at}: its systemd_boot fields differ from the row's`);
      const choice = blsChoose(files);
      if (!choice) return t.fail(`${at}: nothing to boot`);
      t.equal(choice.slot, expected.slot, `${at}: slot`);
      t.equal(choice.rescue, expected.rescue, `${at}: rescue`);
      t.equal(choice.wrote, expected.wrote, `${at}: wrote`);
      const after = blsState(choice.files, env);
      if (expected.env) {
        const want = decode(new Map(Object.entries(expected.env)), { lkgMarker: c.lkg_marker });
        t.same(after.slots, want.slots, `${at}: the slots larch reads after the boot`);
      } else t.same(choice.files, files, `${at}: entries untouched`);
      files = choice.files;
    });
    run++;
  }
  t.ok(run >= 28, `${run} cases run`);
});

t.test('the release floor: a slot below it is parked (+0 on the ESP, its state in larch.env); every cut stays safe', async (t) => {
  const gates = [
    { floor: 5, releases: { A: 4, B: 5 } },
    { floor: 5, releases: { A: 5, B: 4 } },
    { floor: 5, releases: { A: 4, B: 3 } },
  ];
  let n = 0;
  for (const gate of gates) {
    for (const s of allStates()) {
      // From the state written with no floor, the floor raised (a write with the same state).
      const files = filesOf(s);
      const oldEnv = new Map<string, string>();
      const before = blsState(files, oldEnv);
      for (const e of [...EVENTS, null]) {
        const target = e ? next(before, e) : before;
        const ops = planBlsWrite(files, target, BODIES, gate);
        const env = parkedVars(target, gate);
        const after = applyBlsOps(files, ops);
        const at = `${JSON.stringify(gate.releases)} ${JSON.stringify(s)} ${e?.type ?? 'floor raised'}`;
        const read = blsState(after, env);
        if (JSON.stringify(comparable(read, after).slots) !== JSON.stringify(target.slots)) t.fail(`${at}: read back ${JSON.stringify(read.slots)}`);
        // systemd-boot never boots a slot below the floor unless it is the rescue entry.
        const c = blsChoose(after)!;
        if (!c.rescue && gate.releases[c.slot] < gate.floor) t.fail(`${at}: systemd-boot boots ${c.slot} below the floor`);
        // Cuts: larch.env (the parked states, old ones kept) is written first, then each op.
        const first = new Map([...oldEnv, ...env]);
        for (let k = 0; k <= ops.length; k++) {
          const mid = applyBlsOps(files, ops.slice(0, k));
          const m = blsState(mid, first);
          for (const x of SLOTS) if (m.slots[x].good && !before.slots[x].good && !target.slots[x].good) t.fail(`${at}, cut after ${k}: ${x} good`);
          if (!blsChoose(mid)) t.fail(`${at}, cut after ${k}: nothing to boot`);
        }
        n++;
      }
    }
  }
  t.ok(n > 1500, `${n} writes under a floor, every cut checked`);
  const parked = filesOf({ ...INITIAL_STATE, slots: { A: { good: true, triesLeft: 0 }, B: { good: false, triesLeft: 3 } }, order: ['B', 'A'] });
  const ops = planBlsWrite(parked, blsState(parked), BODIES, gates[1]);
  t.same(ops.map((o: BlsOp) => (o.op === 'rename' ? `${o.from}>${o.to}` : `${o.op} ${o.name}`)), ['larch-b+3.conf>larch-b+0.conf'], 'B below the floor: renamed +0');
  t.same(Object.fromEntries(parkedVars(blsState(parked), gates[1])), { BOOT_B_PARKED: 'unconfirmed:3' }, 'its tries kept in larch.env');
  const after = applyBlsOps(parked, ops);
  t.same(blsState(after, parkedVars(blsState(parked), gates[1])).slots.B, { good: false, triesLeft: 3 }, 'read back with its tries');
  const unparked = planBlsWrite(after, blsState(after, parkedVars(blsState(parked), gates[1])), BODIES);
  t.same(unparked.map((o: BlsOp) => (o.op === 'rename' ? `${o.from}>${o.to}` : `${o.op} ${o.name}`)), ['remove larch-b+0.conf', 'write larch-b+3.conf'], 'the floor lowered: made anew with its tries');
});

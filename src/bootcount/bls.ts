/**
 * Boot Loader Specification Type #1 entries as systemd-boot reads and renames them (issue 19,
 * docs/design/issue-19-real-boards.md §4): the entry file names with boot counting
 * (`NAME+LEFT[-DONE].conf`) and the entry files larch writes for its slots. Pure; the I/O (the
 * systemd-boot EnvStore) is bls-store.ts.
 *
 * systemd-boot (systemd-boot(7), 252) counts an entry named `NAME+LEFT` or `NAME+LEFT-DONE`: each
 * boot attempt renames it with LEFT one lower and DONE one higher; LEFT = 0 is "bad", no counter is
 * "good"; `systemd-bless-boot good` strips the counter. larch's entries are `larch-a`, `larch-b`
 * (the slots) and `larch-rescue` (uncounted, the last known good slot), in lower case because
 * systemd-boot case-folds entry ids.
 *
 * Beyond the codecs: readBls (the file names as larch's BOOT_* variables, so state.ts works
 * unchanged on this backend), planBlsWrite (a state change as an ordered list of file operations,
 * safe to cut after any of them) and blsChoose (what systemd-boot boots, and the rename it makes).
 * docs/boot.md "systemd-boot".
 */
import { type ReleaseGate, NO_GATE, belowFloor } from './release-gate.ts';
import { type BootState, type Slot, SLOTS, decode, other } from './state.ts';

export type BlsEntryId = 'A' | 'B' | 'rescue';

/** What an entry file's name says. */
export interface BlsEntryName {
  id: BlsEntryId;
  /** Tries left; null: no counter (a good entry, or the rescue entry). */
  left: number | null;
  /** Tries spent since the counter was set (0 when the name has none). */
  done: number;
}

/** The most tries larch writes, as the other backends (one digit). */
export const MAX_TRIES = 9;

const NAME = /^larch-(a|b|rescue)(?:\+(\d+)(?:-(\d+))?)?\.conf$/;

/** The entry of one of larch's names, or null for any other file (left alone, reported by status). */
export function parseEntryName(file: string): BlsEntryName | null {
  const m = NAME.exec(file);
  if (!m) return null;
  const id: BlsEntryId = m[1] === 'a' ? 'A' : m[1] === 'b' ? 'B' : 'rescue';
  // Counters with leading zeros or beyond what anything writes are not larch's: systemd-boot
  // itself only writes what it parsed plus or minus one.
  const num = (s: string | undefined) => (s === undefined ? null : /^(0|[1-9]\d{0,5})$/.test(s) ? Number(s) : NaN);
  const left = num(m[2]);
  const done = num(m[3]) ?? 0;
  if (Number.isNaN(left) || Number.isNaN(done)) return null;
  if (id === 'rescue' && left !== null) return null;
  return { id, left, done };
}

/** The file name of an entry; systemd-boot's own renames keep this shape. */
export function entryName(e: BlsEntryName): string {
  const base = `larch-${e.id === 'rescue' ? 'rescue' : e.id.toLowerCase()}`;
  if (e.left === null) return `${base}.conf`;
  if (e.id === 'rescue') throw new RangeError('the rescue entry has no counter');
  if (!Number.isInteger(e.left) || e.left < 0 || !Number.isInteger(e.done) || e.done < 0) throw new RangeError(`counter ${e.left}-${e.done} is not two counts`);
  return e.done === 0 ? `${base}+${e.left}.conf` : `${base}+${e.left}-${e.done}.conf`;
}

/** One boot attempt as systemd-boot counts it: LEFT one lower (not below 0), DONE one higher. */
export function afterAttempt(e: BlsEntryName): BlsEntryName {
  if (e.left === null) return e;
  return { ...e, left: Math.max(0, e.left - 1), done: e.done + 1 };
}

/** The keys larch writes in an entry, in this order. */
export interface BlsEntry {
  title: string;
  sortKey: string;
  version: string;
  linux: string;
  initrd?: string;
  devicetree?: string;
  options: string;
}

const KEYS: [keyof BlsEntry, string][] = [
  ['title', 'title'],
  ['sortKey', 'sort-key'],
  ['version', 'version'],
  ['linux', 'linux'],
  ['initrd', 'initrd'],
  ['devicetree', 'devicetree'],
  ['options', 'options'],
];

/** An entry file's text: one `key value` line per key, in a fixed order. @throws RangeError on a value with a line break */
export function formatEntry(e: BlsEntry): string {
  const lines: string[] = [];
  for (const [field, key] of KEYS) {
    const v = e[field];
    if (v === undefined) continue;
    if (/[\r\n]/.test(v) || v.trim() !== v || v === '') throw new RangeError(`BLS entry: ${key} '${v}' must be one non-empty line without outer spaces`);
    lines.push(`${key} ${v}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Reads an entry larch wrote: exactly the keys formatEntry writes, each once, in any order; blank
 * lines and `#` comments are allowed (the specification's syntax). Returns null for anything else
 * (a hand-edited or foreign entry: larch reads it as damaged, not as a different command line).
 */
export function parseEntry(text: string): BlsEntry | null {
  const out = parseKeys(text);
  if (!out || !out.title || !out.sortKey || !out.version || !out.linux || !out.options) return null;
  return out as BlsEntry;
}

function parseKeys(text: string): Partial<BlsEntry> | null {
  const byKey = new Map(KEYS.map(([field, key]) => [key, field]));
  const out: Partial<BlsEntry> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+)[ \t]+(.+)$/.exec(line);
    if (!m) return null;
    const field = byKey.get(m[1]);
    if (!field || out[field] !== undefined) return null;
    out[field] = m[2].trim();
  }
  return out;
}

// ---- a slot's entry body: S/boot/X/entry.conf -------------------------------------------------

/**
 * What a deployment decides about its slot's entry: the kernel files and the command line. Kept
 * in the slot's boot directory (S/boot/X/entry.conf, written with the kernel it names, as the
 * U-Boot and GRUB per-slot kernel-argument files are), which systemd-boot never reads; the store
 * makes the loader entry from it when the slot becomes bootable (staging), and from then on the
 * loader entry itself is what counts.
 */
export type BlsBody = Pick<BlsEntry, 'linux' | 'initrd' | 'devicetree' | 'options'>;

/** The file name of a slot's body under S/boot/X/. */
export const BODY_FILE = 'entry.conf';
/** The kernel and initramfs names a slot's boot directory holds (the GRUB board's). */
export const SLOT_KERNEL = 'vmlinuz';
export const SLOT_INITRD = 'initrd.img';
export const SLOT_DEVICETREE = 'dtb';

/** The command line of a slot: its arguments, then larch.slot=X (as U-Boot's X/larch.env). */
export function slotOptions(slot: Slot, kargs: readonly string[]): string {
  return [...kargs, `larch.slot=${slot}`].join(' ');
}

/** The body of slot X for `kargs`, naming the files its boot directory has (`has`). */
export function slotBody(slot: Slot, kargs: readonly string[], has: (file: string) => boolean): BlsBody {
  return {
    linux: `/${slot}/${SLOT_KERNEL}`,
    ...(has(SLOT_INITRD) ? { initrd: `/${slot}/${SLOT_INITRD}` } : {}),
    ...(has(SLOT_DEVICETREE) ? { devicetree: `/${slot}/${SLOT_DEVICETREE}` } : {}),
    options: slotOptions(slot, kargs),
  };
}

export function formatBody(b: BlsBody): string {
  return formatEntry({ title: 'x', sortKey: 'x', version: 'x', ...b }).split('\n').slice(3).join('\n');
}

/** A body file as formatBody writes it; null for anything else (a torn or hand-edited file). */
export function parseBody(text: string, slot: Slot): BlsBody | null {
  const k = parseKeys(text);
  if (!k || k.title !== undefined || k.sortKey !== undefined || k.version !== undefined || !k.linux || !k.options) return null;
  if (optionSlot(k.options) !== slot) return null;
  return { linux: k.linux, ...(k.initrd ? { initrd: k.initrd } : {}), ...(k.devicetree ? { devicetree: k.devicetree } : {}), options: k.options };
}

/** The command line an entry passes, without larch.slot=X (null when it does not end with it). */
export function entryKargs(options: string, slot: Slot): string | null {
  const suffix = `larch.slot=${slot}`;
  if (options === suffix) return '';
  return options.endsWith(` ${suffix}`) ? options.slice(0, -suffix.length - 1) : null;
}

/** larch.slot= of a command line (the last one, as the kernel's parameter parsing keeps). */
export function optionSlot(options: string): Slot | null {
  const all = [...options.matchAll(/(?:^|\s)larch\.slot=([AB])(?=\s|$)/g)];
  return all.length === 0 ? null : (all[all.length - 1][1] as Slot);
}

export const RESCUE_OPTION = 'larch.rescue=1';

// ---- the ESP as larch's variables --------------------------------------------------------------

/** loader/entries as larch sees it: the text of every file whose name starts with `larch-`. */
export type EntryFiles = ReadonlyMap<string, string>;

interface SlotEntry {
  name: string;
  counter: BlsEntryName;
  entry: BlsEntry;
  text: string;
}

interface EspView {
  slots: Record<Slot, SlotEntry | null>;
  /** Files of a slot that are not one readable entry (two files, garbage text): removed by the next write. */
  stale: Record<Slot, string[]>;
  rescue: { name: string; entry: BlsEntry | null; text: string } | null;
  /** Other larch-* files (leftover .tmp of a cut write, unknown names): removed by the next write. */
  junk: string[];
  problems: string[];
}

function view(files: EntryFiles): EspView {
  const byId: Record<BlsEntryId, string[]> = { A: [], B: [], rescue: [] };
  const junk: string[] = [];
  for (const name of [...files.keys()].sort()) {
    const n = parseEntryName(name);
    if (n) byId[n.id].push(name);
    else junk.push(name);
  }
  const problems: string[] = junk.map((n) => `loader/entries/${n} is not one of larch's entries (a cut write's leftover, or hand-made)`);
  const slots: Record<Slot, SlotEntry | null> = { A: null, B: null };
  const stale: Record<Slot, string[]> = { A: [], B: [] };
  for (const slot of SLOTS) {
    const names = byId[slot];
    if (names.length > 1) {
      problems.push(`slot ${slot} has ${names.length} entries (${names.join(', ')}): read as the safe default`);
      stale[slot] = names;
      continue;
    }
    if (names.length === 0) continue;
    const text = files.get(names[0])!;
    const entry = parseEntry(text);
    if (!entry || optionSlot(entry.options) !== slot) {
      problems.push(`loader/entries/${names[0]} is not an entry larch wrote for slot ${slot}: the slot is not bootable`);
      stale[slot] = names;
      continue;
    }
    slots[slot] = { name: names[0], counter: parseEntryName(names[0])!, entry, text };
  }
  let rescue: EspView['rescue'] = null;
  if (byId.rescue.length === 1) {
    const text = files.get(byId.rescue[0])!;
    rescue = { name: byId.rescue[0], entry: parseEntry(text), text };
    if (!rescue.entry || !optionSlot(rescue.entry.options)) problems.push('loader/entries/larch-rescue.conf is damaged: the last known good slot is read from the default');
  }
  return { slots, stale, rescue, junk, problems };
}

/** Versions larch writes: 0 (the rescue entry) and positive integers without leading zeros. */
function versionNumber(v: string | undefined): number | null {
  return v !== undefined && /^(0|[1-9]\d{0,8})$/.test(v) ? Number(v) : null;
}

/**
 * A slot below the release floor is parked (docs/boot.md "systemd-boot", the release floor):
 * systemd-boot has no floor check, so larch names its entry `+0` and keeps its own state in
 * loader/larch.env as `BOOT_X_PARKED=good|unconfirmed:N` (N 0…9). readBls restores it while the
 * entry is `+0`; a write whose floor lets the slot boot again makes its entry anew.
 */
const PARKED_RE = /^BOOT_[AB]_PARKED$/;

function parseParked(v: string | undefined): { good: boolean; triesLeft: number } | null {
  if (v === 'good') return { good: true, triesLeft: 0 };
  const m = /^unconfirmed:([0-9])$/.exec(v ?? '');
  return m ? { good: false, triesLeft: Number(m[1]) } : null;
}

/** The BOOT_X_PARKED variables for a state under a floor (none for a slot not parked). */
export function parkedVars(target: BootState, gate: ReleaseGate): Map<string, string> {
  const out = new Map<string, string>();
  for (const slot of SLOTS) {
    const t = target.slots[slot];
    if (!belowFloor(gate, slot) || (!t.good && t.triesLeft === 0)) continue;
    out.set(`BOOT_${slot}_PARKED`, t.good ? 'good' : `unconfirmed:${Math.min(t.triesLeft, MAX_TRIES)}`);
  }
  return out;
}

export function isParkedVariable(name: string): boolean {
  return PARKED_RE.test(name);
}

/** The variables larch does not keep in names (BOOT_RELEASES ...) live in loader/larch.env. */
export const NAMED_VARIABLES = ['BOOT_ORDER', 'BOOT_A_GOOD', 'BOOT_A_LEFT', 'BOOT_B_GOOD', 'BOOT_B_LEFT', 'BOOT_LKG', 'BOOT_RESCUE'];

/**
 * The ESP as the BOOT_* variables the other backends store (docs/boot.md "systemd-boot"): a
 * slot's GOOD/LEFT from its entry's name (no entry: not bootable), ORDER from the versions
 * (higher first), LKG from the rescue entry's larch.slot=, RESCUE set exactly when neither slot
 * is bootable (systemd-boot then boots the rescue entry), the rest from loader/larch.env.
 * Anything larch did not write is left out of the map (decode() takes the safe default, as for a
 * garbage env) and named in `problems`.
 */
export function readBls(files: EntryFiles, larchEnv: ReadonlyMap<string, string> = new Map()): { vars: Map<string, string>; problems: string[] } {
  const v = view(files);
  const vars = new Map<string, string>();
  for (const [k, val] of larchEnv) if (!NAMED_VARIABLES.includes(k) && !PARKED_RE.test(k)) vars.set(k, val);
  for (const slot of SLOTS) {
    const e = v.slots[slot];
    // Two entries for one slot: the safe default (nothing set). One damaged entry: not bootable.
    if (v.stale[slot].length > 1) continue;
    // A slot parked below the release floor: `+0` on the ESP, its own state in larch.env.
    const parked = e && e.counter.left === 0 ? parseParked(larchEnv.get(`BOOT_${slot}_PARKED`)) : null;
    if (parked) {
      vars.set(`BOOT_${slot}_GOOD`, parked.good ? '1' : '0');
      vars.set(`BOOT_${slot}_LEFT`, String(parked.triesLeft));
      continue;
    }
    const left = e === null ? 0 : e.counter.left;
    if (left !== null && left > MAX_TRIES) v.problems.push(`${e!.name}: ${left} tries, more than larch writes (${MAX_TRIES}): read as ${MAX_TRIES}`);
    vars.set(`BOOT_${slot}_GOOD`, left === null ? '1' : '0');
    vars.set(`BOOT_${slot}_LEFT`, left === null ? '0' : String(Math.min(left, MAX_TRIES)));
  }
  const [a, b] = [v.slots.A, v.slots.B];
  const va = versionNumber(a?.entry.version);
  const vb = versionNumber(b?.entry.version);
  if (a && b) {
    if (va !== null && vb !== null && va !== vb) vars.set('BOOT_ORDER', va > vb ? 'A B' : 'B A');
    else v.problems.push(`the versions of ${a.name} and ${b.name} ('${a.entry.version}', '${b.entry.version}') do not order them: read as the safe default`);
  } else if (a || b) {
    vars.set('BOOT_ORDER', a ? 'A B' : 'B A');
  }
  const lkg = v.rescue?.entry ? optionSlot(v.rescue.entry.options) : null;
  if (lkg) vars.set('BOOT_LKG', lkg);
  // What systemd-boot sees: the names (a parked slot is `+0` there, whatever larch.env keeps).
  const bootable = (s: Slot) => (v.slots[s] ? v.slots[s]!.counter.left !== 0 : vars.get(`BOOT_${s}_GOOD`) === '1');
  // A slot read as the safe default (stale) may be bootable: then it is not rescue.
  const unknown = SLOTS.some((s) => !vars.has(`BOOT_${s}_GOOD`));
  vars.set('BOOT_RESCUE', !unknown && !SLOTS.some(bootable) ? '1' : '0');
  return { vars, problems: v.problems };
}

/** The slot the rescue entry boots (the LKG marker of this backend), or null without a readable one. */
export function rescueSlot(files: EntryFiles): Slot | null {
  const r = view(files).rescue;
  return r?.entry ? optionSlot(r.entry.options) : null;
}

// ---- writing a state: the ordered file operations ----------------------------------------------

/**
 * One step of a write, durable before the next starts (BlsEnvStore): `write` is a temp file
 * (NAME.tmp), fsync, rename over NAME, fsync of the file and the directory (vfat keeps a rename
 * only once the partition is synced: hil-tests/README.md "Findings").
 */
export type BlsOp = { op: 'rename'; from: string; to: string } | { op: 'write'; name: string; text: string } | { op: 'remove'; name: string };

/** How bootable an entry name is: good above any count, no entry below +0. */
function rank(counter: BlsEntryName | null): number {
  return counter === null ? -1 : counter.left === null ? MAX_TRIES + 1 : counter.left;
}

/**
 * The file operations that make `files` hold `target`, in an order that is safe to cut after any
 * of them (test/unit/bootcount/bls.test.ts enumerates every cut): no cut makes a slot that is bad
 * or unconfirmed on both sides good, or leaves no good slot where one was good on both sides.
 * 1. leftovers of a cut write (`*.tmp`, unknown larch-* names) go;
 * 2. the rescue entry moves first when its new slot is good before and after (as the LKG marker
 *    of the other backends, changeBootState);
 * 3. slots losing bootability are renamed (good -> +n, +n -> +0): systemd-boot keeps DONE;
 * 4. a slot becoming bootable from nothing (staging: `+0` or no entry) is made new from its body
 *    (`bodies`, S/boot/X/entry.conf): the old entry removed, then the new one written;
 * 5. slots gaining bootability by name only are renamed (mark-good strips the counter, as
 *    `systemd-bless-boot good` does);
 * 6. versions (the order) are rewritten: only ever one entry, the one that becomes primary,
 *    gets the other's version + 1, so there is never a moment with equal versions;
 * 7. the rescue entry moves (when not done in 2).
 * A slot whose body is null cannot be made new: it is left without an entry (not bootable).
 */
export function planBlsWrite(files: EntryFiles, target: BootState, bodies: Record<Slot, BlsBody | null>, gate: ReleaseGate = NO_GATE): BlsOp[] {
  const v = view(files);
  const ops: BlsOp[] = v.junk.map((name) => ({ op: 'remove', name }));
  // What each slot's entry becomes: name and content (before the version).
  type Want = { counter: BlsEntryName; entry: BlsEntry; fresh: boolean } | null;
  const want: Record<Slot, Want> = { A: null, B: null };
  for (const slot of SLOTS) {
    const cur = v.slots[slot];
    const t = target.slots[slot];
    const id = slot;
    if ((t.good || t.triesLeft > 0) && belowFloor(gate, slot)) {
      // Parked: `+0` so systemd-boot passes over it; its state goes to larch.env (parkedVars).
      if (cur) want[slot] = { counter: { id, left: 0, done: cur.counter.left === null ? 0 : cur.counter.done }, entry: cur.entry, fresh: false };
      else if (bodies[slot]) want[slot] = { counter: { id, left: 0, done: 0 }, entry: { title: `larch ${slot}`, sortKey: 'larch', version: '1', ...bodies[slot]! }, fresh: true };
    } else if (t.good || t.triesLeft > 0) {
      const counter: BlsEntryName = t.good ? { id, left: null, done: 0 } : cur && cur.counter.left === t.triesLeft ? cur.counter : { id, left: t.triesLeft, done: 0 };
      if (cur && isEntryBootable(cur.counter)) {
        want[slot] = { counter, entry: cur.entry, fresh: false };
      } else {
        const body = bodies[slot];
        want[slot] = body ? { counter, entry: { title: `larch ${slot}`, sortKey: 'larch', version: '1', ...body }, fresh: true } : null;
      }
    } else if (cur) {
      want[slot] = { counter: { id, left: 0, done: cur.counter.left === null ? 0 : cur.counter.done }, entry: cur.entry, fresh: false };
    }
  }
  // Versions: the primary above the other; unchanged where already so.
  const primary = target.order[0];
  const ver = (s: Slot) => (want[s] && !want[s]!.fresh ? versionNumber(v.slots[s]?.entry.version) : null);
  const version: Record<Slot, number> = { A: ver('A') ?? 1, B: ver('B') ?? 1 };
  if (want.A && want.B) {
    const sec = other(primary);
    if (ver(sec) === null) version[sec] = ver(primary) !== null && ver(primary)! > 1 ? ver(primary)! - 1 : 1;
    if (version[primary] <= version[sec]) version[primary] = version[sec] + 1;
  }
  const final: Record<Slot, { name: string; text: string } | null> = { A: null, B: null };
  for (const slot of SLOTS) {
    const w = want[slot];
    if (w) final[slot] = { name: entryName(w.counter), text: formatEntry({ ...w.entry, version: String(version[slot]) }) };
  }
  // The rescue entry: the last known good slot's entry, uncounted, version 0, larch.rescue=1.
  const lkg = target.lastGood;
  const source = final[lkg] ? parseEntry(final[lkg]!.text) : bodies[lkg] ? { title: '', sortKey: 'larch', version: '0', ...bodies[lkg]! } : null;
  const rescueText = source ? formatEntry({ ...source, title: 'larch rescue', version: '0', options: `${source.options} ${RESCUE_OPTION}` }) : null;
  const rescueOps: BlsOp[] = [];
  if (rescueText !== null && v.rescue?.text !== rescueText) rescueOps.push({ op: 'write', name: entryName({ id: 'rescue', left: null, done: 0 }), text: rescueText });
  const curGood = (s: Slot) => v.slots[s]?.counter.left === null;
  const rescueFirst = curGood(lkg) && target.slots[lkg].good;
  if (rescueFirst) ops.push(...rescueOps);

  const demote: BlsOp[] = [];
  const fresh: BlsOp[] = [];
  const promote: BlsOp[] = [];
  const rewrite: BlsOp[] = [];
  for (const slot of SLOTS) {
    const cur = v.slots[slot];
    const w = want[slot];
    const f = final[slot];
    if (!w || w.fresh) {
      for (const name of [...v.stale[slot], ...(cur ? [cur.name] : [])]) fresh.push({ op: 'remove', name });
      if (f) fresh.push({ op: 'write', name: f.name, text: f.text });
      continue;
    }
    for (const name of v.stale[slot]) fresh.push({ op: 'remove', name });
    const c = cur!;
    if (c.name !== f!.name) (rank(w.counter) < rank(c.counter) ? demote : promote).push({ op: 'rename', from: c.name, to: f!.name });
    if (c.text !== f!.text) rewrite.push({ op: 'write', name: f!.name, text: f!.text });
  }
  ops.push(...demote, ...fresh, ...promote, ...rewrite);
  if (!rescueFirst) ops.push(...rescueOps);
  return ops;
}

function isEntryBootable(c: BlsEntryName): boolean {
  return c.left === null || c.left > 0;
}

/** `files` after `ops` (what the store does on the disk, in memory). */
export function applyBlsOps(files: EntryFiles, ops: readonly BlsOp[]): Map<string, string> {
  const out = new Map(files);
  for (const op of ops) {
    if (op.op === 'remove') out.delete(op.name);
    else if (op.op === 'write') out.set(op.name, op.text);
    else {
      const text = out.get(op.from);
      if (text === undefined) throw new Error(`rename of a missing entry ${op.from}`);
      out.delete(op.from);
      out.set(op.to, text);
    }
  }
  return out;
}

// ---- systemd-boot's choice ---------------------------------------------------------------------

export interface BlsChoice {
  /** The entry booted (its name before the boot's rename). */
  readonly name: string;
  readonly slot: Slot;
  /** The rescue entry was booted (no slot entry was good or had tries). */
  readonly rescue: boolean;
  /** systemd-boot renamed the entry (a try counted). */
  readonly wrote: boolean;
  /** loader/entries after the boot. */
  readonly files: Map<string, string>;
  /** The kernel command line: the entry's options. */
  readonly cmdline: string;
}

/** Version order as systemd-boot's strverscmp_improved for what larch writes: digit runs by number. */
export function compareVersions(a: string, b: string): number {
  const parts = (s: string) => s.match(/\d+|\D+/g) ?? [];
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const [x, y] = [pa[i], pb[i]];
    const c = /^\d/.test(x) && /^\d/.test(y) ? Number(x) - Number(y) : x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return Math.sign(c);
  }
  return Math.sign(pa.length - pb.length);
}

/**
 * What systemd-boot 252 boots from loader/entries (docs/design/issue-19-real-boards.md §4.1, and
 * §4.2 as measured under OVMF): entries it cannot read and entries whose kernel is missing
 * (`kernelExists`) are passed over with no try spent; the rest sorted: LEFT = 0 last, then version
 * descending, then id descending, then more tries first; the first one boots, and a counted one
 * is renamed one try down (DONE counted even at LEFT 0: an all-bad boot without a rescue entry
 * writes). Only larch's entries (`files`) are considered. Null: nothing to boot.
 */
export function blsChoose(files: EntryFiles, options: { kernelExists?: (path: string) => boolean } = {}): BlsChoice | null {
  const exists = options.kernelExists ?? (() => true);
  const cands: { name: string; counter: BlsEntryName; entry: BlsEntry; id: string }[] = [];
  for (const [name, text] of files) {
    const counter = parseEntryName(name);
    const entry = counter ? parseEntry(text) : null;
    if (!counter || !entry || !exists(entry.linux)) continue;
    cands.push({ name, counter, entry, id: name.replace(/(\+\d+(-\d+)?)?\.conf$/, '') });
  }
  const bad = (c: BlsEntryName) => c.left === 0;
  cands.sort((x, y) => {
    if (bad(x.counter) !== bad(y.counter)) return bad(x.counter) ? 1 : -1;
    const v = compareVersions(y.entry.version, x.entry.version);
    if (v !== 0) return v;
    if (x.id !== y.id) return x.id < y.id ? 1 : -1;
    return (y.counter.left ?? 0) - (x.counter.left ?? 0);
  });
  const first = cands[0];
  if (!first) return null;
  const slot = optionSlot(first.entry.options);
  if (!slot) return null;
  const out = new Map(files);
  let wrote = false;
  if (first.counter.left !== null) {
    out.delete(first.name);
    out.set(entryName(afterAttempt(first.counter)), files.get(first.name)!);
    wrote = true;
  }
  const rescue = first.entry.options.split(/\s+/).includes(RESCUE_OPTION);
  return { name: first.name, slot, rescue, wrote, files: out, cmdline: first.entry.options };
}

/** The boot state the files hold, as larch reads it (readBls, then decode with the rescue entry as the marker). */
export function blsState(files: EntryFiles, larchEnv?: ReadonlyMap<string, string>): BootState {
  return decode(readBls(files, larchEnv).vars, { lkgMarker: rescueSlot(files) ?? 'A' });
}


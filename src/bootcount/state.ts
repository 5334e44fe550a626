/**
 * The A/B boot state: which slot boots, how many tries an unconfirmed slot has left, and what the
 * bootloader scripts (board/uboot/boot.cmd, board/grub/grub.cfg) do with it. Pure: variable maps in
 * and out; reading and writing the env is the caller's job (an EnvStore). See docs/boot.md.
 *
 * Variables (all owned by larch; every other variable in the env is left alone):
 *   BOOT_ORDER   "A B" | "B A"   the primary slot first. Anything else: the last-known-good slot first.
 *   BOOT_A_GOOD  "1" | "0"       slot A is confirmed (marked good after its health checks). A good slot
 *   BOOT_B_GOOD                  boots without spending a try, so power cuts never wear it out (rauc#490).
 *                                Anything else: good only if the slot is BOOT_LKG (safe default).
 *   BOOT_A_LEFT  "0".."9"        tries left for an unconfirmed slot; the bootloader spends one per boot.
 *   BOOT_B_LEFT                  "0" once a slot is good. Anything else ("10", "03", "x"): 0. Nine is the
 *                                cap so that GRUB, which cannot count, decrements with an equality chain.
 *   BOOT_LKG     "A" | "B"       last known good: the slot most recently marked good (or rolled back to).
 *                                Booted anyway when no slot is bootable. Anything else (and an env with
 *                                no valid copy): the LKG marker's slot, B when the file larch-lkg-B sits
 *                                beside the env, else A. The marker is written only after an env write
 *                                (markerSlot(); src/agent/boot.ts), never by a torn env write.
 *   BOOT_RESCUE  "1" | "0"       set by the bootloader when no slot was bootable and it booted BOOT_LKG
 *                                anyway; the agent reports it and stops rebooting (greenboot#26).
 *                                Read as set only while no slot is bootable, so a stale "1" is harmless.
 *
 * The bootloader, every boot (bootloaderChoose; the scripts do exactly this):
 *   decode the variables as above; then for each slot in BOOT_ORDER: a good slot boots with no env
 *   write; an unconfirmed slot with tries left spends one (one env write of all variables) and boots;
 *   otherwise the next slot. A slot whose release is below the release floor (release-gate.ts:
 *   BOOT_RELEASES) is passed over as not bootable, with no try spent. When neither is bootable it boots BOOT_LKG and sets BOOT_RESCUE=1 (one
 *   write, the first time only). It never resets counters: a board with two bad slots settles on
 *   its last known good slot instead of rebooting forever.
 */

import { type ReleaseGate, belowFloor, decodeGate, dropUnreadable } from './release-gate.ts';

export type Slot = 'A' | 'B';
export const SLOTS: readonly Slot[] = ['A', 'B'];
/** The most tries a slot can be given: one decimal digit, so GRUB's equality chain stays short. */
export const MAX_TRIES = 9;
/** Tries an upgrade gets unless told otherwise (greenboot's GREENBOOT_MAX_BOOT_ATTEMPTS). */
export const DEFAULT_TRIES = 3;

/** Every variable larch owns, in the order encode() writes them. */
export const BOOT_VARIABLES = ['BOOT_ORDER', 'BOOT_A_GOOD', 'BOOT_A_LEFT', 'BOOT_B_GOOD', 'BOOT_B_LEFT', 'BOOT_LKG', 'BOOT_RESCUE'] as const;
export type BootVariable = (typeof BOOT_VARIABLES)[number];

export interface SlotState {
  /** Confirmed by health checks: boots without spending tries. */
  readonly good: boolean;
  /** Tries left while unconfirmed, 0..MAX_TRIES; always 0 for a good slot. */
  readonly triesLeft: number;
}

/** The decoded, normalised state. Invariants: good ⇒ triesLeft 0; rescue ⇒ no slot is bootable. */
export interface BootState {
  readonly order: readonly [Slot, Slot];
  readonly slots: Readonly<Record<Slot, SlotState>>;
  readonly lastGood: Slot;
  readonly rescue: boolean;
}

export type BootEvent =
  /** What the bootloader does at power-on (use attemptBoot() to learn the slot). */
  | { readonly type: 'boot-attempt' }
  /** Health checks passed on `slot` (larch mark-good / boot-check). */
  | { readonly type: 'marked-good'; readonly slot: Slot }
  /** `slot` must not boot again until a new deployment is written to it (larch mark-bad). */
  | { readonly type: 'marked-bad'; readonly slot: Slot }
  /** A new deployment was written to `slot`: it becomes primary with `tries` tries. */
  | { readonly type: 'upgrade-staged'; readonly slot: Slot; readonly tries?: number }
  /** `slot` is about to be rewritten (upgrade, deploy): it must not boot, the other slot goes first. */
  | { readonly type: 'slot-prepared'; readonly slot: Slot }
  /** Make `slot` primary and last known good, if it is good (larch rollback); otherwise nothing changes. */
  | { readonly type: 'rollback-requested'; readonly slot: Slot }
  /** The staged, unconfirmed update in `slot` is cancelled (larch rollback): the other slot goes first. */
  | { readonly type: 'upgrade-cancelled'; readonly slot: Slot }
  /** The deployment in `slot` is about to be removed (larch cleanup --rollback): it must not boot. */
  | { readonly type: 'slot-cleaned'; readonly slot: Slot }
  /** The agent saw the bootloader fall back to `booted`: make it primary so it is reported once. */
  | { readonly type: 'fallback-recorded'; readonly booted: Slot };

export const other = (slot: Slot): Slot => (slot === 'A' ? 'B' : 'A');

/** A slot the bootloader will boot in normal mode: good, or unconfirmed with tries left. */
export function isBootable(state: BootState, slot: Slot): boolean {
  const s = state.slots[slot];
  return s.good || s.triesLeft > 0;
}

// ---- decode / encode ----------------------------------------------------------------------------

type Vars = ReadonlyMap<string, string>;

const DIGITS = ['1', '2', '3', '4', '5', '6', '7', '8', '9'];

/** Tries as the scripts read them: exactly one of "1".."9", anything else 0 (GRUB compares strings). */
function decodeTries(value: string | undefined): number {
  return value !== undefined && DIGITS.includes(value) ? Number(value) : 0;
}

export interface DecodeOptions {
  /**
   * The slot the LKG marker names (larch-lkg-B beside the env: B; none: A). It is the default of
   * BOOT_LKG, so an env that lost its copies (torn, zeroed, missing) boots the slot last known
   * good with no write instead of A, which may hold a staged, unconfirmed update.
   */
  lkgMarker?: Slot;
}

/**
 * Reads the boot state from the bootloader variables. Never throws: missing or garbage values take
 * the documented safe default (the header of this file), the same one the scripts take, so the
 * agent and the bootloader always agree. Use findProblems() to report what was wrong.
 * @example decode(new Map([['BOOT_ORDER', 'B A'], ['BOOT_B_LEFT', '2']])).order // ['B', 'A']
 */
export function decode(vars: Vars, options: DecodeOptions = {}): BootState {
  const lkg = vars.get('BOOT_LKG');
  const lastGood: Slot = lkg === 'A' || lkg === 'B' ? lkg : (options.lkgMarker ?? 'A');
  const orderText = vars.get('BOOT_ORDER');
  const order: [Slot, Slot] = orderText === 'A B' ? ['A', 'B'] : orderText === 'B A' ? ['B', 'A'] : [lastGood, other(lastGood)];
  const slot = (name: Slot): SlotState => {
    const flag = vars.get(`BOOT_${name}_GOOD`);
    const good = flag === '1' ? true : flag === '0' ? false : name === lastGood;
    return { good, triesLeft: good ? 0 : decodeTries(vars.get(`BOOT_${name}_LEFT`)) };
  };
  return normalise({ order, slots: { A: slot('A'), B: slot('B') }, lastGood, rescue: vars.get('BOOT_RESCUE') === '1' });
}

/** The safe default: what an empty env decodes to (factory state: A good, B empty). */
export const INITIAL_STATE: BootState = decode(new Map());

/**
 * The variables larch owns, all of them, for one atomic write. The caller merges them into the
 * env it read (mergeInto), so that variables larch does not own survive.
 * @throws RangeError when triesLeft is outside 0..MAX_TRIES (a caller mistake)
 */
export function encode(state: BootState): Map<BootVariable, string> {
  const s = normalise(state);
  for (const name of SLOTS) {
    const tries = s.slots[name].triesLeft;
    if (!Number.isInteger(tries) || tries < 0 || tries > MAX_TRIES) throw new RangeError(`slot ${name}: triesLeft must be 0..${MAX_TRIES}, got ${tries}`);
  }
  return new Map<BootVariable, string>([
    ['BOOT_ORDER', s.order.join(' ')],
    ['BOOT_A_GOOD', s.slots.A.good ? '1' : '0'],
    ['BOOT_A_LEFT', String(s.slots.A.triesLeft)],
    ['BOOT_B_GOOD', s.slots.B.good ? '1' : '0'],
    ['BOOT_B_LEFT', String(s.slots.B.triesLeft)],
    ['BOOT_LKG', s.lastGood],
    ['BOOT_RESCUE', s.rescue ? '1' : '0'],
  ]);
}

/** `vars` with larch's variables replaced by the encoded state; every other variable kept as is. */
export function mergeInto(vars: Vars, state: BootState): Map<string, string> {
  const out = new Map(vars);
  for (const [name, value] of encode(state)) out.set(name, value);
  return out;
}

export interface EnvProblem {
  readonly variable: BootVariable;
  readonly value: string | null;
  readonly problem: 'missing' | 'invalid';
}

/** Lists larch variables that are missing or hold a value the scripts do not understand. */
export function findProblems(vars: Vars): EnvProblem[] {
  const valid: Record<BootVariable, readonly string[]> = {
    BOOT_ORDER: ['A B', 'B A'],
    BOOT_A_GOOD: ['0', '1'],
    BOOT_B_GOOD: ['0', '1'],
    BOOT_A_LEFT: ['0', ...DIGITS],
    BOOT_B_LEFT: ['0', ...DIGITS],
    BOOT_LKG: ['A', 'B'],
    BOOT_RESCUE: ['0', '1'],
  };
  const problems: EnvProblem[] = [];
  for (const variable of BOOT_VARIABLES) {
    const value = vars.get(variable);
    if (value === undefined) problems.push({ variable, value: null, problem: 'missing' });
    else if (!valid[variable].includes(value)) problems.push({ variable, value, problem: 'invalid' });
  }
  return problems;
}

// ---- the bootloader's step ----------------------------------------------------------------------

export interface BootAttempt {
  /** The slot the bootloader boots. Never none: with no bootable slot it boots lastGood (rescue). */
  readonly slot: Slot;
  /** True when no slot was bootable and lastGood was booted anyway. */
  readonly rescue: boolean;
  /** Whether the bootloader writes the env on this boot (a try spent, or rescue first set). */
  readonly wrote: boolean;
  readonly state: BootState;
}

/**
 * The bootloader's choice on a decoded state (what bootloaderChoose does after decode). A slot
 * below the release floor of `gate` is passed over, its state untouched.
 */
export function attemptBoot(state: BootState, gate?: ReleaseGate): BootAttempt {
  const s = normalise(state);
  for (const slot of s.order) {
    if (gate && belowFloor(gate, slot)) continue;
    const st = s.slots[slot];
    if (st.good) return { slot, rescue: false, wrote: false, state: s };
    if (st.triesLeft > 0) {
      const spent = withSlot(s, slot, { good: false, triesLeft: st.triesLeft - 1 });
      return { slot, rescue: false, wrote: true, state: { ...spent, rescue: false } };
    }
  }
  // Nothing bootable: the last known good slot, flagged, and never a counter reset (greenboot#26).
  return { slot: s.lastGood, rescue: true, wrote: !s.rescue, state: { ...s, rescue: true } };
}

export interface BootloaderChoice {
  readonly slot: Slot;
  readonly rescue: boolean;
  /** True when the script saves the env on this boot. */
  readonly wrote: boolean;
  /** The env after the step: `vars` unchanged, or with all larch variables rewritten (mergeInto). */
  readonly newVars: Map<string, string>;
}

/**
 * Exactly what board/uboot/boot.cmd and board/grub/grub.cfg do with the variables they load; the
 * in-process stand-in for a reboot (`larch sim-boot`), checked against the real scripts with
 * board/boot-cases.json.
 * `lkgMarker`: the slot the LKG marker file names (decode()).
 * `saveFails`: the env write failed. The scripts then boot lastGood without spending a try, because
 * a try that was not recorded would let a bad slot boot forever.
 */
export function bootloaderChoose(vars: Vars, options: { saveFails?: boolean; lkgMarker?: Slot } = {}): BootloaderChoice {
  const attempt = attemptBoot(decode(vars, options), decodeGate(vars));
  // Rescue behind a floor can come while a slot is good or has tries (all below the floor), which
  // decode() does not count as rescue: the scripts look at BOOT_RESCUE itself and set it, once.
  const wrote = attempt.rescue ? vars.get('BOOT_RESCUE') !== '1' : attempt.wrote;
  if (!wrote) return { slot: attempt.slot, rescue: attempt.rescue, wrote: false, newVars: new Map(vars) };
  if (options.saveFails) return { slot: attempt.state.lastGood, rescue: attempt.rescue, wrote: false, newVars: new Map(vars) };
  const newVars = dropUnreadable(mergeInto(vars, attempt.state));
  if (attempt.rescue) newVars.set('BOOT_RESCUE', '1');
  return { slot: attempt.slot, rescue: attempt.rescue, wrote: true, newVars };
}

// ---- larch's transitions ------------------------------------------------------------------------

/**
 * The state after one event; each event is one atomic env write (boot-attempt is the bootloader's).
 * @throws RangeError when an upgrade asks for tries outside 1..MAX_TRIES
 */
export function next(state: BootState, event: BootEvent): BootState {
  const s = normalise(state);
  switch (event.type) {
    case 'boot-attempt':
      return attemptBoot(s).state;
    case 'marked-good':
      return normalise({ ...withSlot(s, event.slot, { good: true, triesLeft: 0 }), lastGood: event.slot, rescue: false });
    case 'marked-bad':
      // lastGood stays: if both slots end up bad, the one most recently known to work is the rescue slot.
      return normalise(withSlot(s, event.slot, { good: false, triesLeft: 0 }));
    case 'upgrade-staged': {
      const tries = event.tries ?? DEFAULT_TRIES;
      if (!Number.isInteger(tries) || tries < 1 || tries > MAX_TRIES) throw new RangeError(`tries must be 1..${MAX_TRIES}, got ${tries}`);
      const staged = withSlot(s, event.slot, { good: false, triesLeft: tries });
      // The slot's old contents are gone, so it can no longer be the rescue slot.
      const lastGood = s.lastGood === event.slot ? other(event.slot) : s.lastGood;
      return normalise({ ...staged, order: [event.slot, other(event.slot)], lastGood, rescue: false });
    }
    case 'slot-prepared':
    case 'slot-cleaned':
      // The slot's contents go away, so it can no longer be the rescue slot either.
      return { ...second(next(s, { type: 'marked-bad', slot: event.slot }), event.slot), lastGood: other(event.slot) };
    case 'upgrade-cancelled':
      // The slot's contents stay: lastGood stays as after marked-bad.
      return second(next(s, { type: 'marked-bad', slot: event.slot }), event.slot);
    case 'rollback-requested':
      // A target that is not good is refused by the caller (larch rollback); the model changes nothing.
      if (!s.slots[event.slot].good) return s;
      return normalise({ ...second(s, other(event.slot)), lastGood: event.slot, rescue: false });
    case 'fallback-recorded':
      // Only when the primary really is unbootable; this never changes what the bootloader boots.
      if (event.booted === s.order[0] || isBootable(s, s.order[0])) return s;
      return normalise({ ...s, order: [event.booted, other(event.booted)] });
  }
}

// ---- fallback detection and the boot-check decision ------------------------------------------

export interface FallbackReport {
  readonly booted: Slot;
  /** The slot BOOT_ORDER asked for. */
  readonly primary: Slot;
  /** The bootloader booted another slot than the primary. */
  readonly fellBack: boolean;
  readonly from: Slot | null;
  readonly to: Slot | null;
  /** No slot was bootable; `booted` is the last known good slot booted anyway (both bad). */
  readonly rescue: boolean;
}

/**
 * Compares the slot that booted (larch.slot= on the kernel command line, or the simulation's
 * choice) with the state the agent reads after boot.
 */
export function detectFallback(state: BootState, booted: Slot): FallbackReport {
  const s = normalise(state);
  const primary = s.order[0];
  const fellBack = booted !== primary;
  return { booted, primary, fellBack, from: fellBack ? primary : null, to: fellBack ? booted : null, rescue: s.rescue };
}

export interface BootCheckPlan {
  /** Events to apply with next(), in order, then write once (nothing to write when empty). */
  readonly events: readonly BootEvent[];
  /** Reboot so the bootloader spends another try or falls back. */
  readonly reboot: boolean;
  readonly report: FallbackReport;
  readonly outcome: 'confirmed' | 'already-good' | 'retry' | 'unhealthy-stay' | 'both-bad';
}

/**
 * What `larch boot-check` does after the health checks on the booted slot:
 * - healthy and unconfirmed (or rescue): mark it good;
 * - unhealthy and unconfirmed: reboot, which spends a try or falls back;
 * - unhealthy and already good with no update pending: stay and report (greenboot only reboots while
 *   a boot counter is set; a good slot never falls back on its own);
 * - unhealthy in rescue: stay and report both-bad, never reboot (greenboot#26).
 * A fallback is recorded (made primary) in the same write, so it is reported once.
 */
export function planBootCheck(state: BootState, booted: Slot, healthy: boolean): BootCheckPlan {
  const s = normalise(state);
  const report = detectFallback(s, booted);
  const events: BootEvent[] = [];
  if (report.fellBack && !isBootable(s, report.primary)) events.push({ type: 'fallback-recorded', booted });
  const slot = s.slots[booted];
  if (healthy) {
    if (slot.good && !s.rescue) return { events, reboot: false, report, outcome: 'already-good' };
    events.push({ type: 'marked-good', slot: booted });
    return { events, reboot: false, report, outcome: 'confirmed' };
  }
  if (s.rescue) return { events, reboot: false, report, outcome: 'both-bad' };
  if (slot.good) return { events, reboot: false, report, outcome: 'unhealthy-stay' };
  return { events, reboot: true, report, outcome: 'retry' };
}

/**
 * The slot the LKG marker must name after a write that left `state`: the last known good slot
 * while it is good; when it was marked bad and the other slot is good, the other one; with no
 * good slot, the last known good (the rescue slot, which the bootloader boots anyway). So an env
 * lost afterwards (decode(empty, { lkgMarker })) boots a good slot, never one marked bad or
 * unconfirmed, whenever there is a good one.
 */
export function markerSlot(state: BootState): Slot {
  const s = normalise(state);
  if (s.slots[s.lastGood].good) return s.lastGood;
  return s.slots[other(s.lastGood)].good ? other(s.lastGood) : s.lastGood;
}

/**
 * What `larch rollback` writes when `booted` is running: a good other slot becomes primary
 * (rollback-requested); a staged, unconfirmed update in it is cancelled (upgrade-cancelled); null
 * when the other slot is neither, which the caller refuses (rolling back onto it could leave the
 * device with nothing to boot).
 */
export function planRollback(state: BootState, booted: Slot): BootEvent | null {
  const s = normalise(state);
  const target = other(booted);
  if (s.slots[target].good) return { type: 'rollback-requested', slot: target };
  if (isBootable(s, target) && s.order[0] === target) return { type: 'upgrade-cancelled', slot: target };
  return null;
}

/**
 * The state an agent can prove for a damaged env (reconstruct() in src/agent/boot.ts): the slots in
 * `proved` good, no slot with tries (an unconfirmed slot's count cannot be proved), the marker's
 * slot last known good unless only the other one is proved, and the booted slot first when it is
 * proved, else the last known good one. With nothing proved, nothing is bootable: the bootloader
 * boots the marker's slot in rescue.
 */
export function provedState(proved: ReadonlySet<Slot>, marker: Slot, booted: Slot | null): BootState {
  const slot = (name: Slot): SlotState => ({ good: proved.has(name), triesLeft: 0 });
  const lastGood = proved.has(marker) || proved.size === 0 ? marker : other(marker);
  const first = booted && proved.has(booted) ? booted : lastGood;
  return { order: [first, other(first)], slots: { A: slot('A'), B: slot('B') }, lastGood, rescue: false };
}

/** Applies events in order (one write's worth). */
export function applyAll(state: BootState, events: readonly BootEvent[]): BootState {
  return events.reduce(next, state);
}

// ---- helpers ------------------------------------------------------------------------------------

/** `state` with `slot` second in the boot order. */
function second(state: BootState, slot: Slot): BootState {
  return { ...state, order: [other(slot), slot] };
}

function withSlot(state: BootState, slot: Slot, value: SlotState): BootState {
  return { ...state, slots: { ...state.slots, [slot]: value } };
}

/** Restores the invariants: a good slot has no tries; rescue only while nothing is bootable. */
function normalise(state: BootState): BootState {
  const slots = {
    A: state.slots.A.good ? { good: true, triesLeft: 0 } : state.slots.A,
    B: state.slots.B.good ? { good: true, triesLeft: 0 } : state.slots.B,
  };
  const anyBootable = SLOTS.some((n) => slots[n].good || slots[n].triesLeft > 0);
  return { order: state.order, slots, lastGood: state.lastGood, rescue: state.rescue && !anyBootable };
}

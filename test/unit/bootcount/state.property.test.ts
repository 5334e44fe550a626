/**
 * Property test of the boot-state model: long seeded runs of power-ons, health checks, upgrades
 * (preparing the slot, then staging it), rollbacks and cancelled updates (planRollback, as larch
 * rollback decides), mark-bad, cleanup --rollback and power cuts, through every event the agent writes, with the env as the only thing that survives a cut. Every
 * larch or bootloader transition is one atomic env write; a power cut drops whatever write was
 * about to happen. An oracle kept by this test (not by state.ts) checks the invariants after
 * each step. Mutations of state.ts that each invariant catches are listed in docs/boot.md.
 */
import t from 'tap';
import {
  type Slot,
  MAX_TRIES,
  SLOTS,
  applyAll,
  bootloaderChoose,
  decode,
  isBootable,
  mergeInto,
  other,
  planBootCheck,
  planRollback,
} from '../../../src/bootcount/state.ts';
import { prng } from '../../helpers.ts';

const SEEDS = Number(process.env.LARCH_PROPERTY_SEEDS ?? 40);
const STEPS = Number(process.env.LARCH_PROPERTY_STEPS ?? 4000);
/** Reboots the agent may ask for in a row with no operator action: every one spends a try. */
const REBOOT_BOUND = 2 * MAX_TRIES + 2;

type Mode = 'cautious' | 'hostile';

interface Deployment {
  id: number;
  /** Passes its health checks (mostly: health is flaky either way). */
  works: boolean;
  tries: number;
}

/** What the test knows independently of state.ts. */
interface SlotOracle {
  deployment: Deployment | null;
  confirmed: boolean;
  /** Step of the last mark-good or rollback onto this slot; decides the newest good slot. */
  confirmedAt: number;
  markedBad: boolean;
  /** Step this deployment was last confirmed, even if marked bad since: picks the rescue slot. */
  everConfirmedAt: number;
  /** Boots of this deployment while unconfirmed. */
  spent: number;
}

class Device {
  vars = new Map<string, string>([
    ['BOOT_ORDER', 'A B'], ['BOOT_A_GOOD', '1'], ['BOOT_A_LEFT', '0'], ['BOOT_B_GOOD', '0'],
    ['BOOT_B_LEFT', '0'], ['BOOT_LKG', 'A'], ['BOOT_RESCUE', '0'],
  ]);
  oracle: Record<Slot, SlotOracle> = {
    A: { deployment: { id: 0, works: true, tries: 1 }, confirmed: true, confirmedAt: 0, everConfirmedAt: 0, markedBad: false, spent: 0 },
    B: { deployment: null, confirmed: false, confirmedAt: -1, everConfirmedAt: -1, markedBad: false, spent: 0 },
  };
  /** The slot the oracle expects first: the last staged or rolled-back-to slot, or a recorded fallback. */
  intendedPrimary: Slot = 'A';
  booted: Slot | null = null;
  bootedRescue = false;
  checked = false;
  agentReboots = 0;
  /** The previous boot's slot if nothing but power cuts happened since and it was confirmed then. */
  quietSince: { slot: Slot } | null = null;
  lastRescue: { slot: Slot } | null = null;
  nextId = 1;
  log: string[] = [];
  /** How often each situation came up, so the test proves the runs reach what the invariants guard. */
  seen = { fallbacks: 0, rescues: 0, quietPowerCycles: 0, exhaustedSkipped: 0, settles: 0, settledOnStaged: 0, agentReboots: 0, cutWrites: 0, rollbacks: 0, cancels: 0, refusedRollbacks: 0, cleanups: 0, cutAfterPrepare: 0 };

  constructor(readonly mode: Mode, readonly rand: () => number, readonly fail: (msg: string) => never) {}

  exhausted(slot: Slot): boolean {
    const o = this.oracle[slot];
    return !o.confirmed && (o.markedBad || o.deployment === null || o.spent >= o.deployment.tries);
  }

  oracleBootable(slot: Slot): boolean {
    return this.oracle[slot].confirmed || !this.exhausted(slot);
  }

  /** The slot the device must end on: the newest one marked good that is still good. */
  newestGood(): Slot | null {
    const good = SLOTS.filter((s) => this.oracle[s].confirmed);
    if (good.length === 0) return null;
    return good.reduce((a, b) => (this.oracle[b].confirmedAt > this.oracle[a].confirmedAt ? b : a));
  }

  operatorEvent(): void {
    this.agentReboots = 0;
    this.quietSince = null;
    this.lastRescue = null;
  }

  powerOn(step: number): void {
    const before = this.vars;
    const choice = bootloaderChoose(before);
    const slot = choice.slot;
    this.log.push(`${step}: boot ${slot}${choice.rescue ? ' (rescue)' : ''}${choice.wrote ? ' wrote' : ''} ${[...choice.newVars].filter(([k]) => k.startsWith('BOOT_')).map(([k, v]) => `${k.slice(5)}=${v}`).join(' ')}`);
    // rauc#490: with nothing but power cuts since a boot of a confirmed slot, the same slot boots and nothing is written.
    if (this.quietSince && this.oracle[this.quietSince.slot].confirmed) {
      this.seen.quietPowerCycles++;
      if (slot !== this.quietSince.slot || choice.wrote) this.fail(`power cycle on confirmed slot ${this.quietSince.slot} booted ${slot}, wrote=${choice.wrote} (rauc#490)`);
    }
    // greenboot#26: a rescue state is stable: same slot, no more writes.
    if (this.lastRescue && (!choice.rescue || slot !== this.lastRescue.slot || choice.wrote)) this.fail(`rescue on ${this.lastRescue.slot} did not hold: booted ${slot}, rescue=${choice.rescue}, wrote=${choice.wrote}`);
    if (choice.rescue) {
      if (this.mode === 'cautious') this.fail('rescue reached although the agent only staged from a good slot');
      if (SLOTS.some((s) => this.oracleBootable(s))) this.fail(`rescue although the oracle has a bootable slot`);
      if (slot !== this.rescueSlot()) this.fail(`rescue booted ${slot}, the last known good is ${this.rescueSlot()}`);
    } else if (this.exhausted(slot)) {
      this.fail(`booted slot ${slot}, which failed all its tries or was marked bad (spent ${this.oracle[slot].spent})`);
    }
    if (choice.rescue) this.seen.rescues++;
    if (SLOTS.some((s) => this.exhausted(s) && this.oracle[s].deployment !== null)) this.seen.exhaustedSkipped++;
    if (choice.wrote) this.vars = choice.newVars;
    if (!choice.rescue && !this.oracle[slot].confirmed) this.oracle[slot].spent++;
    this.booted = slot;
    this.bootedRescue = choice.rescue;
    this.checked = false;
    this.quietSince = this.oracle[slot].confirmed ? { slot } : null;
    this.lastRescue = choice.rescue ? { slot } : null;
    this.checkAlwaysBootable();
  }

  /** larch boot-check: health, then one write, then maybe a reboot. Returns whether the device reboots. */
  bootCheck(healthy: boolean, cutBeforeWrite: boolean): boolean {
    const slot = this.booted!;
    const state = decode(this.vars);
    const plan = planBootCheck(state, slot, healthy);
    const expectFallback = slot !== this.intendedPrimary;
    if (plan.report.fellBack !== expectFallback) this.fail(`fallback report ${plan.report.fellBack}, oracle expected ${expectFallback} (primary ${this.intendedPrimary}, booted ${slot})`);
    if (expectFallback) this.seen.fallbacks++;
    if (expectFallback && (plan.report.from !== this.intendedPrimary || plan.report.to !== slot)) this.fail(`fallback reported from ${plan.report.from} to ${plan.report.to}`);
    if (plan.report.rescue !== this.bootedRescue) this.fail(`rescue reported ${plan.report.rescue}, bootloader said ${this.bootedRescue}`);
    if (this.bootedRescue && plan.reboot) this.fail('the agent reboots in rescue (greenboot#26)');
    this.log.push(`   check ${healthy ? 'healthy' : 'unhealthy'} -> ${plan.outcome}${plan.reboot ? ' reboot' : ''}${cutBeforeWrite ? ' (cut before write)' : ''}`);
    if (cutBeforeWrite) {
      this.seen.cutWrites++;
      return true;
    }
    if (plan.events.length) {
      this.vars = mergeInto(this.vars, applyAll(state, plan.events));
      for (const e of plan.events) {
        if (e.type === 'marked-good') this.confirm(e.slot, this.stepNow);
        if (e.type === 'fallback-recorded') this.intendedPrimary = e.booted;
      }
      this.checkAlwaysBootable();
    }
    this.checked = true;
    if (plan.reboot) {
      this.seen.agentReboots++;
      if (++this.agentReboots > REBOOT_BOUND) this.fail(`${this.agentReboots} reboots in a row with no operator action`);
    } else if (plan.events.some((e) => e.type === 'marked-good')) {
      this.agentReboots = 0;
    }
    return plan.reboot;
  }

  stepNow = 0;
  /** The slot last rewritten (prepared, staged) or whose deployment was removed (cleanup). */
  lastEmptied: Slot = 'B';

  /** Both bad: the slot whose current deployment was confirmed most recently, else the one not emptied last. */
  rescueSlot(): Slot {
    const [a, b] = [this.oracle.A.everConfirmedAt, this.oracle.B.everConfirmedAt];
    if (a < 0 && b < 0) return other(this.lastEmptied);
    return a >= b ? 'A' : 'B';
  }

  confirm(slot: Slot, step: number): void {
    const o = this.oracle[slot];
    o.confirmed = true;
    o.markedBad = false;
    o.confirmedAt = step;
    o.everConfirmedAt = step;
    this.lastRescue = null;
  }

  /** One larch event written by an operator command (upgrade, rollback, mark-bad). */
  write(label: string, events: Parameters<typeof applyAll>[1]): void {
    this.vars = mergeInto(this.vars, applyAll(decode(this.vars), events));
    this.log.push(`   ${label}`);
    this.operatorEvent();
    this.checkAlwaysBootable();
  }

  /** The slot's deployment goes away (being rewritten, or removed): the oracle forgets it. */
  empty(slot: Slot): void {
    this.oracle[slot] = { deployment: null, confirmed: false, confirmedAt: -1, everConfirmedAt: -1, markedBad: true, spent: 0 };
    this.lastEmptied = slot;
  }

  /**
   * An upgrade into `slot`: the agent prepares it (slot-prepared, only from a good booted slot, as
   * upgrade refuses otherwise), rewrites it and stages it; a power cut may fall between the writes.
   * The hostile agent also stages from an unconfirmed slot, with no preparing write. Returns false when cut.
   */
  upgrade(slot: Slot, tries: number, works: boolean, cutAfterPrepare: boolean): boolean {
    if (decode(this.vars).slots[other(slot)].good) {
      this.empty(slot);
      this.intendedPrimary = other(slot);
      this.write(`prepare ${slot}`, [{ type: 'slot-prepared', slot }]);
      if (cutAfterPrepare) {
        this.seen.cutAfterPrepare++;
        return false;
      }
    }
    this.oracle[slot] = { deployment: { id: this.nextId++, works, tries }, confirmed: false, confirmedAt: -1, everConfirmedAt: -1, markedBad: false, spent: 0 };
    this.lastEmptied = slot;
    this.intendedPrimary = slot;
    this.write(`stage ${slot} tries=${tries} works=${works}`, [{ type: 'upgrade-staged', slot, tries }]);
    return true;
  }

  /** larch rollback from the booted slot: onto a good other slot, or cancelling a staged update there. */
  rollback(step: number): void {
    const booted = this.booted!;
    const target = other(booted);
    const event = planRollback(decode(this.vars), booted);
    if (event === null) {
      this.seen.refusedRollbacks++;
      if (this.oracle[target].confirmed) this.fail(`rollback onto ${target} refused although it was confirmed`);
      this.log.push(`   rollback to ${target} refused`);
      return;
    }
    if (event.type === 'rollback-requested') {
      if (!this.oracle[target].confirmed) this.fail(`rollback onto ${target}, which the oracle does not know good`);
      this.seen.rollbacks++;
      this.write(`rollback to ${target}`, [event]);
      this.intendedPrimary = target;
      this.confirm(target, step);
      return;
    }
    if (this.oracle[target].confirmed || this.intendedPrimary !== target) this.fail(`cancelled ${target}, which is not a pending update`);
    this.seen.cancels++;
    Object.assign(this.oracle[target], { markedBad: true });
    this.intendedPrimary = booted;
    this.write(`cancel the update in ${target}`, [event]);
  }

  /** larch cleanup --rollback: removes the other slot's deployment unless it boots next. */
  cleanup(): void {
    const slot = other(this.booted!);
    if (this.oracle[slot].deployment === null || decode(this.vars).order[0] === slot) return;
    this.seen.cleanups++;
    this.empty(slot);
    this.intendedPrimary = this.booted!;
    this.write(`cleanup ${slot}`, [{ type: 'slot-cleaned', slot }]);
  }

  markBad(slot: Slot): void {
    Object.assign(this.oracle[slot], { confirmed: false, markedBad: true });
    this.write(`mark-bad ${slot}`, [{ type: 'marked-bad', slot }]);
  }

  checkAlwaysBootable(): void {
    if (this.mode !== 'cautious') return;
    if (!SLOTS.some((s) => this.oracleBootable(s))) this.fail('oracle: no slot is good or has tries left');
    const state = decode(this.vars);
    if (!SLOTS.some((s) => isBootable(state, s))) this.fail('env: no slot is good or has tries left');
  }

  /** No cuts, no operator: boot until two quiet boots in a row; the device must be on the newest good slot. */
  settle(step: number): void {
    this.log.push(`${step}: settle`);
    let quiet = 0;
    for (let i = 0; i < 4 * MAX_TRIES + 8; i++) {
      this.stepNow = step;
      const varsBefore = this.vars;
      this.powerOn(step);
      const dep = this.oracle[this.booted!].deployment;
      const reboot = this.bootCheck(dep?.works ?? false, false);
      quiet = !reboot && this.vars === varsBefore ? quiet + 1 : 0;
      if (quiet >= 2) break;
    }
    if (quiet < 2) this.fail('did not settle');
    const expected = this.newestGood();
    this.seen.settles++;
    if (expected !== null && expected === this.intendedPrimary && this.oracle[expected].deployment!.id > 0) this.seen.settledOnStaged++;
    if (expected === null) {
      if (this.mode === 'cautious') this.fail('cautious run with no good slot');
      if (!this.bootedRescue) this.fail(`no slot is good but the device is not in rescue (on ${this.booted})`);
    } else if (this.booted !== expected) {
      this.fail(`settled on ${this.booted}, the newest slot marked good is ${expected}`);
    }
  }
}

type Seen = Device['seen'];

function run(mode: Mode, seed: number): { ok: true; seen: Seen } | { ok: false; message: string } {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  let device: Device;
  const fail = (msg: string): never => {
    throw new Error(`${mode} seed ${seed}: ${msg}\n  last steps:\n  ${device.log.slice(-25).join('\n  ')}`);
  };
  device = new Device(mode, rand, fail);
  try {
    for (let step = 1; step <= STEPS; step++) {
      device.stepNow = step;
      if (device.booted === null) {
        device.powerOn(step);
        continue;
      }
      const r = rand();
      if (!device.checked) {
        // Booted, boot-check not run yet: a power cut, or the health checks (flaky either way).
        if (r < 0.2) device.booted = null;
        else {
          const works = device.oracle[device.booted].deployment?.works ?? false;
          const healthy = rand() < (works ? 0.85 : 0.04);
          if (device.bootCheck(healthy, rand() < 0.1)) device.booted = null;
        }
        continue;
      }
      // Running after boot-check: operator actions, reboots, power cuts.
      const booted = device.booted;
      const bootedGood = decode(device.vars).slots[booted].good;
      if (r < 0.25) device.booted = null;
      else if (r < 0.5) {
        const slot = other(booted);
        // The cautious agent stages only from a confirmed slot; the hostile one whenever asked.
        if ((mode === 'hostile' || bootedGood) && !device.upgrade(slot, 1 + Math.floor(rand() * MAX_TRIES), rand() < 0.6, rand() < 0.1)) device.booted = null;
      } else if (r < 0.6) device.rollback(step);
      else if (r < 0.62) {
        // The cautious operator cleans up only from a good slot (the other may be the only one that boots).
        if (mode === 'hostile' || bootedGood) device.cleanup();
      }
      else if (r < 0.68) {
        const slot = pick(SLOTS);
        // The cautious operator never marks the last good slot bad.
        if (mode === 'hostile' || device.oracle[other(slot)].confirmed) device.markBad(slot);
      } else if (r < 0.7) device.settle(step);
      if (rand() < 0.3 && device.checked) device.booted = null;
    }
    device.settle(STEPS + 1);
    return { ok: true, seen: device.seen };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

for (const mode of ['cautious', 'hostile'] as const) {
  t.test(`${mode}: ${SEEDS} seeds x ${STEPS} steps hold every invariant`, async (t) => {
    let failures = 0;
    const total: Record<string, number> = {};
    for (let seed = 1; seed <= SEEDS; seed++) {
      const result = run(mode, seed * 7919 + (mode === 'hostile' ? 1 : 0));
      if (!result.ok) {
        failures++;
        if (failures <= 3) t.fail(result.message);
      } else {
        for (const [k, v] of Object.entries(result.seen)) total[k] = (total[k] ?? 0) + v;
      }
    }
    t.equal(failures, 0, `${failures} of ${SEEDS} seeds failed`);
    t.comment(JSON.stringify(total));
    // The runs must reach what the invariants guard, or a passing run proves nothing.
    for (const k of ['fallbacks', 'quietPowerCycles', 'exhaustedSkipped', 'settles', 'settledOnStaged', 'agentReboots', 'cutWrites', 'rollbacks', 'cancels', 'refusedRollbacks', 'cleanups', 'cutAfterPrepare']) t.ok(total[k] > 0, `reached: ${k}`);
    if (mode === 'hostile') t.ok(total.rescues > 0, 'reached: rescue');
  });
}

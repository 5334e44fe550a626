/**
 * Property test: a torn, zeroed or lost boot env never boots a slot as good (no try
 * spent) unless that slot holds a deployment that passed its health checks and was not marked bad
 * (while such a slot exists; with none, rescue boots the last known good one by design). Not
 * covered: two faults in a row, a power cut between a confirming env write and the marker update
 * followed by the loss of every copy (the marker is then one write behind; counted).
 * Seeded runs of power-ons, boot-checks, upgrades, rollbacks and mark-bad on the real encodings:
 * a redundant U-Boot env (two copies, flags; encodeCopy/decodeEnv/selectCopy), the LKG marker
 * (markerSlot after every agent write), the bootloader's step (bootloaderChoose) and the agent's
 * repair of an env with no valid copy (the provable state, as reconstruct() in src/agent/boot.ts,
 * with the journal's last word per slot).
 * A power cut can tear any copy write (the bootloader's try or larch's), or fall between larch's env
 * write and its marker update; storage can also be zeroed or every copy flipped. Checked: the
 * invariant above at every power-on, and that the runs reach each situation it guards. Each of these
 * mutations makes it fail (100 seeds): the marker never moved (main's "A" default); the marker set to
 * BOOT_LKG instead of markerSlot(); the marker always moved after the env write (never before).
 */
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { type BootEvent, type BootState, type Slot, INITIAL_STATE, SLOTS, applyAll, bootloaderChoose, decode, encode, markerSlot, mergeInto, next, other, planBootCheck, planRollback } from '../../../src/bootcount/state.ts';
import { decodeEnv, encodeCopy, nextFlags } from '../../../src/bootcount/uboot-env.ts';
import { prng } from '../../helpers.ts';

const SEEDS = Number(process.env.LARCH_PROPERTY_SEEDS ?? 100);
const STEPS = Number(process.env.LARCH_PROPERTY_STEPS ?? 3000);
const LAYOUT = { sizeBytes: 0x200, redundant: true };
/** A write cut by a power cut: the first bytes new, the rest erased. */
const TORN_AT = 24;

class PowerCut extends Error {}

interface SlotTruth {
  deployed: boolean;
  works: boolean;
  /** The current deployment passed a boot-check's health checks. */
  passed: boolean;
  /** Marked bad by the operator (a completed mark-bad). */
  bad: boolean;
}

class Device {
  copies: Uint8Array[] = [new Uint8Array(LAYOUT.sizeBytes), new Uint8Array(LAYOUT.sizeBytes)];
  marker: Slot = 'A';
  truth: Record<Slot, SlotTruth> = { A: { deployed: true, works: true, passed: true, bad: false }, B: { deployed: false, works: false, passed: false, bad: false } };
  /** The journal's last word per slot: a completed mark-good of its current deployment. */
  provedGood: Record<Slot, boolean> = { A: true, B: false };
  booted: Slot | null = null;
  seen = { tornWrites: 0, markerCuts: 0, noValidCopy: 0, repairs: 0, markerBoots: 0, stagedWhenLost: 0, goodBoots: 0, laggingMarker: 0 };
  log: string[] = [];

  constructor(readonly rand: () => number, readonly cutRate: number, readonly fail: (msg: string) => never) {
    this.copies[0] = encodeCopy(encode(INITIAL_STATE), LAYOUT, { flags: 1 });
    this.copies[1] = encodeCopy(encode(INITIAL_STATE), LAYOUT, { flags: 0 });
  }

  read(): { vars: Map<string, string>; active: 0 | 1; flags: number } | null {
    try {
      const d = decodeEnv(this.copies, LAYOUT);
      return { vars: d.vars, active: d.active, flags: d.flags ?? 0 };
    } catch (err) {
      if (err instanceof LarchError && err.code === 'ENV_CORRUPT') return null;
      throw err;
    }
  }

  maybeCut(): void {
    if (this.rand() < this.cutRate) throw new PowerCut();
  }

  /** One copy write, to the copy not in use with the next flags; a cut tears it. */
  writeCopy(vars: ReadonlyMap<string, string>): void {
    const cur = this.read();
    const target = cur === null ? 0 : cur.active === 0 ? 1 : 0;
    const bytes = encodeCopy(vars, LAYOUT, { flags: cur === null ? 1 : nextFlags(cur.flags) });
    if (this.rand() < this.cutRate) {
      bytes.fill(0xff, TORN_AT);
      this.copies[target] = bytes;
      this.seen.tornWrites++;
      throw new PowerCut();
    }
    this.copies[target] = bytes;
    this.lastWritten = new Map(vars);
  }

  /** The env of the last copy write that completed (what the bootloader would read had nothing been lost since). */
  lastWritten: Map<string, string> = encode(INITIAL_STATE);

  /** larch's read: an env with no valid copy is rewritten with what can be proved. */
  agentRead(): Map<string, string> {
    const cur = this.read();
    if (cur) return cur.vars;
    this.seen.repairs++;
    const proved = new Set<Slot>(SLOTS.filter((s) => this.provedGood[s]));
    const lastGood = proved.has(this.marker) || proved.size === 0 ? this.marker : other(this.marker);
    const first = this.booted && proved.has(this.booted) ? this.booted : lastGood;
    const state: BootState = { order: [first, other(first)], slots: { A: { good: proved.has('A'), triesLeft: 0 }, B: { good: proved.has('B'), triesLeft: 0 } }, lastGood, rescue: false };
    const vars = new Map<string, string>(encode(state));
    this.writeCopy(vars);
    this.writeCopy(vars);
    return vars;
  }

  /**
   * changeBootState: the marker first when it moves to a slot good on both sides of the write, then
   * one env write (`written` runs once it is on the disk), then the marker when it moves to a slot
   * this write confirms. A cut can fall between any two.
   */
  agentChange(change: (s: BootState) => BootState | null, written: () => void = () => {}): BootState {
    const vars = this.agentRead();
    const before = decode(vars, { lkgMarker: this.marker });
    const after = change(before);
    if (after === null) return before;
    const target = markerSlot(after);
    if (target !== this.marker && before.slots[target].good && after.slots[target].good) {
      this.marker = target;
      this.maybeMarkerCut();
    }
    this.writeCopy(mergeInto(vars, after));
    written();
    // Moving onto a slot this very write confirms cannot come first: a cut here leaves the marker
    // one write behind, on the slot the env before this write boots (its good or rescue slot).
    this.markerLag = target !== this.marker && !before.slots[target].good;
    this.maybeMarkerCut();
    this.marker = target;
    this.markerLag = false;
    return after;
  }

  markerLag = false;

  maybeMarkerCut(): void {
    if (this.rand() < this.cutRate) {
      this.seen.markerCuts++;
      throw new PowerCut();
    }
  }

  powerOn(): void {
    this.booted = null;
    const cur = this.read();
    if (!cur) this.seen.noValidCopy++;
    const choice = bootloaderChoose(cur?.vars ?? new Map(), { lkgMarker: this.marker });
    if (choice.wrote) this.writeCopy(choice.newVars);
    const spent = choice.wrote && !choice.rescue;
    this.log.push(`boot ${choice.slot}${choice.rescue ? ' rescue' : ''}${spent ? ' (try)' : ''}${cur ? '' : ' [no valid env, marker ' + this.marker + ']'}`);
    const good = (x: Slot) => this.truth[x].deployed && this.truth[x].passed && !this.truth[x].bad;
    // With no good slot at all the device is in rescue by design (greenboot#26): the last known
    // good slot boots without a try, whether the env says rescue or is lost. So does an env that
    // says no slot is good (a repair that could not prove one, then mark-bad of the other) when lost.
    const written = decode(this.lastWritten, { lkgMarker: this.marker });
    const envRescue = !cur && !SLOTS.some((x) => written.slots[x].good) && choice.slot === written.lastGood;
    // Two faults: a cut between a confirming env write and the marker, then every copy lost.
    if (!cur && this.markerLag) this.seen.laggingMarker++;
    if (!choice.rescue && !spent && SLOTS.some(good) && !envRescue && !(!cur && this.markerLag)) {
      const s = this.truth[choice.slot];
      if (!good(choice.slot)) this.fail(`slot ${choice.slot} booted as good (no try spent) but it ${!s.deployed ? 'holds nothing' : s.bad ? 'was marked bad' : 'never passed its health checks'}`);
      this.seen.goodBoots++;
      if (!cur) {
        this.seen.markerBoots++;
        if (SLOTS.some((x) => this.truth[x].deployed && !this.truth[x].passed)) this.seen.stagedWhenLost++;
      }
    }
    this.booted = choice.slot;
  }

  bootCheck(): void {
    const slot = this.booted!;
    const healthy = this.truth[slot].works && this.rand() < 0.9;
    let plan: ReturnType<typeof planBootCheck> | null = null;
    const confirms = () => (plan as ReturnType<typeof planBootCheck> | null)?.events.some((e: BootEvent) => e.type === 'marked-good') ?? false;
    this.agentChange(
      (s) => {
        plan = planBootCheck(s, slot, healthy);
        return plan.events.length ? applyAll(s, plan.events) : null;
      },
      // A mark-good on the disk confirms the deployment again (a rescue slot that works again).
      () => {
        if (confirms()) Object.assign(this.truth[slot], { passed: true, bad: false });
      },
    );
    // The journal entry follows the env write (boot-check journals after changeBootState).
    if (confirms()) this.provedGood[slot] = true;
  }

  /** upgrade into the other slot: refused unless the booted slot is good (booted-unconfirmed). */
  upgrade(): void {
    const booted = this.booted!;
    if (!decode(this.agentRead(), { lkgMarker: this.marker }).slots[booted].good) return;
    const slot = other(booted);
    this.agentChange((s) => next(s, { type: 'slot-prepared', slot }));
    this.provedGood[slot] = false;
    // The slot's files are rewritten now.
    this.truth[slot] = { deployed: true, works: this.rand() < 0.6, passed: false, bad: false };
    this.agentChange((s) => next(s, { type: 'upgrade-staged', slot, tries: 1 + Math.floor(this.rand() * 3) }));
  }

  markBadOther(): void {
    const slot = other(this.booted!);
    this.agentChange(
      (s) => next(s, { type: 'marked-bad', slot }),
      () => {
        this.truth[slot].bad = true;
        this.provedGood[slot] = false;
      },
    );
  }

  /** larch rollback: onto a good other slot, or cancelling a staged update there (marks it bad). */
  rollback(): void {
    const target = other(this.booted!);
    let cancel = false;
    this.agentChange(
      (s) => {
        const event = planRollback(s, this.booted!);
        cancel = event?.type === 'upgrade-cancelled';
        return event ? next(s, event) : null;
      },
      () => {
        if (!cancel) return;
        this.truth[target].bad = true;
        this.provedGood[target] = false;
      },
    );
  }

  /**
   * The env lost outside any write: storage zeroed, or a byte flipped in every copy. (A flip of the
   * copy in use alone brings back the previous write's state, which is what redundancy is for.)
   */
  damage(): void {
    if (this.rand() < 0.5) {
      this.copies = [new Uint8Array(LAYOUT.sizeBytes), new Uint8Array(LAYOUT.sizeBytes)];
      this.log.push('storage zeroed');
    } else {
      for (const copy of this.copies) copy[5 + Math.floor(this.rand() * 20)] ^= 0x10;
      this.log.push('every copy flipped');
    }
  }
}

t.test('a torn, zeroed or lost env never boots an unconfirmed or bad slot as good', async (t) => {
  const total = { tornWrites: 0, markerCuts: 0, noValidCopy: 0, repairs: 0, markerBoots: 0, stagedWhenLost: 0, goodBoots: 0, laggingMarker: 0 };
  for (let seed = 1; seed <= SEEDS; seed++) {
    const rand = prng(seed);
    const d = new Device(rand, 0.08, (msg) => {
      throw new Error(`seed ${seed}: ${msg}\n${d.log.slice(-25).join('\n')}`);
    });
    let needBoot = true;
    for (let step = 0; step < STEPS; step++) {
      try {
        if (needBoot || d.booted === null) {
          needBoot = false;
          // The env can also be lost while the device is off (e.g. right after a cut).
          if (rand() < 0.05) d.damage();
          d.powerOn();
          d.bootCheck();
          continue;
        }
        const r = rand();
        if (r < 0.2) d.log.push('upgrade'), d.upgrade();
        else if (r < 0.3) d.log.push('mark-bad other'), d.markBadOther();
        else if (r < 0.4) d.log.push('rollback'), d.rollback();
        else if (r < 0.5) d.damage();
        // Sometimes several commands before the next power-on (e.g. rollback, then mark-bad).
        needBoot = rand() < 0.6;
      } catch (err) {
        if (!(err instanceof PowerCut)) throw err;
        d.log.push('power cut');
        needBoot = true;
      }
    }
    for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += d.seen[k];
  }
  t.comment(JSON.stringify(total));
  // The runs reach what the invariant guards: torn copy writes, cuts between env and marker,
  // power-ons with no valid copy that boot the marker's slot while an unconfirmed update is deployed.
  for (const k of Object.keys(total) as (keyof typeof total)[]) t.ok(total[k] > 0, `reached: ${k} (${total[k]})`);
});

/**
 * board/boot-cases.json, the table the bootloader scripts, `larch sim-boot` (bootloaderChoose in
 * src/bootcount/state.ts) and the boards all answer to. Pure: loading, predicting boots with the
 * in-process bootloader, and comparing what a board did with a case.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RELEASES_VARIABLE } from '../../src/bootcount/release-gate.ts';
import { blsChoose } from '../../src/bootcount/bls.ts';
import { BOOT_VARIABLES, bootloaderChoose, decode } from '../../src/bootcount/state.ts';

/** The variables the bootloader and the agent own: the A/B state and the release floor. */
const OWNED = [...BOOT_VARIABLES, RELEASES_VARIABLE];
import { decodeEnv, encodeCopy } from '../../src/bootcount/uboot-env.ts';
import type { BootLine } from './device.ts';

export interface TableBoot extends BootLine {
  env?: Record<string, string>;
  /** What differs on systemd-boot (format.systemd_boot): these fields replace the boot's there. */
  systemd_boot?: Partial<BootLine> & { env?: Record<string, string> };
}
export interface BootCase {
  name: string;
  comment?: string;
  env: Record<string, string> | 'missing' | 'corrupt' | 'zero';
  /** The older redundant copy (U-Boot copy 0, flags 1; `env` is then copy 1, flags 2). */
  previous?: Record<string, string>;
  /** The write of `env` was cut: copy 1 fails its CRC. */
  torn?: boolean;
  /** The LKG marker file larch-lkg-B exists. */
  lkg_marker?: 'B';
  uboot_layout?: 'single';
  only?: 'uboot';
  boots: TableBoot[];
}

/** A torn copy in the table's cases: the write stopped after this many bytes; the rest reads as erased flash (0xff). */
export const TORN_AT = 24;

/**
 * The variables the bootloader starts from for a case: a redundant U-Boot env built from it
 * (previous as copy 0 with flags 1, env as copy 1 with flags 2, torn: copy 1 cut after TORN_AT
 * bytes), decoded by the copy selection of uboot-env.ts. No valid copy reaches the script as no
 * variables at all.
 */
export function caseStartVars(c: BootCase): Map<string, string> {
  if (typeof c.env === 'string') return new Map();
  if (!c.previous) return new Map(Object.entries(c.env));
  const layout = { sizeBytes: 0x400, redundant: true };
  const older = encodeCopy(new Map(Object.entries(c.previous)), layout, { flags: 1 });
  const newer = encodeCopy(new Map(Object.entries(c.env)), layout, { flags: 2 });
  if (c.torn) newer.fill(0xff, TORN_AT);
  return decodeEnv([older, newer], layout).vars;
}

export function loadBootCases(root: string): BootCase[] {
  const path = join(root, 'board', 'boot-cases.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { cases: BootCase[] }).cases;
}

export function bootCase(cases: BootCase[], name: string): BootCase {
  const c = cases.find((x) => x.name === name);
  if (!c) throw new Error(`hil: board/boot-cases.json has no case '${name}' (the scenarios name cases by their "name")`);
  return c;
}

/** larch's variables only: the bootloader and the agent own nothing else. */
export function larchVars(env: Map<string, string> | Record<string, string>): Record<string, string> {
  const m = env instanceof Map ? env : new Map(Object.entries(env));
  const out: Record<string, string> = {};
  for (const k of OWNED) if (m.has(k)) out[k] = m.get(k)!;
  return out;
}

/** What the in-process bootloader does on `n` power-ons in a row from `env`, when nothing else writes in between. */
export function predictBoots(env: Map<string, string>, n: number, opts: { lkgMarker?: 'B' } = {}): { boots: BootLine[]; env: Map<string, string> } {
  let vars = new Map(env);
  const boots: BootLine[] = [];
  for (let i = 0; i < n; i++) {
    const c = bootloaderChoose(vars, { lkgMarker: opts.lkgMarker });
    boots.push({ slot: c.slot, rescue: c.rescue, wrote: c.wrote });
    if (c.wrote) vars = new Map(c.newVars);
  }
  return { boots, env: vars };
}

/**
 * What systemd-boot does on `n` power-ons in a row from these entries (bls.ts blsChoose, what
 * `larch sim-boot` runs on a systemd-boot sysroot), when nothing else renames in between.
 */
export function predictBlsBoots(entries: Map<string, string>, n: number): BootLine[] {
  let files = new Map(entries);
  const boots: BootLine[] = [];
  for (let i = 0; i < n; i++) {
    const c = blsChoose(files);
    if (!c) break;
    boots.push({ slot: c.slot, rescue: c.rescue, wrote: c.wrote });
    files = c.files;
  }
  return boots;
}

/** A row's boot as it is on the board's bootloader: on systemd-boot its `systemd_boot` fields replace the row's. */
export function boardBoot(b: TableBoot, bootloader: string): TableBoot {
  return bootloader === 'systemd-boot' && b.systemd_boot ? { ...b, ...b.systemd_boot } : b;
}

/**
 * Differences in the slots (good, tries left) between two boot states, decoded: systemd-boot's
 * entries read back as canonical variables whose spelling may differ from the table's while
 * meaning the same (as test/unit/bootcount/bls.test.ts compares the table on this backend).
 */
export function compareSlots(observed: Record<string, string>, expected: Record<string, string>): string[] {
  const a = decode(new Map(Object.entries(observed)));
  const b = decode(new Map(Object.entries(expected)));
  return (['A', 'B'] as const)
    .filter((slot) => a.slots[slot].good !== b.slots[slot].good || a.slots[slot].triesLeft !== b.slots[slot].triesLeft)
    .map((slot) => `slot ${slot} ${JSON.stringify(a.slots[slot])}, expected ${JSON.stringify(b.slots[slot])}`);
}

export function formatBoots(boots: BootLine[]): string {
  return boots.map((b) => `${b.slot}${b.rescue ? '(rescue)' : ''}${b.wrote ? '+write' : ''}`).join(' ') || '(none)';
}

/** Differences between what a board booted and what a case says (empty: they agree). */
export function compareBoots(observed: BootLine[], expected: BootLine[]): string[] {
  const problems: string[] = [];
  if (observed.length !== expected.length) problems.push(`${observed.length} boots, expected ${expected.length}`);
  for (let i = 0; i < Math.min(observed.length, expected.length); i++) {
    const o = observed[i];
    const e = expected[i];
    if (o.slot !== e.slot || o.rescue !== e.rescue || o.wrote !== e.wrote) problems.push(`boot ${i + 1}: ${formatBoots([o])}, expected ${formatBoots([e])}`);
  }
  return problems.length ? [...problems, `observed: ${formatBoots(observed)}; expected: ${formatBoots(expected)}`] : [];
}

/** Differences between two envs in larch's variables. */
export function compareEnv(observed: Record<string, string>, expected: Record<string, string>): string[] {
  const a = larchVars(observed);
  const b = larchVars(expected);
  const problems: string[] = [];
  for (const k of OWNED) if (a[k] !== b[k]) problems.push(`${k}=${a[k] ?? '(unset)'}, expected ${b[k] ?? '(unset)'}`);
  return problems;
}

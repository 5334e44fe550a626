/**
 * The release floor in the boot env (docs/boot.md, "The release floor"): the highest
 * `larch.release` the device booted good, and the release each slot holds. The bootloader treats
 * a slot whose release is below the floor as not bootable, so a slot holding an older release (an
 * old rollback slot, or one written with an old, leaked key) never boots while another slot can.
 * Pure: variable maps in and out, as state.ts.
 *
 *   BOOT_RELEASES  "FLOOR A B": three decimal numbers 0..999999999 (no leading zero) separated by
 *                  one space: the floor, then the `larch.release` of the commit in slot A and in
 *                  slot B (0: no deployment, or a commit made before releases).
 *                  Missing or anything else: no floor, every slot passes (a device provisioned
 *                  before the floor boots as before); the bootloader drops it when it writes.
 *
 * One variable, not three: U-Boot runs commands with at most 16 arguments, and boot.cmd's
 * `env export -c -s SIZE ADDR` names every variable it keeps (larch's, larch_env_keep and the
 * board's ones it lists). Nine digits at most, so U-Boot's `test -lt` (base 0: a leading 0 would be
 * octal, 0x hex) and GRUB's (decimal) compare the same numbers in a signed 32-bit long; the
 * scripts check the form first. With no slot bootable the bootloader still boots the last known
 * good slot (rescue), floor or not: a device is never left with nothing to boot.
 */
import type { Slot } from './state.ts';

export const RELEASES_VARIABLE = 'BOOT_RELEASES';

/** The form the scripts accept: what U-Boot and GRUB both read as the same three decimal numbers. */
const RELEASES_RE = /^(0|[1-9][0-9]{0,8}) (0|[1-9][0-9]{0,8}) (0|[1-9][0-9]{0,8})$/;

export interface ReleaseGate {
  /** null: no floor; every slot passes. */
  readonly floor: number | null;
  readonly releases: Readonly<Record<Slot, number>>;
}

export const NO_GATE: ReleaseGate = { floor: null, releases: { A: 0, B: 0 } };

/** BOOT_RELEASES as the scripts read it: NO_GATE when missing or in any other form. */
export function decodeGate(vars: ReadonlyMap<string, string>): ReleaseGate {
  const m = RELEASES_RE.exec(vars.get(RELEASES_VARIABLE) ?? '');
  return m ? { floor: Number(m[1]), releases: { A: Number(m[2]), B: Number(m[3]) } } : NO_GATE;
}

/** Is the slot's release below the floor? Never with no floor. */
export function belowFloor(gate: ReleaseGate, slot: Slot): boolean {
  return gate.floor !== null && gate.releases[slot] < gate.floor;
}

/** The value of BOOT_RELEASES for a gate; null (no variable) with no floor. */
export function encodeGate(gate: ReleaseGate): string | null {
  return gate.floor === null ? null : `${gate.floor} ${gate.releases.A} ${gate.releases.B}`;
}

/** What the scripts do to BOOT_RELEASES when they write the env: dropped when they cannot read it. */
export function dropUnreadable(vars: Map<string, string>): Map<string, string> {
  if (vars.has(RELEASES_VARIABLE) && !RELEASES_RE.test(vars.get(RELEASES_VARIABLE)!)) vars.delete(RELEASES_VARIABLE);
  return vars;
}

/**
 * The device's view of the boot state: read and change the bootloader variables in one locked
 * read-modify-write, learn which slot booted from the kernel command line, and remember what the
 * last boot-check found (S/larch/last-boot.json).
 *
 * A damaged env (no valid copy: torn, zeroed, missing) never stops the agent. It reads as the
 * bootloader reads it, the safe default (the LKG marker's slot good, no tries anywhere). Where larch
 * owns the whole env (the U-Boot env files in S/boot, GRUB's grubenv) it is rewritten at once with
 * the state the agent can prove (reconstruct()); where the env also holds the board's variables
 * (raw eMMC, MTD: a board fw_env.config) nothing partial is ever written and the error names the
 * command that restores the board's defaults. docs/boot.md, "A damaged env".
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { type EnvStore } from '../bootcount/env-store.ts';
import { rescueSlot } from '../bootcount/bls.ts';
import { type FwEnvConfig, formatFwEnvConfig, parseFwEnvConfig } from '../bootcount/fw-env-config.ts';
import { type BootState, type EnvProblem, type Slot, BOOT_VARIABLES, INITIAL_STATE, SLOTS, decode, encode, findProblems, markerSlot, mergeInto, other, provedState } from '../bootcount/state.ts';
import { RELEASES_VARIABLE } from '../bootcount/release-gate.ts';
import { fsyncPath, writeFileAtomic } from '../_durable.ts';
import { readDeployment } from './deploy.ts';
import { appendJournal, readJournal } from './journal.ts';
import type { BootloaderKind, DeviceConfig, Sysroot } from './sysroot.ts';

/** ok: a valid env; repaired: it had no valid copy and this command rewrote it; corrupt: it has none and larch may not rewrite it. */
export type BootEnvHealth = 'ok' | 'repaired' | 'corrupt';

export interface BootRead {
  vars: Map<string, string>;
  state: BootState;
  /** larch variables that were missing or garbage (the safe default was used for them). */
  problems: EnvProblem[];
  env: BootEnvReport;
}

export interface BootEnvReport {
  health: BootEnvHealth;
  /** What was wrong, for status and the journal (null when ok). */
  message: string | null;
  /** The command that restores a board env (corrupt only). */
  hint: string | null;
}

/** The second file of the redundant U-Boot env on the boot partition (boot.cmd's larch_env_file2). */
export const UBOOT_ENV_FILE2 = 'uboot-redund.env';
/** The redundant U-Boot env's two files on the boot partition by default (boot.cmd's larch_env_file, larch_env_file2). */
export const UBOOT_ENV_FILES = ['uboot.env', UBOOT_ENV_FILE2] as const;
/** One copy of the U-Boot env on the boot partition (boot.cmd's larch_env_size). */
export const UBOOT_ENV_SIZE = 0x4000;
/** The LKG marker: when this file sits beside the env, B is the last known good slot by default. */
export const LKG_MARKER = 'larch-lkg-B';

/**
 * Where the LKG marker lives: the boot partition's root (U-Boot), beside grubenv (GRUB). On
 * systemd-boot the rescue entry is the marker (loader/entries/larch-rescue.conf, the slot it
 * boots): the store writes it with the entries, ordered as the marker is here (bls.ts planBlsWrite).
 */
export function lkgMarkerPath(sysroot: Sysroot, kind: BootloaderKind): string {
  if (kind === 'systemd-boot') return join(sysroot.envPath('systemd-boot'), 'larch-rescue.conf');
  return join(kind === 'uboot' ? sysroot.bootDir : dirname(sysroot.envPath('grub')), LKG_MARKER);
}

export async function readLkgMarker(sysroot: Sysroot, kind: BootloaderKind): Promise<Slot> {
  if (kind === 'systemd-boot') return rescueSlot((await sysroot.blsStore().snapshot()).files) ?? 'A';
  try {
    await readFile(lkgMarkerPath(sysroot, kind));
    return 'B';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'A';
    throw fromSystemError(err, 'read', lkgMarkerPath(sysroot, kind));
  }
}

/**
 * Makes the marker name `slot` (markerSlot() of the state an env write leaves), durably; before
 * that write when `slot` is good on both sides of it, else after it (changeBootState). So the
 * marker names a slot that is good in the env on the disk at every moment, whenever one is, and
 * never one about to be rewritten (stage() first writes the env that marks that slot bad).
 */
export async function writeLkgMarker(sysroot: Sysroot, kind: BootloaderKind, slot: Slot): Promise<void> {
  // systemd-boot: the rescue entry follows BOOT_LKG inside the store's write, in the same order.
  if (kind === 'systemd-boot') return;
  if ((await readLkgMarker(sysroot, kind)) === slot) return;
  const path = lkgMarkerPath(sysroot, kind);
  if (slot === 'B') return writeFileAtomic(path, '').then(() => failpoint('bootenv::after-lkg-marker-write'));
  try {
    await rm(path, { force: true });
    await fsyncPath(dirname(path));
  } catch (err) {
    throw fromSystemError(err, 'remove', path);
  }
  failpoint('bootenv::after-lkg-marker-write');
}

/**
 * Does larch own the whole env (so it may rewrite it with only its variables)? GRUB's grubenv and
 * U-Boot env files in the boot partition's root (S/boot/NAME, the layout boot.cmd reads with
 * larch_env=fat; their names are the board's, e.g. larch.env on a Raspberry Pi, whose U-Boot keeps
 * its own uboot.env there): yes; a board's raw or MTD env: no.
 */
export async function larchOwnsEnv(sysroot: Sysroot, config: Pick<DeviceConfig, 'bootloader'>): Promise<boolean> {
  if (config.bootloader === 'grub' || config.bootloader === 'systemd-boot') return true;
  const path = sysroot.fwEnvConfigPath();
  const text = await readFile(path, 'utf8').catch((err) => Promise.reject(fromSystemError(err, 'read fw_env.config', path)));
  return isLarchEnvConfig(parseFwEnvConfig(text, `'${path}'`), sysroot.bootDir);
}

/** Does this fw_env.config name larch's own env: files in the boot partition's root (bootDir/NAME, offset 0)? Pure. */
export function isLarchEnvConfig(config: FwEnvConfig, bootDir: string): boolean {
  const dir = resolve(bootDir);
  return config.devices.every((d) => dirname(resolve(d.path)) === dir && d.offset === 0);
}

/**
 * The fw_env.config larch writes for a U-Boot env on the boot partition: two files, one copy each
 * (a redundant env: a torn write leaves the other copy), as boot.cmd reads them. `bootDir` is the
 * boot partition as the device mounts it.
 */
export function fatEnvConfig(bootDir: string, files: readonly [string, string] = UBOOT_ENV_FILES): string {
  const device = (file: string) => ({ path: join(bootDir, file), offset: 0, envSizeBytes: UBOOT_ENV_SIZE, sectorSizeBytes: UBOOT_ENV_SIZE, sectors: 1, line: 0 });
  return `# larch: redundant U-Boot env in two files on the boot partition (board/uboot/fw_env.config.fat-file)\n${formatFwEnvConfig({ devices: files.map(device) })}`;
}

/**
 * Writes the initial boot state (A good and first) where the device keeps it, then the marker (A),
 * for `larch provision`: U-Boot with the board's fw_env.config text when given (copied as
 * S/boot/fw_env.config; the env is written where it says, `boardVars` and larch's state), else the
 * redundant env in two files on the boot partition (fatEnvConfig); GRUB: S/boot/grub/grubenv.
 */
export async function createBootEnv(sysroot: Sysroot, kind: BootloaderKind, boardFwEnvConfig: string | null = null, boardVars: Map<string, string> | null = null): Promise<void> {
  await mkdir(kind === 'grub' ? dirname(sysroot.envPath('grub')) : sysroot.bootDir, { recursive: true });
  // systemd-boot: loader/loader.conf (when absent), slot A's entry made from A/entry.conf, the rescue entry on A.
  if (kind === 'uboot') await writeFile(sysroot.fwEnvConfigPath(), boardFwEnvConfig ?? fatEnvConfig(sysroot.bootDir));
  const store = await sysroot.envStore(kind);
  // A board's own env keeps its variables (U-Boot boots a stored env instead of its built-in one),
  // not larch's from an earlier provisioning (a release floor there would pass over the new slot A).
  const kept = [...(boardVars ?? [])].filter(([name]) => !(BOOT_VARIABLES as readonly string[]).includes(name) && name !== RELEASES_VARIABLE);
  await store.init(new Map([...kept, ...encode(INITIAL_STATE)]), { force: true });
  await writeLkgMarker(sysroot, kind, markerSlot(INITIAL_STATE));
}

/** Is this error an env with no valid copy (or a grubenv that is not there)? */
function isDamagedEnv(err: unknown, kind: BootloaderKind): err is LarchError {
  return err instanceof LarchError && (err.code === 'ENV_CORRUPT' || (kind === 'grub' && err.code === 'NOT_FOUND'));
}

/**
 * What the agent can prove about a damaged env's state: a slot is good only when the journal's
 * last word on it is a mark-good (or provision) of the deployment it holds now; no slot gets tries
 * (an unconfirmed slot's count cannot be proved); the marker's slot is the last known good one; the
 * booted slot is first when it is good, else the last known good one. With nothing proved, no slot
 * is good and the bootloader boots the marker's slot in rescue: the slot its safe default boots,
 * without reviving a slot marked bad since (test/unit/bootcount/torn-env.property.test.ts).
 */
export async function reconstruct(sysroot: Sysroot, marker: Slot, booted: Slot | null): Promise<BootState> {
  const journal = await readJournal(sysroot.journalPath);
  const proved = new Set<Slot>();
  for (const slot of SLOTS) {
    const record = await readDeployment(sysroot, slot);
    const last = journal.filter((e) => e.slot === slot && ['mark-good', 'mark-bad', 'stage', 'provision', 'deploy'].includes(e.event)).at(-1);
    const forThisDeployment = record && last && (last.commit ? last.commit === record.commit : last.time >= record.deployedAt);
    if (forThisDeployment && (last.event === 'mark-good' || last.event === 'provision')) proved.add(slot);
  }
  return provedState(proved, marker, booted);
}

function describeState(s: BootState): string {
  const slot = (x: Slot) => `${x} ${s.slots[x].good ? 'good' : s.slots[x].triesLeft > 0 ? `unconfirmed with ${s.slots[x].triesLeft} tries` : 'not bootable'}`;
  return `order ${s.order.join(' ')}, ${slot('A')}, ${slot('B')}, last known good ${s.lastGood}${s.rescue ? ', rescue' : ''}`;
}

/** The command that writes a whole env onto a board's damaged storage: its defaults plus larch's last known good slot. */
function boardRestoreHint(sysroot: Sysroot, lastGood: Slot): string {
  const cfg = sysroot.fwEnvConfigPath();
  return `restore the board's default env with its defaults file (U-Boot's built-in env, e.g. /etc/u-boot-initial-env): 'fw_setenv -c ${cfg} -f /etc/u-boot-initial-env BOOT_LKG ${lastGood}' (libubootenv), or 'larch bootenv init --uboot ${cfg} --defaults /etc/u-boot-initial-env BOOT_LKG=${lastGood}'; larch never writes a partial env, which would make U-Boot drop the board's variables`;
}

/**
 * Opens the env and makes sure it can be read: a damaged env larch owns is rewritten with the
 * reconstructed state (journaled); a damaged board env is reported corrupt with the restore command.
 */
async function openBootEnv(sysroot: Sysroot, config: DeviceConfig): Promise<{ store: EnvStore; vars: Map<string, string> | null; report: BootEnvReport; marker: Slot }> {
  const store = await sysroot.envStore(config.bootloader);
  const marker = await readLkgMarker(sysroot, config.bootloader);
  let damage: LarchError;
  if (config.bootloader === 'systemd-boot') return { store, vars: await store.read(), report: await blsReport(sysroot), marker };
  try {
    return { store, vars: await store.read(), report: { health: 'ok', message: null, hint: null }, marker };
  } catch (err) {
    if (!isDamagedEnv(err, config.bootloader)) throw err;
    damage = err;
  }
  const state = await reconstruct(sysroot, marker, await bootedSlot(sysroot));
  if (!(await larchOwnsEnv(sysroot, config))) {
    const hint = boardRestoreHint(sysroot, state.lastGood);
    return { store, vars: null, report: { health: 'corrupt', message: `${damage.message}; the bootloader boots its safe default (slot ${state.lastGood} as good)`, hint }, marker };
  }
  const vars = new Map<string, string>(encode(state));
  try {
    await store.init(vars, { force: true });
  } catch (err) {
    // Storage that cannot be written (read-only, failing): still no reason to stop; say so.
    if (!(err instanceof LarchError)) throw err;
    const hint = `the env could not be rewritten (${err.message}); fix the storage, then any larch command that reads the env rewrites it`;
    return { store, vars: null, report: { health: 'corrupt', message: `${damage.message}; the bootloader boots its safe default (slot ${state.lastGood} as good)`, hint }, marker };
  }
  const message = `the boot env had no valid copy (${damage.message}); rewritten with the state larch can prove: ${describeState(state)}`;
  await appendJournal(sysroot.journalPath, { event: 'error', message, data: { boot_env: 'repaired', code: damage.code, state: Object.fromEntries(vars) } });
  return { store, vars, report: { health: 'repaired', message, hint: null }, marker };
}

/**
 * systemd-boot's entries never fail to read (what larch did not write reads as the safe default):
 * what was odd is said instead (status's boot_env_detail), with entries that are not larch's
 * (they may sort before larch's: systemd-boot boots the first), and on a real device a missing
 * EFI binary (the image builder installs it; larch's agent never does).
 */
async function blsReport(sysroot: Sysroot): Promise<BootEnvReport> {
  const { problems } = await sysroot.blsStore().snapshot();
  const said = [...problems];
  const dir = sysroot.envPath('systemd-boot');
  const foreign = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.conf') && !n.startsWith('larch-'));
  if (foreign.length > 0) said.push(`${dir} has entries that are not larch's (${foreign.join(', ')}): systemd-boot may boot them before larch's slots`);
  if (sysroot.realDevice) {
    const efi = ['BOOTX64.EFI', 'BOOTAA64.EFI'].map((f) => join(sysroot.bootDir, 'EFI', 'BOOT', f));
    if (!(await Promise.all(efi.map((f) => readFile(f).then(() => true, () => false)))).some(Boolean)) said.push(`no ${efi.join(' or ')}: the firmware finds no systemd-boot on this ESP`);
  }
  return { health: 'ok', message: said.length > 0 ? said.join('; ') : null, hint: said.length > 0 ? "larch's next boot-state write replaces what it did not write in its own entries; other entries and the EFI binary are the image's" : null };
}

export async function readBootState(sysroot: Sysroot, config: DeviceConfig): Promise<BootRead> {
  const { vars, report, marker } = await openBootEnv(sysroot, config);
  // A board env with no valid copy: what the bootloader does with it, the safe default.
  const read = vars ?? new Map<string, string>();
  return { vars: read, state: decode(read, { lkgMarker: marker }), problems: findProblems(read), env: report };
}

/**
 * Changes the boot state in one locked read-modify-write of the env (all larch variables at
 * once, every other variable kept), then moves the LKG marker to the new last known good slot.
 * `change` returns the new state, or null for no write. `extra`: other variables set (null:
 * removed) in the same write, e.g. the release floor's (release-floor.ts).
 * @throws ENV_CORRUPT for a damaged board env (with the restore command); IO saying what the env
 *         holds when the write failed after it may have taken effect
 */
export async function changeBootState(sysroot: Sysroot, config: DeviceConfig, change: (state: BootState) => BootState | null, extra?: ReadonlyMap<string, string | null>): Promise<BootState> {
  const { store, report, marker } = await openBootEnv(sysroot, config);
  if (report.health === 'corrupt') throw new LarchError('ENV_CORRUPT', `${report.message}; larch does not change it`, { data: { boot_env: 'corrupt' }, hint: report.hint! });
  let result: BootState | null = null;
  let wanted: Map<string, string> | null = null;
  try {
    await store.update(async (vars) => {
      const before = decode(vars, { lkgMarker: marker });
      const after = change(before);
      result = after ?? before;
      if (after === null) return;
      // A marker moving to a slot good before and after this write (away from a slot this write
      // marks bad or is about to rewrite) moves first; one moving to a slot this write confirms,
      // after it. A power cut in between then leaves it on a slot good in the env on the disk.
      const target = markerSlot(after);
      if (target !== marker && before.slots[target].good && after.slots[target].good) await writeLkgMarker(sysroot, config.bootloader, target);
      const merged = mergeInto(vars, after);
      for (const [k, v] of extra ?? []) {
        if (v === null) merged.delete(k);
        else merged.set(k, v);
      }
      wanted = merged;
      vars.clear();
      for (const [k, v] of merged) vars.set(k, v);
    });
  } catch (err) {
    if (wanted && err instanceof LarchError && err.code === 'IO') throw await afterFailedWrite(store, err, wanted, marker);
    throw err;
  }
  await writeLkgMarker(sysroot, config.bootloader, markerSlot((result as BootState | null)!));
  return result!;
}

/**
 * An I/O error during an env write (e.g. EIO from the fsync after the rename) may come after the
 * new env reached the disk. Read it back and say which state the device is in.
 */
async function afterFailedWrite(store: EnvStore, err: LarchError, wanted: Map<string, string>, marker: Slot): Promise<LarchError> {
  let now: Map<string, string> | null = null;
  try {
    now = await store.read();
  } catch {
    // Unreadable after the failure: said below.
  }
  const tookEffect = now !== null && [...encode(decode(wanted, { lkgMarker: marker }))].every(([k, v]) => now!.get(k) === v);
  const state = now === null ? null : decode(now, { lkgMarker: marker });
  const said = state === null ? 'the env cannot be read back now: the bootloader will use its safe default' : `the env now says: ${describeState(state)}`;
  return new LarchError('IO', `writing the boot env failed (${err.message}); the change ${tookEffect ? 'took effect anyway' : now === null ? 'may have taken effect' : 'did not take effect'}: ${said}`, {
    data: { ...err.data, took_effect: now === null ? null : tookEffect, boot_env_after: now === null ? null : Object.fromEntries(encode(state!)) },
    hint: "check the storage (dmesg); 'larch status' shows the state the device is in, and the command can be run again",
    cause: err,
  });
}

/** `larch.slot=A|B` from a kernel command line. */
export function slotFromCmdline(cmdline: string): Slot | null {
  const m = /(?:^|\s)larch\.slot=([AB])(?:\s|$)/.exec(cmdline);
  return m ? (m[1] as Slot) : null;
}

/** The kernel command line of the running system; tests of a booted device bind-mount over it. */
export const PROC_CMDLINE = '/proc/cmdline';

async function slotIn(path: string): Promise<Slot | null> {
  try {
    return slotFromCmdline(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, 'read', path);
  }
}

/** The slot named by /proc/cmdline: set only on a system booted through larch's boot script. */
export function realBootedSlot(): Promise<Slot | null> {
  return slotIn(PROC_CMDLINE);
}

/**
 * The slot that booted: /proc/cmdline's larch.slot= on a booted system, which always wins; else
 * the simulated command line `larch sim-boot` wrote (a sysroot that is a plain directory). A stale
 * simulation file (e.g. in an image made from a sysroot that once ran sim-boot) never overrides the
 * real one. Null when neither names a slot (not booted through larch).
 */
export async function bootedSlot(sysroot: Sysroot): Promise<Slot | null> {
  return (await realBootedSlot()) ?? (await slotIn(sysroot.simCmdlinePath));
}

/** What the last boot-check found; S/larch/last-boot.json. */
export interface LastBoot {
  time: string;
  slot: Slot;
  commit: string | null;
  version: string | null;
  fell_back: boolean;
  /** The slot the bootloader was asked to boot, when it booted another one. */
  from: Slot | null;
  rescue: boolean;
  healthy: boolean;
  outcome: string;
  reboot: boolean;
  failed_checks: string[];
}

export function lastBootPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, 'last-boot.json');
}

export async function writeLastBoot(sysroot: Sysroot, record: LastBoot): Promise<void> {
  await writeFileAtomic(lastBootPath(sysroot), JSON.stringify(record, null, 2) + '\n');
}

export async function readJsonFile<T>(path: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, 'read', path);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new LarchError('INVALID_INPUT', `${path}: not valid JSON`, { hint: 'remove the file; larch writes it again at the next boot-check or upgrade', data: { path } });
  }
}

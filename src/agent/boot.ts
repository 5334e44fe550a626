/**
 * The device's view of the boot state: read and change the bootloader variables in one locked
 * read-modify-write, learn which slot booted from the kernel command line, and remember what the
 * last boot-check found (S/larch/last-boot.json).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { type BootState, type EnvProblem, type Slot, decode, findProblems, mergeInto } from '../bootcount/state.ts';
import { writeFileAtomic } from '../store/_durable.ts';
import type { DeviceConfig, Sysroot } from './sysroot.ts';

export interface BootRead {
  vars: Map<string, string>;
  state: BootState;
  /** larch variables that were missing or garbage (the safe default was used for them). */
  problems: EnvProblem[];
}

export async function readBootState(sysroot: Sysroot, config: DeviceConfig): Promise<BootRead> {
  const store = await sysroot.envStore(config.bootloader);
  const vars = await store.read();
  return { vars, state: decode(vars), problems: findProblems(vars) };
}

/**
 * Changes the boot state in one locked read-modify-write of the env (all larch variables at
 * once, every other variable kept). `change` returns the new state, or null for no write.
 */
export async function changeBootState(sysroot: Sysroot, config: DeviceConfig, change: (state: BootState) => BootState | null): Promise<BootState> {
  const store = await sysroot.envStore(config.bootloader);
  let result: BootState | null = null;
  await store.update((vars) => {
    const before = decode(vars);
    const after = change(before);
    result = after ?? before;
    if (after === null) return;
    const merged = mergeInto(vars, after);
    vars.clear();
    for (const [k, v] of merged) vars.set(k, v);
  });
  return result!;
}

/** `larch.slot=A|B` from a kernel command line. */
export function slotFromCmdline(cmdline: string): Slot | null {
  const m = /(?:^|\s)larch\.slot=([AB])(?:\s|$)/.exec(cmdline);
  return m ? (m[1] as Slot) : null;
}

/**
 * The slot that booted: the simulated command line of `larch sim-boot` when the sysroot has one,
 * else /proc/cmdline (a real device). Null when neither names a slot (not booted through larch).
 */
export async function bootedSlot(sysroot: Sysroot): Promise<Slot | null> {
  for (const path of [sysroot.simCmdlinePath, '/proc/cmdline']) {
    try {
      const slot = slotFromCmdline(await readFile(path, 'utf8'));
      if (slot) return slot;
      if (path === sysroot.simCmdlinePath) return null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, 'read', path);
    }
  }
  return null;
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
    throw new LarchError('INVALID_INPUT', `${path}: not valid JSON`, { hint: 'remove the file; larch writes it again at the next boot-check or upgrade' });
  }
}

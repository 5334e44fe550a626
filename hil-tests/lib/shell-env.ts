/**
 * The boot env of a board, read and written from the board's own shell: the `table` scenario on a
 * board whose env the harness cannot reach while it is off (a real board: the env is on its
 * flash). The writer and reader is the board's larch (`larch bootenv`, the code the agent writes
 * with), cross-checked with the board's own tools when the image has them (fw_printenv,
 * grub-editenv). The command lines are built here, pure; `ShellEnv` runs them.
 * docs/design/issue-19-real-boards.md §6, hil-tests/README.md ("table on a real board").
 */
import { isLarchEnvConfig } from '../../src/agent/boot.ts';
import { parseFwEnvConfig } from '../../src/bootcount/fw-env-config.ts';
import { RELEASES_VARIABLE } from '../../src/bootcount/release-gate.ts';
import { BOOT_VARIABLES } from '../../src/bootcount/state.ts';
import { LARCH, type Shell, larchJson } from './device.ts';

/** While it exists the initramfs skips boot-check (images/overlay/initramfs/usr/lib/larch/init; docs/boot.md). */
export const HOLD_FILE = '/sysroot/larch/hil-hold';
/** What the initramfs prints instead of boot-check's line while the hold file exists. */
export const HOLD_LINE = /^larch: init: hil-hold, boot-check skipped/m;

/** The sysroot as the booted board mounts it, and the larch it runs (tests pass their own). */
export interface BoardPaths {
  sysroot: string;
  larch: string;
}
const ON_THE_BOARD: BoardPaths = { sysroot: '/sysroot', larch: LARCH };

/** Where a board keeps its env, as its shell sees it. */
export interface EnvTarget {
  bootloader: 'uboot' | 'grub';
  paths: BoardPaths;
  /** The files or devices holding the copies, and where in them (U-Boot: fw_env.config's lines; GRUB: the grubenv file). */
  copies: { path: string; offset: number }[];
  /**
   * larch owns the whole env (grubenv; U-Boot env files in the boot partition's root): the
   * harness may replace it with the table's variables, delete or damage it. A board's own env
   * (raw eMMC, MTD) holds the board's variables too: only larch's variables are set there, and
   * the missing and corrupt cases are not run (U-Boot would fall back to its built-in env).
   */
  owned: boolean;
}

/** The target of a U-Boot board from its fw_env.config text (read on the board); GRUB's is fixed. Pure. */
export function envTarget(bootloader: 'uboot' | 'grub', fwEnvConfig?: string, paths: BoardPaths = ON_THE_BOARD): EnvTarget {
  if (bootloader === 'grub') return { bootloader, paths, copies: [{ path: grubenvPath(paths), offset: 0 }], owned: true };
  if (fwEnvConfig === undefined) throw new Error('hil: a U-Boot board needs its fw_env.config to find the env');
  const config = parseFwEnvConfig(fwEnvConfig, fwEnvConfigPath(paths));
  return { bootloader, paths, copies: config.devices.map((d) => ({ path: d.path, offset: d.offset })), owned: isLarchEnvConfig(config, `${paths.sysroot}/boot`) };
}

const fwEnvConfigPath = (p: BoardPaths) => `${p.sysroot}/boot/fw_env.config`;
const grubenvPath = (p: BoardPaths) => `${p.sysroot}/boot/grub/grubenv`;

/** A word for sh: single-quoted. Pure. */
export function shQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** larch bootenv's options for the target; the lock is the agent's own (Sysroot.lockPath): /var/lock may not exist on a board's tree. */
function storeArgs(t: EnvTarget): string {
  const store = t.bootloader === 'grub' ? `--grub ${shQuote(grubenvPath(t.paths))}` : `--uboot ${shQuote(fwEnvConfigPath(t.paths))}`;
  return `${store} --lock ${shQuote(`${t.paths.sysroot}/larch/env.lock`)}`;
}

/**
 * The command line that leaves the board's env as a case of board/boot-cases.json says, then
 * syncs: `env` as the whole env (or, on a board's own env, as larch's variables with the board's
 * kept), `missing` (the files deleted), `corrupt` (written, then every copy's CRC, or GRUB's
 * signature line, overwritten: each reads as no env). Pure.
 */
export function writeEnvCommand(t: EnvTarget, env: Record<string, string> | 'missing' | 'corrupt'): string {
  const assign = (vars: Record<string, string>) => Object.entries(vars).map(([k, v]) => shQuote(`${k}=${v}`)).join(' ');
  if (!t.owned) {
    if (typeof env === 'string') throw new Error(`hil: the ${env} env is not written on a board's own env storage (${t.copies.map((c) => c.path).join(', ')}): U-Boot would boot its built-in env`);
    const others = [...BOOT_VARIABLES, RELEASES_VARIABLE].filter((k) => !(k in env));
    return `${t.paths.larch} bootenv set ${storeArgs(t)} ${assign(env)} && ${t.paths.larch} bootenv unset ${storeArgs(t)} ${others.join(' ')} && sync`;
  }
  if (env === 'missing') return `rm -f ${t.copies.map((c) => shQuote(c.path)).join(' ')} && sync`;
  const init = `${t.paths.larch} bootenv init ${storeArgs(t)} --force ${assign(env === 'corrupt' ? { BOOT_ORDER: 'B A' } : env)}`;
  if (env !== 'corrupt') return `${init} && sync`;
  // U-Boot: the CRC is a copy's first 4 bytes; GRUB: byte 2 is in "# GRUB Environment Block".
  const [bytes, at] = t.bootloader === 'grub' ? ['X', 2] : ['XXXX', 0];
  const damage = t.copies.map((c) => `printf ${bytes} | dd of=${shQuote(c.path)} bs=1 seek=${c.offset + at} conv=notrunc 2>/dev/null`).join(' && ');
  return `${init} && ${damage} && sync`;
}

/** The board's own tool that lists the env, when the image has it (a libubootenv-tool or grub-common image); it fails on no env. Pure. */
export function nativeListCommand(t: EnvTarget): { tool: string; command: string } {
  // grub-editenv creates a missing grubenv as it lists it: a missing env must stay missing.
  const grubenv = shQuote(grubenvPath(t.paths));
  return t.bootloader === 'grub' ? { tool: 'grub-editenv', command: `test -e ${grubenv} && grub-editenv ${grubenv} list` } : { tool: 'fw_printenv', command: `fw_printenv -c ${shQuote(fwEnvConfigPath(t.paths))}` };
}

/** NAME=VALUE lines (fw_printenv, grub-editenv list) as variables. Pure. */
export function parseEnvLines(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && /^[A-Za-z_][A-Za-z0-9_]*$/.test(line.slice(0, eq))) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

/** Reads and writes the env of the board this shell runs on. */
export class ShellEnv {
  private constructor(
    private readonly shell: Shell,
    readonly target: EnvTarget,
  ) {}

  /** Finds where the booted board keeps its env (its fw_env.config, read on the board). */
  static async open(shell: Shell, bootloader: 'uboot' | 'grub'): Promise<ShellEnv> {
    const config = bootloader === 'uboot' ? await shell.ok(`cat ${fwEnvConfigPath(ON_THE_BOARD)}`) : undefined;
    return new ShellEnv(shell, envTarget(bootloader, config));
  }

  async write(env: Record<string, string> | 'missing' | 'corrupt'): Promise<void> {
    await this.shell.ok(writeEnvCommand(this.target, env));
  }

  /** The env's variables; null when it has no valid copy (what the bootloader reads as no env). */
  async read(): Promise<Map<string, string> | null> {
    const r = await larchJson<{ vars: Record<string, string> }>(this.shell, `bootenv list ${storeArgs(this.target)}`);
    // 13 ENV_CORRUPT: no valid copy; 3 NOT_FOUND: no env file (grubenv, U-Boot env files).
    if (r.code === 13 || r.code === 3) return null;
    if (r.code !== 0 || !r.json) throw new Error(`hil: larch bootenv list on the board exited ${r.code}:\n${r.out.slice(-1500)}`);
    return new Map(Object.entries(r.json.vars));
  }

  /**
   * The env as the board's own tool lists it, or null when the image does not have the tool (the
   * demo images carry busybox and larch; CI cross-checks larch bootenv with both tools).
   */
  async readNative(): Promise<{ tool: string; vars: Map<string, string> | null } | null> {
    const { tool, command } = nativeListCommand(this.target);
    if ((await this.shell.run(`command -v ${tool} >/dev/null`)).code !== 0) return null;
    const r = await this.shell.run(command);
    return { tool, vars: r.code === 0 ? parseEnvLines(r.out) : null };
  }
}

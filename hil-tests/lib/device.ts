/**
 * Talking to larch on a booted board through its serial console: follow a boot (the bootloader's
 * `larch: slot=X rescue=R wrote=W` lines, `larch: systemd-boot: slot=...` on UEFI, panics, the init's `larch: boot-check: {json}`), then
 * run shell commands framed by markers so their output and exit code can be cut out of the
 * console stream. Works the same on QEMU and on a real board.
 */
import type { Board } from './board.ts';

export interface BootLine {
  slot: 'A' | 'B';
  rescue: boolean;
  wrote: boolean;
}

export interface BootCheck {
  slot: 'A' | 'B';
  commit: string | null;
  version: string | null;
  healthy: boolean;
  outcome: string;
  reboot: boolean;
  fell_back: boolean;
  from: string | null;
  rescue: boolean;
  failed_checks: string[];
  /** The version of the agent that ran this boot-check (absent from agents before it). */
  agent_version?: string;
}

export interface BootResult {
  /** Every bootloader run seen, in order (more than one when boots failed and the board reset). */
  boots: BootLine[];
  /** Kernel panics seen on the way. */
  panics: number;
  /** boot-check results that asked for a reboot on the way (unhealthy tries). */
  retries: BootCheck[];
  check: BootCheck;
  /** From the start of the wait (power on or reboot command) to the boot-check line. */
  seconds: number;
}

/** The bootloader's line: U-Boot's and GRUB's scripts print it; on systemd-boot the initramfs does, from what systemd-boot told it (images/overlay/initramfs/usr/lib/larch/init). */
export const BOOTLOADER_LINE = /^larch: (?:systemd-boot: )?slot=([AB]) rescue=([01]) wrote=([01])\n/m;
const PANIC_LINE = /Kernel panic - not syncing/;
const BOOT_CHECK_LINE = /^larch: boot-check: (.*)\n/m;
const SHELL_HANDOVER = /^larch: init: synced/m;
/** The init's own failures (images/overlay/initramfs/usr/lib/larch/init `fail`): it then runs a rescue shell, boot-check never comes. */
const INIT_FAILURE = /^larch: init: (?!slot [AB] mounted|agent |synced|boot-check asks)(.*)\n/m;

function formatBootLines(boots: BootLine[]): string {
  return boots.map((b) => `slot ${b.slot}${b.rescue ? ' (rescue)' : ''}${b.wrote ? ' +write' : ''}`).join(', ') || 'no bootloader line';
}

/** Parses the bootloader's console line (pure). */
export function parseBootLine(m: RegExpExecArray): BootLine {
  return { slot: m[1] as 'A' | 'B', rescue: m[2] === '1', wrote: m[3] === '1' };
}

/**
 * Follows boots (through panics and boot-check's reboots) until a boot-check that keeps the board
 * up, then waits for the init's shell hand-over. Output before the call is ignored only if the
 * caller skipped it (Console.skipAll) when it powered on or rebooted.
 */
export async function waitBoot(board: Board, opts: { timeoutMs?: number; started?: number; untilShell?: boolean } = {}): Promise<BootResult> {
  const started = opts.started ?? Date.now();
  const deadline = started + (opts.timeoutMs ?? 240_000);
  const boots: BootLine[] = [];
  let panics = 0;
  const retries: BootCheck[] = [];
  const any = new RegExp(`${BOOTLOADER_LINE.source}|${PANIC_LINE.source}|${BOOT_CHECK_LINE.source}|${INIT_FAILURE.source}`, 'm');
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`hil: no boot-check within ${((deadline - started) / 1000).toFixed(0)} s (${boots.length} bootloader runs, ${panics} panics); console:\n${board.console.tail(2500)}`);
    const m = await board.console.expect(any, left, 'boot progress (bootloader line, panic or boot-check)');
    if (m[1]) boots.push({ slot: m[1] as 'A' | 'B', rescue: m[2] === '1', wrote: m[3] === '1' });
    else if (m[5] !== undefined) {
      throw new Error(`hil: the board did not reach boot-check: the initramfs said "larch: init: ${m[5]}" after ${formatBootLines(boots)}; console:\n${board.console.tail(1500)}`);
    } else if (PANIC_LINE.test(m[0])) panics++;
    else if (m[4] !== undefined) {
      const check = parseBootCheck(m[4]);
      // boot-check asked for a reboot (unhealthy, unconfirmed): the init reboots; follow the next boot.
      if (check.reboot) {
        retries.push(check);
        continue;
      }
      const seconds = (Date.now() - started) / 1000;
      if (opts.untilShell !== false) await board.console.expect(SHELL_HANDOVER, 120_000, 'the init handing over after boot-check');
      return { boots, panics, retries, check, seconds };
    }
  }
}

/** The JSON the init prints after `larch: boot-check: ` (newlines were turned into spaces). */
export function parseBootCheck(text: string): BootCheck {
  const start = text.indexOf('{');
  const end = text.lastIndexOf('}');
  if (start < 0 || end < start) throw new Error(`hil: boot-check printed no JSON: ${text}`);
  return JSON.parse(text.slice(start, end + 1)) as BootCheck;
}

export interface ShellResult {
  code: number;
  out: string;
}

/** The commands on the board go through this (one at a time). */
export class Shell {
  private n = 0;
  constructor(private readonly board: Board) {}

  /** Waits until the shell answers (it may still be starting after the init's hand-over). */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const id = ++this.n;
      // '' splits the marker in the echoed input line, so only the shell's output matches.
      await this.board.console.send(`echo @@R${id}''@@`);
      try {
        await this.board.console.expect(new RegExp(`@@R${id}@@\n`), 2_000, 'a shell prompt');
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
      }
    }
  }

  /** Runs one shell command line; resolves with its exit code and output (stdout and stderr). */
  async run(command: string, timeoutMs = 120_000): Promise<ShellResult> {
    const id = ++this.n;
    await this.board.console.send(`echo @@B${id}''@@; ${command} 2>&1; echo @@E${id}''@@$?@@`);
    await this.board.console.expect(new RegExp(`@@B${id}@@\n`), 20_000, `the start of command ${id} (${command.slice(0, 80)})`);
    // The newline too, not `$` (which matches at the end of what has come so far): sent before the
    // marker's newline, the next command's echo lands in the middle of the marker's line. No `^`:
    // the tty echoes the next command before the shell prints its prompt, so the prompt ("# ")
    // can precede the start marker on its line (the echoed line itself has '' inside the marker).
    const end = await this.board.console.expect(new RegExp(`([^]*?)@@E${id}@@(\\d+)@@\n`), timeoutMs, `the end of command ${id} (${command.slice(0, 80)})`);
    return { code: Number(end[2]), out: end[1].replace(/^\n/, '').replace(/\n$/, '') };
  }

  /** Runs a command that must succeed. */
  async ok(command: string, timeoutMs?: number): Promise<string> {
    const r = await this.run(command, timeoutMs);
    if (r.code !== 0) throw new Error(`hil: on the board, '${command}' exited ${r.code}:\n${r.out}`);
    return r.out;
  }
}

/**
 * The larch binary the booted tree runs: its own agent (/usr/bin/larch), else the device's legacy
 * one (the sysroot is mounted at /sysroot; docs/boot.md, "Which agent runs boot-check").
 */
export const LARCH = '"$([ -x /usr/bin/larch ] && echo /usr/bin/larch || echo /sysroot/larch/bin/larch)"';

/** Runs `larch ARGS --json` on the board and parses the JSON it prints (the last {...} block). */
export async function larchJson<T = any>(shell: Shell, args: string, timeoutMs?: number): Promise<{ code: number; json: T | null; out: string }> {
  const r = await shell.run(`${LARCH} ${args} --json`, timeoutMs);
  return { code: r.code, json: lastJson(r.out) as T | null, out: r.out };
}

/** The JSON value larch printed (an object or an array; stray kernel lines may surround it). */
export function lastJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    /* stray lines around it: look for the last complete value */
  }
  const arrayEnd = text.lastIndexOf(']');
  if (arrayEnd > text.lastIndexOf('}')) {
    for (let start = text.lastIndexOf('[', arrayEnd); start >= 0; start = text.lastIndexOf('[', start - 1)) {
      try {
        return JSON.parse(text.slice(start, arrayEnd + 1));
      } catch {
        /* not yet the whole array */
      }
    }
  }
  for (let end = text.lastIndexOf('}'); end >= 0; end = text.lastIndexOf('}', end - 1)) {
    for (let start = text.lastIndexOf('{', end); start >= 0; start = text.lastIndexOf('{', start - 1)) {
      try {
        return JSON.parse(text.slice(start, end + 1));
      } catch {
        /* not yet the whole object */
      }
    }
  }
  return null;
}

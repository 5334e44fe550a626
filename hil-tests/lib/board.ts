/**
 * What a scenario needs from a board, whatever it is: power, a serial console, and how the board
 * reaches the update server. Two backends implement it: QEMU (qemu.ts) and a real board on a
 * serial line with a power switch (serial.ts). Scenarios are written once against this.
 */
import type { Console } from './console.ts';

export type Bootloader = 'grub' | 'uboot' | 'systemd-boot';

export interface Board {
  /** The board name of `larch image build --board` (or the real board's name from its config). */
  readonly name: string;
  readonly bootloader: Bootloader;
  readonly console: Console;
  /** Shell commands run on the console after each boot, before larch is used (network set-up). */
  readonly setupCommands: string[];
  /** Writes the disk image onto the board's storage; only while powered off. */
  flash(image: string): Promise<void>;
  /** Power on; the console is connected before the board runs, so no early output is lost. */
  powerOn(): Promise<void>;
  /** Cut the power at once (no shutdown): what a relay or a SIGKILL does. */
  powerOff(): Promise<void>;
  /** Whether the board is powered. */
  readonly powered: boolean;
  /**
   * The bootloader's env, read from the board's storage while it is off (null: this backend cannot).
   * Lets a scenario predict each boot with the in-process bootloaderChoose().
   */
  readBootEnv?(): Promise<Map<string, string> | null>;
  /** systemd-boot boards: larch's entries on the ESP (name -> text), read while the board is off, for blsChoose's prediction. */
  readBootEntries?(): Promise<Map<string, string>>;
  /** Replaces the bootloader's env on the board's storage while it is off ('missing', 'corrupt' as in board/boot-cases.json). */
  writeBootEnv?(env: Record<string, string> | 'missing' | 'corrupt'): Promise<void>;
  /** Powers off and releases everything (ports, processes). */
  close(): Promise<void>;
}

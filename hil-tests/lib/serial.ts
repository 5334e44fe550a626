/**
 * The real-board backend of Board: a serial device (USB-serial adapter on the board's console
 * UART) that stays open across power cycles, and shell commands that switch the power (a relay,
 * a USB hub port, a lab PDU) and write the disk image (an SD mux, a USB mass-storage gadget).
 * The env lives on the board's flash, so readBootEnv/writeBootEnv are not offered: scenarios check
 * boots against board/boot-cases.json from the console alone.
 */
import { spawnSync } from 'node:child_process';
import { SerialPort } from 'serialport';
import type { Board, Bootloader } from './board.ts';
import type { SerialBoardConfig } from './config.ts';
import { Console } from './console.ts';

function shell(command: string, what: string): void {
  const r = spawnSync('sh', ['-c', command], { encoding: 'utf8', timeout: 30 * 60_000 });
  if (r.status !== 0) throw new Error(`hil: ${what} command '${command}' exited ${r.status}: ${(r.stderr || r.stdout).slice(-1000)}`);
}

export class SerialBoard implements Board {
  readonly name: string;
  readonly bootloader: Bootloader;
  readonly console: Console;
  readonly setupCommands: string[];
  private port: SerialPort | null = null;
  private on = false;

  /** `bootloader`: the board profile's. */
  constructor(private readonly config: SerialBoardConfig, bootloader: Bootloader, logPath: string) {
    this.name = config.name;
    this.bootloader = bootloader;
    this.setupCommands = config.setup;
    this.console = new Console(logPath);
  }

  get powered(): boolean {
    return this.on;
  }

  private async open(): Promise<void> {
    if (this.port) return;
    const port = new SerialPort({ path: this.config.serial.device, baudRate: this.config.serial.baud, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((e) => (e ? reject(new Error(`hil: cannot open ${this.config.serial.device}: ${e.message} (serial.device in the board config)`)) : resolve())));
    port.on('data', (d: Buffer) => this.console.push(d));
    port.on('error', (e) => this.console.note(`serial error: ${e.message}`));
    this.port = port;
    this.console.attach((data) => new Promise((resolve, reject) => port.write(Buffer.from(data, 'latin1'), (e) => (e ? reject(e) : port.drain(() => resolve())))));
  }

  async flash(image: string): Promise<void> {
    if (this.on) throw new Error('hil: flash while the board is powered');
    this.console.note(`flashing ${image}`);
    shell(this.config.flash.replaceAll('{image}', image), 'flash');
  }

  async powerOn(): Promise<void> {
    await this.open(); // before the power: the bootloader's first lines must not be lost
    this.console.note('power on');
    shell(this.config.power.on, 'power on');
    this.on = true;
  }

  async powerOff(): Promise<void> {
    this.console.note('power cut');
    shell(this.config.power.off, 'power off');
    this.on = false;
    this.console.abort('the board was powered off');
    // Capacitors and the board's supervisor: a too short cut is not a cut.
    await new Promise((r) => setTimeout(r, this.config.power.settleMs));
  }

  async close(): Promise<void> {
    await this.powerOff();
    const port = this.port;
    this.port = null;
    this.console.attach(null);
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }
}

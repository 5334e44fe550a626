/**
 * The board's serial console as the scenarios see it: everything received is appended to a log
 * file (raw, as the board sent it) and to a cleaned transcript (ANSI escapes and \r removed: GRUB
 * and U-Boot send clear-screen sequences and `\r\r\n` line ends through a pty), which `expect`
 * searches from a cursor, so an old match is never found twice. Transport-free: a backend feeds
 * bytes in with `push` and gives a `write` function.
 */
import { appendFileSync, writeFileSync } from 'node:fs';

/**
 * Removes terminal escape sequences and carriage returns (pure). A screen clear (ESC [ J) becomes
 * a line break: what follows starts a line, even after the unfinished line of a board that lost
 * power (bytes of the old boot the serial adapter delivers late; GRUB clears the screen first).
 */
export function cleanConsole(raw: string): string {
  return raw
    .replace(/\x1b\[[0-9;?]*J/g, '\n')
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]/g, '')
    .replace(/\x1b[=>78cDEHM]/g, '')
    .replace(/\r/g, '')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

export class ConsoleTimeout extends Error {
  constructor(what: string, ms: number, tail: string) {
    super(`console: no ${what} within ${(ms / 1000).toFixed(0)} s; last console output:\n${tail}`);
  }
}

interface Waiter {
  pattern: RegExp;
  resolve: (m: RegExpExecArray) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class Console {
  private text = '';
  /** Where the next expect starts searching. */
  private cursor = 0;
  /** Raw bytes may end inside an escape sequence: clean only complete lines plus a safe tail. */
  private pending = '';
  private waiters: Waiter[] = [];
  private writer: ((data: string) => Promise<void>) | null = null;
  private readonly started = Date.now();

  constructor(readonly logPath: string) {
    writeFileSync(logPath, '');
  }

  /** The backend's output side (null while the board is off or the port is closed). */
  attach(writer: ((data: string) => Promise<void>) | null): void {
    this.writer = writer;
  }

  /** Bytes from the board. */
  push(data: Buffer | string): void {
    const s = typeof data === 'string' ? data : data.toString('latin1');
    appendFileSync(this.logPath, s, 'latin1');
    this.pending += s;
    // Keep an unterminated escape sequence for the next chunk.
    const esc = this.pending.lastIndexOf('\x1b');
    let cut = this.pending.length;
    if (esc >= 0 && this.pending.length - esc < 16 && !/[A-Za-z]/.test(this.pending.slice(esc + 2))) cut = esc;
    this.text += cleanConsole(this.pending.slice(0, cut));
    this.pending = this.pending.slice(cut);
    this.check();
  }

  /** A line of the harness's own in the log (power events, commands), so the log tells the whole story. */
  note(message: string): void {
    const line = `\n[hil ${((Date.now() - this.started) / 1000).toFixed(1)}s] ${message}\n`;
    appendFileSync(this.logPath, line);
  }

  /** Forget output seen so far: the next expect only sees what arrives from now on. */
  skipAll(): void {
    // New output starts a line: a boot after a power cut must not join the old shell prompt ("/ # larch: slot=...").
    if (this.text && !this.text.endsWith('\n')) this.text += '\n';
    this.cursor = this.text.length;
  }

  /** Waits for `pattern` in output after the cursor; the cursor moves past the match. */
  expect(pattern: RegExp, timeoutMs: number, what = String(pattern)): Promise<RegExpExecArray> {
    const found = this.match(pattern);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pattern,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new ConsoleTimeout(what, timeoutMs, this.tail(2500)));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Fails every pending expect (the board lost power, the backend died). */
  abort(reason: string): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      clearTimeout(w.timer);
      w.reject(new Error(`${reason}; last console output:\n${this.tail(2500)}`));
    }
  }

  /** Sends one line (the line end is added: \r suits both U-Boot and a Linux tty). */
  async send(line: string): Promise<void> {
    if (!this.writer) throw new Error('console: the board is not powered (no serial connection to send on)');
    await this.writer(`${line}\r`);
  }

  tail(chars: number): string {
    return this.text.slice(-chars);
  }

  private match(pattern: RegExp): RegExpExecArray | null {
    const re = new RegExp(pattern.source, pattern.flags.replace('g', '') + 'g');
    re.lastIndex = this.cursor;
    const m = re.exec(this.text);
    if (!m) return null;
    this.cursor = m.index + m[0].length;
    return m;
  }

  private check(): void {
    for (const w of [...this.waiters]) {
      const m = this.match(w.pattern);
      if (m) {
        clearTimeout(w.timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve(m);
      }
    }
  }
}

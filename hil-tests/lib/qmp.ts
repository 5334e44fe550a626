/**
 * A minimal QMP client (QEMU's JSON control socket): capabilities handshake, one command at a
 * time, events ignored. Used to start a board that QEMU holds paused (-S) once its console is open.
 */
import { type Socket, createConnection } from 'node:net';

export class Qmp {
  private buffer = '';
  private waiting: { resolve: (v: unknown) => void; reject: (e: Error) => void } | null = null;
  private greeted: Promise<void>;

  private constructor(private readonly socket: Socket) {
    let greet: () => void;
    this.greeted = new Promise((r) => (greet = r));
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('QMP' in msg) greet!();
        else if ('return' in msg || 'error' in msg) {
          const w = this.waiting;
          this.waiting = null;
          if (!w) continue;
          if ('error' in msg) w.reject(new Error(`QMP error: ${JSON.stringify(msg.error)}`));
          else w.resolve(msg.return);
        }
      }
    });
    const fail = (e: Error) => this.waiting?.reject(e);
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('QMP socket closed')));
  }

  /** Connects, retrying while QEMU has not yet created the socket. */
  static async connect(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.greeted;
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`QMP: cannot connect to ${path}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.waiting) throw new Error('QMP: one command at a time');
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

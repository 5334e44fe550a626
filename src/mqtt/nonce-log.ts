/**
 * The device's log of command nonces it has accepted, persisted in the sysroot
 * (S/larch/mqtt/nonces.json, written atomically) so that a command replayed after a restart
 * is still refused. A nonce is kept until its command expires: after that the command is
 * refused as stale anyway, so the log stays as small as the commands of the last
 * MAX_COMMAND_WINDOW_S.
 *
 *   {"format": 1, "nonces": {NONCE: EXPIRES_SECONDS, ...}}
 */
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fromSystemError } from '../errors.ts';
import { writeFileAtomic } from '../_durable.ts';

/** Most nonces kept; beyond it the soonest-expiring go first (a flood of signed commands only). */
const MAX_NONCES = 10_000;

export class NonceLog {
  private constructor(
    readonly path: string,
    private nonces: Map<string, number>,
  ) {}

  static async open(path: string): Promise<NonceLog> {
    let nonces = new Map<string, number>();
    try {
      // Any JSON may be there: `null` threw a TypeError that ended the daemon (found by fuzzing).
      const parsed = JSON.parse(await readFile(path, 'utf8')) as { nonces?: Record<string, number> } | null;
      nonces = new Map(Object.entries(parsed?.nonces ?? {}).filter(([, v]) => typeof v === 'number'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A missing log is a new device. A corrupt one (writes are atomic, so a disk fault) starts
      // afresh: only commands still inside their window could run again. EACCES, EIO and the
      // like are errors: they must not silently re-open the replay window.
      if (code !== 'ENOENT' && !(err instanceof SyntaxError)) throw fromSystemError(err, 'read nonce log', path);
    }
    return new NonceLog(path, nonces);
  }

  has(nonce: string): boolean {
    return this.nonces.has(nonce);
  }

  /** Records a nonce durably (before its command runs, so a crash mid-command cannot re-open it). */
  async add(nonce: string, expires: number, now: number): Promise<void> {
    for (const [n, e] of this.nonces) if (e <= now) this.nonces.delete(n);
    this.nonces.set(nonce, expires);
    if (this.nonces.size > MAX_NONCES) {
      const sorted = [...this.nonces].sort((a, b) => a[1] - b[1]);
      this.nonces = new Map(sorted.slice(sorted.length - MAX_NONCES));
    }
    await mkdir(dirname(this.path), { recursive: true });
    await writeFileAtomic(this.path, JSON.stringify({ format: 1, nonces: Object.fromEntries(this.nonces) }) + '\n');
  }
}

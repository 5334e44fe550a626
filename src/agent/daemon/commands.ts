/**
 * Signed commands on larch/v1/device/ID/cmd: whether one may run (signed by a trusted key, for
 * this device, fresh, never seen before) and, when not, the refusal to report; which command may
 * end a transfer in progress; how many refusals reach the journal. Running an accepted command
 * is the daemon's (daemon.ts). docs/formats.md §13.
 */
import { type DeviceCommand, commandFreshness, openSigned, parseCommand } from '../../mqtt/format.ts';

/**
 * Refused commands journaled per minute at most: anyone who can publish to the broker can send
 * refusals (unsigned, replayed), and each journal entry is an fsync'd write to flash. The rest
 * are counted and the count goes into the next refusal journaled.
 */
export const REFUSALS_JOURNALED_PER_MINUTE = 10;

export interface CommandCheck {
  /** The command role's keys (trust-store.ts). */
  trusted: Uint8Array[];
  /** Valid signatures by distinct command-role keys needed; 1 when absent. */
  threshold?: number;
  deviceId: string;
  clockSkewS: number;
  /** Whether a nonce was used already (the nonce log). */
  used(nonce: string): boolean;
  /** Unix seconds. */
  nowS: number;
}

export type Vetted =
  | { ok: true; command: DeviceCommand; signedBy: string[] }
  | { ok: false; nonce: string | null; cmd: string | null; reason: string; message: string; data: Record<string, unknown> };

/** Opens and checks a command message: the command to run, or the refusal with its reason and message. */
export async function vetCommand(payload: Uint8Array, k: CommandCheck): Promise<Vetted> {
  const opened = await openSigned('command', payload, k.trusted);
  const peek = opened.body as { nonce?: unknown; cmd?: unknown } | undefined;
  // Untrusted text: truncated before it reaches a log, the journal or the result topic.
  const nonce = typeof peek?.nonce === 'string' ? peek.nonce.slice(0, 64) : null;
  const name = typeof peek?.cmd === 'string' ? peek.cmd.slice(0, 32) : null;
  const refuse = (reason: string, message: string, data: Record<string, unknown> = {}): Vetted => ({ ok: false, nonce, cmd: name, reason, message, data });
  if (!opened.ok) return refuse(opened.reason, `refused command${name ? ` '${name}'` : ''}: ${describeRefusal(opened.reason)}`, opened.keys ? { keys: opened.keys } : {});
  let c: DeviceCommand;
  try {
    c = parseCommand(opened.body);
  } catch (err) {
    return refuse('malformed', `refused a malformed command: ${(err as Error).message}`);
  }
  const threshold = k.threshold ?? 1;
  if (new Set(opened.signedBy).size < threshold) return refuse('threshold', `refused command '${c.cmd}': signed by ${new Set(opened.signedBy).size} command-role key(s), the trust document needs ${threshold}`, { keys: opened.signedBy, threshold });
  if (c.device !== k.deviceId) return refuse('wrong-device', `refused command '${c.cmd}': it is for device '${c.device}'`);
  const fresh = commandFreshness(c, k.nowS, k.clockSkewS);
  if (fresh !== 'fresh') {
    const why = fresh === 'stale' ? `expired at ${new Date(c.expires * 1000).toISOString()}` : fresh === 'not-yet-valid' ? `issued in the future (${new Date(c.issued * 1000).toISOString()}); check the clocks` : 'valid for longer than allowed';
    return refuse(fresh, `refused command '${c.cmd}': ${why}`, { issued: c.issued, expires: c.expires, now: k.nowS });
  }
  if (k.used(c.nonce)) return refuse('replayed', `refused command '${c.cmd}': nonce ${c.nonce} was already used (a replay)`);
  return { ok: true, command: c, signedBy: opened.signedBy };
}

/**
 * The rollback or cancel command that may end the transfer the work queue is busy with: signed,
 * for this device, fresh and unused. Anything else waits its turn in the queue (and is refused
 * there when it must be).
 */
export async function preemptingCommand(payload: Uint8Array, k: CommandCheck): Promise<DeviceCommand | null> {
  const v = await vetCommand(payload, k);
  return v.ok && (v.command.cmd === 'rollback' || v.command.cmd === 'cancel') ? v.command : null;
}

/** Whether each refusal is journaled: at most REFUSALS_JOURNALED_PER_MINUTE a minute, the others counted. */
export class RefusalLimiter {
  private windowStartMs = 0;
  private journaled = 0;
  private suppressed = 0;

  /** True when this refusal is journaled; then `data.suppressed` says how many were not since the last one. */
  admit(data: Record<string, unknown>, nowMs: number): boolean {
    if (nowMs - this.windowStartMs >= 60_000) {
      this.windowStartMs = nowMs;
      this.journaled = 0;
    }
    if (this.journaled >= REFUSALS_JOURNALED_PER_MINUTE) {
      this.suppressed++;
      return false;
    }
    this.journaled++;
    if (this.suppressed > 0) data.suppressed = this.suppressed;
    this.suppressed = 0;
    return true;
  }
}

function describeRefusal(reason: string): string {
  return (
    {
      unsigned: 'it is not signed',
      untrusted: 'it is not signed by a trusted key',
      invalid: 'its signature does not verify (tampered, or signed as another kind of message)',
      malformed: 'it is not a signed larch message',
      'too-large': 'it is larger than any command',
    } as Record<string, string>
  )[reason] ?? reason;
}

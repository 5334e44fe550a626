/**
 * FleetLock client (Zincati's reboot coordination protocol, served by Airlock, FLUO or poseidon's
 * fleetlock): a counting semaphore on an HTTP server so that at most N devices of a group
 * reboot at once. Two operations, each a POST with the header `fleet-lock-protocol: true` and
 * the body `{"client_params": {"id": ID, "group": GROUP}}`:
 *
 *   BASE/v1/pre-reboot     take (or keep) a slot before rebooting (RecursiveLock)
 *   BASE/v1/steady-state   give the slot back after a healthy boot (UnlockIfHeld)
 *
 * 200 means done; anything else (a JSON `{"kind", "value"}` error, another status, no answer)
 * means not now: the caller retries with backoff. Both operations are idempotent on the server,
 * so retrying after a lost answer is safe. docs/formats.md §14.2.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export type FleetLockOp = 'pre-reboot' | 'steady-state';

export interface FleetLockAnswer {
  ok: boolean;
  /** HTTP status, or null when no answer came. */
  status: number | null;
  /** Why not, for the log and the status: the server's kind/value, or the network error. */
  reason: string;
}

/** Group names as Zincati accepts them. */
export const FLEET_LOCK_GROUP = /^[a-zA-Z0-9.-]+$/;
const TIMEOUT_MS = 30_000;
const MAX_BODY = 16 * 1024;

export function fleetLockUrl(base: string, op: FleetLockOp): string {
  return `${base.replace(/\/+$/, '')}/v1/${op}`;
}

/** One request; never throws (every failure is a "not now"). */
export function fleetLockRequest(base: string, op: FleetLockOp, id: string, group: string, timeoutMs = TIMEOUT_MS): Promise<FleetLockAnswer> {
  const url = new URL(fleetLockUrl(base, op));
  const body = JSON.stringify({ client_params: { id, group } });
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    // agent false: one connection per request; they are minutes apart, and a kept-alive socket the server dropped meanwhile would fail the next one.
    const req = request(url, { method: 'POST', agent: false, headers: { 'fleet-lock-protocol': 'true', 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (text.length < MAX_BODY) text += d;
      });
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        if (status === 200) return resolve({ ok: true, status, reason: 'ok' });
        let reason = `HTTP ${status}`;
        try {
          const e = JSON.parse(text) as { kind?: unknown; value?: unknown };
          if (typeof e.kind === 'string') reason += ` ${e.kind}${typeof e.value === 'string' ? `: ${e.value.slice(0, 200)}` : ''}`;
        } catch {
          // not a FleetLock error body: the status says enough
        }
        resolve({ ok: false, status, reason });
      });
      res.on('error', (err) => resolve({ ok: false, status: res.statusCode ?? null, reason: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, status: null, reason: err.code ?? err.message }));
    req.end(body);
  });
}

export interface RetryOptions {
  /** Longest wait between attempts (seconds); waits start at 1 s and double up to it, ±20%. */
  maxDelayS: number;
  signal: AbortSignal;
  /** Checked before each attempt: true ends the wait (false is returned). */
  giveUp?: () => Promise<boolean>;
  /** Called after each refused attempt (for the log and the status). */
  onRetry?: (answer: FleetLockAnswer, attempt: number, delayMs: number) => void;
  random?: () => number;
  timeoutMs?: number;
}

/** Repeats the operation until the server says 200 (true) or the signal aborts (false). */
export async function fleetLockUntilOk(base: string, op: FleetLockOp, id: string, group: string, o: RetryOptions): Promise<boolean> {
  const random = o.random ?? Math.random;
  let delayMs = Math.min(1000, o.maxDelayS * 1000);
  for (let attempt = 1; !o.signal.aborted; attempt++) {
    if (await o.giveUp?.()) return false;
    const a = await fleetLockRequest(base, op, id, group, o.timeoutMs);
    if (o.signal.aborted) return false;
    if (a.ok) return true;
    const wait = Math.round(delayMs * (0.8 + 0.4 * random()));
    o.onRetry?.(a, attempt, wait);
    await abortableSleep(wait, o.signal);
    delayMs = Math.min(delayMs * 2, o.maxDelayS * 1000);
  }
  return false;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}

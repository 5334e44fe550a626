/**
 * Trying an announced update again after it failed (a download cut short, a busy or unreachable
 * server, a full disk): after retry_interval_s, doubling up to retry_max_s, each wait between half
 * and all of that (policy.ts's retryDelayMs), so a fleet that failed together does not come back
 * together. One pending retry at a time: a newer announcement replaces it.
 */
import { type DaemonConfig, retryDelayMs } from '../policy.ts';

export class RetrySchedule {
  /** Failed attempts at the current announcement. */
  failures = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly config: Pick<DaemonConfig, 'retryIntervalS' | 'retryMaxS'>,
    private readonly random: () => number,
  ) {}

  /** Counts a failure and runs `again` after the next wait; null (nothing scheduled) when retries are off. */
  fail(again: () => void, nowMs: number): { at: Date; failures: number; ms: number } | null {
    this.failures++;
    const ms = retryDelayMs(this.failures, this.config, this.random());
    if (ms === null) return null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      again();
    }, ms);
    return { at: new Date(nowMs + ms), failures: this.failures, ms };
  }

  /** Forgets the failures and cancels the pending retry (success, a newer announcement, a stop). */
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.failures = 0;
  }
}

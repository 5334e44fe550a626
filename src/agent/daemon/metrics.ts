/**
 * What `larch daemon` exposes on /metrics (docs/formats.md §14.1): a snapshot of the daemon and
 * the device status in, metric families out (pure), plus a tally of the journal read
 * incrementally. Downloads and rollbacks are counted from the journal rather than by the
 * daemon, so they include what the CLI and boot-check did (a fallback happens before the daemon
 * runs) and survive daemon restarts; a replaced (rotated) journal restarts the count, which
 * Prometheus treats as a counter reset.
 */
import { open, stat } from 'node:fs/promises';
import type { MetricFamily } from '../metrics.ts';
import type { Status } from '../status.ts';

export const UPDATE_STATES = ['idle', 'waiting-rollout', 'checking', 'up-to-date', 'available', 'downloading', 'downloaded', 'staged', 'rebooting', 'error'] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];
export const UPDATE_RESULTS = ['staged', 'downloaded', 'no-update', 'pinned', 'error'] as const;
export type UpdateResult = (typeof UPDATE_RESULTS)[number];

export interface MetricsSnapshot {
  status: Status;
  state: UpdateState;
  rebootWait: 'window' | 'lock' | null;
  /** The announced update failed and is tried again: failures so far and when (Unix seconds). */
  retry: { failures: number; atS: number } | null;
  /** Unix seconds of the last completed check, null before the first. */
  lastCheckS: number | null;
  updates: Record<UpdateResult, number>;
  journal: JournalTally;
  /** null: no broker configured. */
  mqttConnected: boolean | null;
}

export function daemonMetrics(s: MetricsSnapshot): MetricFamily[] {
  const b = s.status.booted;
  const slots = Object.entries(s.status.boot.slots);
  return [
    { name: 'larch_info', type: 'gauge', help: 'The booted deployment (value 1).', samples: [{ labels: { version: b?.version ?? '', commit: b?.commit ?? '', slot: b?.slot ?? '', ref: s.status.ref }, value: 1 }] },
    { name: 'larch_update_state', type: 'gauge', help: "The daemon's update state: 1 for the current one, 0 for the others.", samples: UPDATE_STATES.map((state) => ({ labels: { state }, value: state === s.state ? 1 : 0 })) },
    { name: 'larch_reboot_waiting', type: 'gauge', help: 'A staged update waits to reboot for a window or a FleetLock slot (1), or not (0).', samples: (['window', 'lock'] as const).map((reason) => ({ labels: { reason }, value: s.rebootWait === reason ? 1 : 0 })) },
    { name: 'larch_pending', type: 'gauge', help: 'An update is staged for the next boot (1) or not (0).', samples: [{ value: s.status.pending ? 1 : 0 }] },
    { name: 'larch_update_retry_failures', type: 'gauge', help: 'Failed attempts at the announced update that is to be tried again (0: none waits).', samples: [{ value: s.retry?.failures ?? 0 }] },
    { name: 'larch_update_retry_timestamp_seconds', type: 'gauge', help: 'When that update is tried again (Unix time; 0: none waits).', samples: [{ value: s.retry?.atS ?? 0 }] },
    { name: 'larch_last_check_timestamp_seconds', type: 'gauge', help: 'When the daemon last checked the remote successfully (Unix time; 0: not yet).', samples: [{ value: s.lastCheckS ?? 0 }] },
    { name: 'larch_downloaded_bytes_total', type: 'counter', help: 'Bytes downloaded for updates, from the journal.', samples: [{ value: s.journal.downloadedBytes }] },
    { name: 'larch_updates_total', type: 'counter', help: 'Update attempts by this daemon run, by result.', samples: UPDATE_RESULTS.map((result) => ({ labels: { result }, value: s.updates[result] })) },
    { name: 'larch_rollbacks_total', type: 'counter', help: 'Rollbacks (larch rollback) and fallbacks (a slot that used up its tries), from the journal.', samples: [{ value: s.journal.rollbacks }] },
    { name: 'larch_mqtt_connected', type: 'gauge', help: 'Connected to the MQTT broker (1) or not (0; also when no broker is configured).', samples: [{ value: s.mqttConnected ? 1 : 0 }] },
    { name: 'larch_boot_tries_left', type: 'gauge', help: 'Boot tries left per slot (a good slot boots without spending them).', samples: slots.map(([slot, x]) => ({ labels: { slot }, value: x.tries_left })) },
    { name: 'larch_slot_good', type: 'gauge', help: 'The slot is confirmed good (1) or not (0).', samples: slots.map(([slot, x]) => ({ labels: { slot }, value: x.good ? 1 : 0 })) },
  ];
}

/** Largest piece of journal read at once. */
const CHUNK = 256 * 1024;

/** Counts download bytes and rollbacks in S/larch/journal.jsonl, reading only what was appended since the last look. */
export class JournalTally {
  downloadedBytes = 0;
  rollbacks = 0;
  private offset = 0;

  constructor(private readonly path: string) {}

  async update(): Promise<void> {
    const size = await stat(this.path).then((s) => s.size, () => 0);
    if (size < this.offset) {
      this.offset = 0; // replaced: count again from its start
      this.downloadedBytes = 0;
      this.rollbacks = 0;
    }
    if (size === this.offset) return;
    const fh = await open(this.path, 'r');
    try {
      while (this.offset < size) {
        const buf = Buffer.alloc(Math.min(CHUNK, size - this.offset));
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        const end = buf.subarray(0, bytesRead).lastIndexOf(0x0a);
        if (end < 0) {
          if (bytesRead < CHUNK) return; // a line still being written
          this.offset += bytesRead; // one line longer than a chunk: not an entry we count
          continue;
        }
        for (const line of buf.subarray(0, end).toString('utf8').split('\n')) this.count(line);
        this.offset += end + 1;
      }
    } finally {
      await fh.close();
    }
  }

  private count(line: string): void {
    let e: { event?: unknown; data?: { bytes?: unknown } };
    try {
      e = JSON.parse(line);
    } catch {
      return; // a torn line from a power cut
    }
    if (e.event === 'download' && typeof e.data?.bytes === 'number') this.downloadedBytes += e.data.bytes;
    else if (e.event === 'rollback' || e.event === 'fallback') this.rollbacks++;
  }
}

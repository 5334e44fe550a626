/**
 * The fleet view's state inside `larch serve` (docs/design/issue-22-fleet-view.md §3): one MQTT
 * client subscribed to every device's retained status, its journal and command results, and the
 * retained announcements; each message folded into a device record (model.ts). Nothing but the
 * broker feeds it, so a restart rebuilds the view from the retained statuses within seconds.
 * `synced` turns true once the subscriptions are acknowledged and no new retained status has come
 * for 2 s (or 10 s passed): before that the view is a partial sample of the fleet. Devices that are
 * gone from the broker are remembered in a snapshot file (snapshot.ts).
 */
import { sha256 } from '../../_hash.ts';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { type MqttSettings, connectPersistent, endClient } from '../../mqtt/connect.ts';
import { TOPIC_ROOT, parseAnnouncement } from '../../mqtt/format.ts';
import { type DeviceRecord, applyCommandResult, applyJournal, applyStatus, emptyRecord, parseBody, topicDevice } from './model.ts';
import { loadSnapshot, saveSnapshot } from './snapshot.ts';

/** Subscriptions and their QoS: statuses at 0 (the broker's per-client queue would drop a QoS 1 flood; the next status replaces a lost one). */
export const FLEET_SUBSCRIPTIONS: Record<string, 0 | 1> = {
  [`${TOPIC_ROOT}/device/+/status`]: 0,
  [`${TOPIC_ROOT}/device/+/journal`]: 1,
  [`${TOPIC_ROOT}/device/+/cmd/result`]: 1,
  [`${TOPIC_ROOT}/announce/#`]: 1,
};
const QUIET_MS = 2000;
const SNAPSHOT_INTERVAL_MS = 60_000;
const SYNC_MAX_MS = 10_000;

export interface AnnouncedRelease {
  ref: string;
  commit: string;
  version: string;
  rollout: number;
  created_s: number;
}

export interface FleetAggregator {
  readonly devices: ReadonlyMap<string, DeviceRecord>;
  readonly announced: ReadonlyMap<string, AnnouncedRelease>;
  /** Counts every change; the API's ETag. */
  readonly generation: number;
  readonly synced: boolean;
  readonly dropped: { messages: number; devices: number };
  readonly clientId: string;
  close(): Promise<void>;
}

export interface AggregatorOptions {
  mqtt: Omit<MqttSettings, 'clientId'> & { clientId?: string };
  /** Names the persistent session: one per repo. */
  repoPath: string;
  /** New device ids past this many are not recorded (counted in dropped.devices). */
  maxDevices?: number;
  /** Where the records are kept across restarts (default R/fleet/devices.json); null: nowhere. */
  snapshotPath?: string | null;
  log?: (line: string) => void;
}

/** The client id of a repo's aggregator: stable across restarts, so its persistent session (journal lines) survives them. */
export function aggregatorClientId(repoPath: string): string {
  let real = repoPath;
  try {
    real = realpathSync(repoPath);
  } catch {
    // A path that does not resolve still names one session.
  }
  return `larch-fleet-${sha256(Buffer.from(real)).slice(0, 12)}`;
}

/** Connects, subscribes and folds messages until closed; resolves once subscribed (or after 10 s with the broker away). */
export async function startAggregator(opts: AggregatorOptions): Promise<FleetAggregator> {
  const log = opts.log ?? (() => {});
  const clientId = opts.mqtt.clientId ?? aggregatorClientId(opts.repoPath);
  const maxDevices = opts.maxDevices ?? 50_000;
  const snapshotPath = opts.snapshotPath === undefined ? join(opts.repoPath, 'fleet', 'devices.json') : opts.snapshotPath;
  const devices = snapshotPath ? await loadSnapshot(snapshotPath, maxDevices) : new Map<string, DeviceRecord>();
  const announced = new Map<string, AnnouncedRelease>();
  const state = { generation: 0, synced: false, dropped: { messages: 0, devices: 0 }, lastRetained: Date.now(), subscribedAt: 0 };
  const client: MqttClient = await connectPersistent({ ...opts.mqtt, clientId, clean: false, sessionExpiryS: 3600 }, log);

  let subscribed: () => void = () => {};
  const firstSubscription = new Promise<void>((resolve) => (subscribed = resolve));
  const subscribe = () =>
    client.subscribe(Object.fromEntries(Object.entries(FLEET_SUBSCRIPTIONS).map(([t, qos]) => [t, { qos }])), (err) => {
      if (err) return log(`fleet: subscribe: ${err.message}`);
      state.subscribedAt = Date.now();
      state.lastRetained = Date.now();
      subscribed();
    });
  client.on('connect', subscribe);
  if (client.connected) subscribe();

  // Sync: quiet for QUIET_MS after the subscription, or SYNC_MAX_MS in all.
  const syncTimer = setInterval(() => {
    if (state.synced || state.subscribedAt === 0) return;
    const now = Date.now();
    if (now - state.lastRetained >= QUIET_MS || now - state.subscribedAt >= SYNC_MAX_MS) {
      state.synced = true;
      state.generation++;
    }
  }, 200);
  syncTimer.unref();

  // The records to disk when they changed, at most once a minute (and at close).
  let savedGeneration = state.generation;
  const save = async () => {
    if (!snapshotPath || savedGeneration === state.generation) return;
    const generation = state.generation;
    await saveSnapshot(snapshotPath, devices.values()).then(
      () => (savedGeneration = generation),
      (err) => log(`fleet: write ${snapshotPath}: ${(err as Error).message}`),
    );
  };
  const saveTimer = setInterval(() => void save(), SNAPSHOT_INTERVAL_MS);
  saveTimer.unref();

  client.on('message', (topic, payload, packet) => {
    if (packet.retain) state.lastRetained = Date.now();
    if (topic.startsWith(`${TOPIC_ROOT}/announce/`)) return void onAnnouncement(payload);
    const at = topicDevice(topic);
    if (!at) return;
    const body = parseBody(payload, at.device);
    if (!body) {
      state.dropped.messages++;
      return;
    }
    let prev = devices.get(at.device);
    if (!prev) {
      if (devices.size >= maxDevices) {
        state.dropped.devices++;
        return;
      }
      prev = emptyRecord(at.device);
    }
    const next = at.kind === 'status' ? applyStatus(prev, body) : at.kind === 'journal' ? applyJournal(prev, body) : applyCommandResult(prev, body);
    if (next === null) return;
    devices.set(at.device, next);
    state.generation++;
  });

  /** Announcements are shown as the broker delivered them (devices verify their signatures; the view only displays). */
  function onAnnouncement(payload: Uint8Array): void {
    try {
      const env = JSON.parse(Buffer.from(payload).toString('utf8')) as { body?: unknown };
      if (typeof env.body !== 'string') throw new Error('no body');
      const a = parseAnnouncement(JSON.parse(env.body));
      announced.set(a.ref, { ref: a.ref, commit: a.commit, version: a.version, rollout: a.rollout, created_s: a.created });
      state.generation++;
    } catch {
      state.dropped.messages++;
    }
  }

  await Promise.race([firstSubscription, new Promise((r) => setTimeout(r, SYNC_MAX_MS).unref())]);
  return {
    devices,
    announced,
    get generation() {
      return state.generation;
    },
    get synced() {
      return state.synced;
    },
    get dropped() {
      return { ...state.dropped };
    },
    clientId,
    async close() {
      clearInterval(syncTimer);
      clearInterval(saveTimer);
      await endClient(client);
      await save();
    },
  };
}

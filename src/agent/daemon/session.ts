/**
 * The daemon's MQTT session: a persistent session (client id larch-ID, clean false) with the
 * retained offline status as its last will, the subscriptions renewed at every connect, and the
 * publishes the daemon makes (status retained, command results). Reconnects with backoff
 * (mqtt/connect.ts). docs/formats.md §13.
 */
import type { MqttClient } from 'mqtt';
import { connectPersistent, publishAcked } from '../../mqtt/connect.ts';
import { announceTopic, commandResultTopic, commandTopic, statusTopic } from '../../mqtt/format.ts';
import type { DaemonConfig } from '../policy.ts';
import { offlineMessage } from './status-message.ts';

/** How long a stop waits for the broker to take the last status. */
const LAST_STATUS_TIMEOUT_MS = 2000;

export interface SessionHandlers {
  /** Connected (first time or again): publish the status, send the journal. */
  onConnect(): void;
  onAnnouncement(payload: Buffer): void;
  onCommand(payload: Buffer): void;
  log(line: string): void;
}

export class DaemonSession {
  private constructor(
    readonly client: MqttClient,
    private readonly deviceId: string,
  ) {}

  /** Connects to config.mqttUrl (which must be set) following `ref`'s announcements and the device's commands. */
  static async open(config: DaemonConfig, deviceId: string, ref: string, h: SessionHandlers): Promise<DaemonSession> {
    const url = config.mqttUrl!;
    const will = new TextEncoder().encode(JSON.stringify(offlineMessage(deviceId)));
    const client = await connectPersistent(
      { url, clientId: `larch-${deviceId}`, clean: false, sessionExpiryS: config.sessionExpiryS, keepaliveS: config.keepaliveS, username: config.mqttUsername, passwordFile: config.mqttPasswordFile, caFile: config.mqttCaFile, certFile: config.mqttCertFile, keyFile: config.mqttKeyFile, will: { topic: statusTopic(deviceId), payload: will, retain: true, qos: 1 } },
      h.log,
    );
    client.on('connect', (ack) => {
      h.log(`mqtt: connected to ${url}${ack.sessionPresent ? ' (session resumed)' : ''}`);
      // Subscribing again is harmless with a resumed session and needed without one.
      client.subscribe({ [announceTopic(ref)]: { qos: 1 }, [commandTopic(deviceId)]: { qos: 1 } }, (err) => err && h.log(`mqtt: subscribe: ${err.message}`));
      h.onConnect();
    });
    client.on('message', (topic, payload) => {
      if (topic === commandTopic(deviceId)) h.onCommand(payload);
      else if (topic === announceTopic(ref)) h.onAnnouncement(payload);
    });
    return new DaemonSession(client, deviceId);
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** The retained status, acknowledged by the broker. */
  publishStatus(message: Record<string, unknown>): Promise<void> {
    return publishAcked(this.client, statusTopic(this.deviceId), Buffer.from(JSON.stringify(message)), { qos: 1, retain: true });
  }

  publishCommandResult(result: unknown): Promise<void> {
    return publishAcked(this.client, commandResultTopic(this.deviceId), Buffer.from(JSON.stringify(result)), { qos: 1 });
  }

  /** Publishes a last status (a clean stop sends no last will; `last` builds it), waiting at most LAST_STATUS_TIMEOUT_MS, and disconnects. */
  async close(last: () => Promise<Record<string, unknown>>): Promise<void> {
    if (this.client.connected) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, LAST_STATUS_TIMEOUT_MS)));
      await Promise.race([last().then((m) => this.publishStatus(m)), timeout]).catch(() => {});
      clearTimeout(timer);
    }
    await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
  }
}

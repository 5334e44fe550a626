/**
 * Publishes the device's journal (S/larch/journal.jsonl) on larch/v1/device/ID/journal: every
 * complete line past a cursor, one at a time, each acknowledged (QoS 1) before the next and
 * before the cursor moves: in order, at least once. The cursor
 * (S/larch/mqtt/journal-cursor.json) survives restarts; `seq` (the entry's index) lets a
 * consumer drop the duplicate a crash between ack and cursor write can cause. docs/formats.md §13.
 */
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { writeFileAtomic } from '../../_durable.ts';
import { publishAcked } from '../../mqtt/connect.ts';
import { journalTopic } from '../../mqtt/format.ts';

/** Largest journal slice read at once. */
const JOURNAL_READ_BYTES = 64 * 1024;

export interface JournalPublisherDeps {
  journalPath: string;
  larchDir: string;
  deviceId: string;
  /** The session's client when there is one (null: no MQTT, nothing is published). */
  client(): MqttClient | null;
  /** The journal grew: something happened, so the status is published again. */
  onGrowth(): void;
  log(line: string): void;
}

export class JournalPublisher {
  private offset = 0;
  private seq = 0;
  private busy = false;
  private stopped = false;
  private lastSize = -1;

  constructor(private readonly d: JournalPublisherDeps) {}

  private get cursorPath(): string {
    return join(this.d.larchDir, 'mqtt', 'journal-cursor.json');
  }

  /** Reads the cursor; the journal as it is now counts as seen (the connect sends it). */
  async open(): Promise<void> {
    const cursor = JSON.parse(await readFile(this.cursorPath, 'utf8').catch(() => '{}')) as { offset?: number; seq?: number };
    this.offset = cursor.offset ?? 0;
    this.seq = cursor.seq ?? 0;
    this.lastSize = await stat(this.d.journalPath).then((st) => st.size, () => 0);
  }

  stop(): void {
    this.stopped = true;
  }

  /** Looks at the journal's size: growth means something happened (onGrowth) and entries to send. */
  async poll(): Promise<void> {
    const size = await stat(this.d.journalPath).then((s) => s.size, () => 0);
    if (size === this.lastSize) return;
    this.lastSize = size;
    this.d.onGrowth();
    void this.pump();
  }

  /** Sends every complete line past the cursor (one pump at a time; a second call while one runs returns). */
  async pump(): Promise<void> {
    const client = this.d.client();
    if (!client || this.busy || this.stopped) return;
    this.busy = true;
    try {
      for (;;) {
        if (!client.connected) return;
        const path = this.d.journalPath;
        const size = await stat(path).then((s) => s.size, () => 0);
        // The journal was rotated (journal.jsonl -> journal.1.jsonl at 256 KiB): go on from the
        // new file's start; seq keeps counting, so a consumer's duplicate check by seq still holds.
        if (size < this.offset) this.offset = 0;
        if (size === this.offset) return;
        const fh = await open(path, 'r');
        let chunk: Buffer;
        try {
          const buf = Buffer.alloc(Math.min(JOURNAL_READ_BYTES, size - this.offset));
          const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
          chunk = buf.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
        const end = chunk.lastIndexOf(0x0a);
        if (end < 0) {
          if (chunk.length < JOURNAL_READ_BYTES) return; // a line still being written
          this.offset += chunk.length; // a line longer than we read at once: skip it
          continue;
        }
        let pos = 0;
        while (pos <= end) {
          const nl = chunk.indexOf(0x0a, pos);
          const line = chunk.subarray(pos, nl).toString('utf8');
          const lineBytes = nl + 1 - pos;
          pos = nl + 1;
          let entry: Record<string, unknown> | null = null;
          try {
            entry = JSON.parse(line) as Record<string, unknown>;
          } catch {
            entry = null; // a torn line from a power cut: not an entry
          }
          if (entry) {
            await publishAcked(client, journalTopic(this.d.deviceId), Buffer.from(JSON.stringify({ seq: this.seq, device: this.d.deviceId, ...entry })), { qos: 1 });
            this.seq++;
          }
          this.offset += lineBytes;
        }
        await mkdir(dirname(this.cursorPath), { recursive: true });
        await writeFileAtomic(this.cursorPath, JSON.stringify({ offset: this.offset, seq: this.seq }) + '\n');
      }
    } catch (err) {
      this.d.log(`journal publish: ${(err as Error).message}`);
    } finally {
      this.busy = false;
    }
  }
}

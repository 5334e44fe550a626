/**
 * The fleet view's memory of devices that are not on the broker any more (docs/design/
 * issue-22-fleet-view.md §3.3): a device that dropped off leaves only its last will, which carries
 * no version, so serve writes its records to `R/fleet/devices.json` (or `--fleet-state DIR`)
 * atomically when they changed, at most once a minute and when it stops, and reads them back at
 * start, marked `source: "snapshot"` until a live status replaces them.
 */
import { readFile } from 'node:fs/promises';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../../_durable.ts';
import { isValidDeviceId } from '../../mqtt/format.ts';
import { type DeviceRecord, emptyRecord } from './model.ts';

export const SNAPSHOT_FORMAT = 1;

/** The records of a snapshot file; a missing, unreadable or foreign file is an empty view (the broker refills it). */
export async function loadSnapshot(path: string, maxDevices: number): Promise<Map<string, DeviceRecord>> {
  const out = new Map<string, DeviceRecord>();
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return out;
  }
  if (doc === null || typeof doc !== 'object' || (doc as { format?: unknown }).format !== SNAPSHOT_FORMAT || !Array.isArray((doc as { devices?: unknown }).devices)) return out;
  for (const r of (doc as { devices: unknown[] }).devices) {
    if (out.size >= maxDevices) break;
    if (r === null || typeof r !== 'object' || typeof (r as DeviceRecord).device_id !== 'string' || !isValidDeviceId((r as DeviceRecord).device_id)) continue;
    // Every field from the empty record, so a file of an older shape still gives whole records.
    out.set((r as DeviceRecord).device_id, { ...emptyRecord((r as DeviceRecord).device_id), ...(r as DeviceRecord), online: false, source: 'snapshot' });
  }
  return out;
}

/** Writes the records atomically and durably (the repo's own write). */
export async function saveSnapshot(path: string, devices: Iterable<DeviceRecord>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, JSON.stringify({ format: SNAPSHOT_FORMAT, devices: [...devices] }) + '\n');
}

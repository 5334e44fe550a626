/**
 * Phased rollout: each device's stable place in the queue, from a hash of its id, so that an
 * announcement with rollout P reaches about P% of the fleet, and always the same devices first
 * (the fleet's canaries), with no server-side state. Pure.
 *
 *   position(id) = floor(u32be(SHA-256("larch-rollout-v1:" ‖ id)[0..4]) * 10000 / 2^32) / 100
 *
 * a number in [0, 100) with two decimals; a device acts when position < rollout. A device
 * configured with a wariness w (0..1, as Zincati's rollout_wariness) uses position = 100 * w
 * instead: 0 takes every release at once, 1 only at rollout 100.
 */
import { sha256 } from '../_hash.ts';

const DOMAIN = 'larch-rollout-v1:';

export function rolloutPosition(deviceId: string): number {
  const digest = sha256(Buffer.from(DOMAIN + deviceId, 'utf8'));
  const u32 = parseInt(digest.slice(0, 8), 16);
  return Math.floor((u32 * 10000) / 2 ** 32) / 100;
}

/** True when a device with this id (or wariness) takes an announcement with `rolloutPercent`. */
export function inRollout(deviceId: string, rolloutPercent: number, wariness?: number): boolean {
  if (rolloutPercent >= 100) return true;
  const position = wariness === undefined ? rolloutPosition(deviceId) : Math.min(100, Math.max(0, wariness * 100));
  return position < rolloutPercent;
}

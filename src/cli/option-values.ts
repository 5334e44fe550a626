/** Parsers of option values more than one command takes: durations, timestamps, rollout percentages, sizes. */
import { LarchError } from '../errors.ts';

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
export const DEFAULT_EXPIRES_IN = '7d';

/** "90m", "12h", "7d", "2w", "3600s" or plain seconds -> seconds. @throws USAGE */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+)([smhdw]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * UNIT_SECONDS[m[2] || 's'] : NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new LarchError('USAGE', `${option} must be a positive duration such as 3600, 90m, 12h, 7d or 2w; got '${text}'`, { data: { option: option.replace(/^--/, ''), value: text } });
  }
  return seconds;
}

/** Accepts seconds since the epoch or an ISO 8601 date. @throws USAGE */
export function parseTimestamp(text: string): number {
  const seconds = /^\d+$/.test(text) ? Number(text) : Math.floor(Date.parse(text) / 1000);
  if (Number.isNaN(seconds)) throw new LarchError('USAGE', `commit: --timestamp '${text}' is neither seconds since the epoch nor an ISO 8601 date`, { data: { command: 'commit', option: 'timestamp', value: text } });
  if (seconds < 0 || !Number.isSafeInteger(seconds)) throw new LarchError('USAGE', `commit: --timestamp '${text}' is outside 1970-01-01 .. 2^53-1 seconds`, { data: { command: 'commit', option: 'timestamp', value: text } });
  return seconds;
}

/** "25", "25%", "12.5" -> 0..100. @throws USAGE */
export function parseRollout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d{1,3}(?:\.\d{1,2})?)%?$/.exec(text.trim());
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 0 && n <= 100)) throw new LarchError('USAGE', `--rollout must be a percentage from 0 to 100 (two decimals at most), got '${text}'`, { data: { option: 'rollout', value: text } });
  return n;
}

const UNIT_BYTES: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** "512M", "8G", "8GiB", "1048576" -> bytes (binary units). @throws USAGE */
export function parseSize(text: string, option: string): number {
  const m = /^(\d+)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  const bytes = m ? Number(m[1]) * UNIT_BYTES[m[2].toUpperCase()] : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new LarchError('USAGE', `${option} must be a positive size such as 1048576, 512M or 8G; got '${text}'`, { data: { option: option.replace(/^--/, ''), value: text } });
  }
  return bytes;
}

/**
 * Weekly reboot windows (Zincati's `periodic` strategy): pure parsing and time arithmetic, no
 * clock of its own. A window is written `DAYS HH:MM LENGTH`, all in UTC:
 *
 *   "Mon,Wed 02:00 60m"     Mondays and Wednesdays, 02:00 to 03:00
 *   "Sat-Sun 23:30 2h"      Saturday and Sunday 23:30 to 01:30 the next day (spans midnight)
 *   "Mon-Fri 22:00 1h30m"
 *
 * DAYS is a comma list of day names (Mon … Sun, case-insensitive, or their full names) and
 * ranges A-B (which may wrap: Sat-Mon). LENGTH is N m, N h or NhMm, 1 minute to 7 days. UTC
 * rather than local time because a device's time zone is often unset and DST would move or
 * double a window; an operator converts once.
 */

export const MINUTE_MS = 60_000;
const DAY_MIN = 1440;
export const WEEK_MIN = 7 * DAY_MIN;
const WEEK_MS = WEEK_MIN * MINUTE_MS;
/** Unix time 0 was a Thursday: Monday 1970-01-05 00:00 UTC is the start of a week. */
const FIRST_MONDAY_MS = 4 * DAY_MIN * MINUTE_MS;

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
const FULL = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

/** One weekly window: starts `startMin` minutes after Monday 00:00 UTC, lasts `lengthMin`. */
export interface RebootWindow {
  startMin: number;
  lengthMin: number;
  /** The text it came from, for messages. */
  spec: string;
}

/** Where a time stands relative to the windows. */
export interface WindowPosition {
  /** True when `now` is inside a window. */
  open: boolean;
  /** Inside: the start of the open window (≤ now); outside: the start of the next one (> now). */
  start: Date;
  /** The end of that window. */
  end: Date;
  window: RebootWindow;
}

function dayIndex(name: string): number {
  const n = name.toLowerCase();
  const i = DAYS.indexOf(n as (typeof DAYS)[number]);
  return i >= 0 ? i : FULL.indexOf(n);
}

/**
 * Parses one `DAYS HH:MM LENGTH` text into one window per day.
 * @throws Error with a message saying what is wrong (the config parser adds file and line)
 */
export function parseWindowSpec(spec: string): RebootWindow[] {
  const m = /^\s*(\S+)\s+(\d{1,2}):(\d{2})\s+(?:(\d+)h)?(?:(\d+)m)?\s*$/.exec(spec);
  if (!m || (m[4] === undefined && m[5] === undefined)) throw new Error(`reboot window '${spec}' is not 'DAYS HH:MM LENGTH' (e.g. "Mon,Wed 02:00 60m")`);
  const [, daysText, hh, mm, h, min] = m;
  const hour = Number(hh);
  const minute = Number(mm);
  if (hour > 23 || minute > 59) throw new Error(`reboot window '${spec}': ${hh}:${mm} is not a time of day (00:00 to 23:59, UTC)`);
  const lengthMin = Number(h ?? 0) * 60 + Number(min ?? 0);
  if (lengthMin < 1 || lengthMin > WEEK_MIN) throw new Error(`reboot window '${spec}': the length must be 1 minute to 7 days`);
  const days = new Set<number>();
  for (const part of daysText.split(',')) {
    const [a, b, extra] = part.split('-');
    const from = dayIndex(a ?? '');
    const to = b === undefined ? from : dayIndex(b);
    if (from < 0 || to < 0 || extra !== undefined) throw new Error(`reboot window '${spec}': '${part}' is not a day or a range of days (Mon … Sun, e.g. Mon-Fri)`);
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  return [...days].sort((x, y) => x - y).map((d) => ({ startMin: d * DAY_MIN + hour * 60 + minute, lengthMin, spec: spec.trim() }));
}

/** Milliseconds since the start of the week (Monday 00:00 UTC) containing `ms`. */
function msOfWeek(ms: number): number {
  return (((ms - FIRST_MONDAY_MS) % WEEK_MS) + WEEK_MS) % WEEK_MS;
}

/**
 * The open window containing `now`, or else the window that opens next. Windows repeat weekly,
 * so one that started last Sunday and runs past midnight is open on Monday morning, and after
 * the last window of the week comes the first of the next. @throws RangeError with no windows
 */
export function windowPosition(windows: readonly RebootWindow[], now: Date): WindowPosition {
  if (windows.length === 0) throw new RangeError('windowPosition: no reboot windows');
  const t = now.getTime();
  const into = msOfWeek(t);
  let best: WindowPosition | null = null;
  for (const w of windows) {
    const startMs = w.startMin * MINUTE_MS;
    // How long ago this window last started (0 ≤ ago < a week).
    const ago = (((into - startMs) % WEEK_MS) + WEEK_MS) % WEEK_MS;
    const lengthMs = w.lengthMin * MINUTE_MS;
    if (ago < lengthMs) {
      const start = t - ago;
      // Inside several overlapping windows: report the one that stays open longest.
      if (!best?.open || start + lengthMs > best.end.getTime()) best = { open: true, start: new Date(start), end: new Date(start + lengthMs), window: w };
      continue;
    }
    if (best?.open) continue;
    const start = t - ago + WEEK_MS;
    if (!best || start < best.start.getTime()) best = { open: false, start: new Date(start), end: new Date(start + lengthMs), window: w };
  }
  return best!;
}

/** "Sat 02:00 UTC" for messages. */
export function describeWindowStart(d: Date): string {
  const day = DAYS[(d.getUTCDay() + 6) % 7]!;
  return `${day[0]!.toUpperCase()}${day.slice(1)} ${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 16)} UTC`;
}

/**
 * Crash states from a recorded write log (pure): what a device can hold after a power cut at a
 * point of the log. Everything before the last flush barrier is on the medium; each write after
 * it, cut into 4 KiB sectors (what a drive writes atomically, at best), may or may not be, and
 * in any order: a drive with a volatile cache may persist them in any order, or not at all.
 * As dm-log-writes' replay-log (replay to an entry) and LazyFS (drop what was not fsynced) do,
 * plus subsets and reorderings between barriers, as CrashMonkey does.
 */
export type LogRecord = { kind: 'flush' } | { kind: 'write'; offset: number; data: Uint8Array };

export interface Write {
  offset: number;
  data: Uint8Array;
}

export interface CrashState {
  /** How it was made: `barrier`, `all`, `prefix-K`, `subset`, `reordered` (reproducible with the seed). */
  name: string;
  /** The writes to apply to the image the run started from, in order. */
  writes: Write[];
  /** Sectors written after the last barrier and left out. */
  dropped: number;
  /** Some sector written after the barrier lands over a later write of the same sector. */
  reordered: boolean;
  /** Sectors written after the last barrier that the log holds (0: the state is exact). */
  pending: number;
}

export const SECTOR_BYTES = 4096;

interface Piece extends Write {
  seq: number;
  sector: number;
}

/** Splits writes into sector-aligned pieces, numbered in log order. */
function pieces(writes: Write[]): Piece[] {
  const out: Piece[] = [];
  for (const w of writes) {
    let at = 0;
    while (at < w.data.length) {
      const offset = w.offset + at;
      const end = Math.min(w.data.length, at + (SECTOR_BYTES - (offset % SECTOR_BYTES)));
      out.push({ offset, data: w.data.subarray(at, end), seq: out.length, sector: Math.floor(offset / SECTOR_BYTES) });
      at = end;
    }
  }
  return out;
}

/** The durable writes and the pending pieces of a power cut after the first `cut` records. */
export function splitAtCut(records: LogRecord[], cut: number): { durable: Write[]; pending: Piece[] } {
  const upTo = records.slice(0, cut);
  let lastFlush = -1;
  upTo.forEach((r, i) => r.kind === 'flush' && (lastFlush = i));
  const writes = (rs: LogRecord[]) => rs.filter((r): r is Extract<LogRecord, { kind: 'write' }> => r.kind === 'write');
  return { durable: writes(upTo.slice(0, lastFlush + 1)), pending: pieces(writes(upTo.slice(lastFlush + 1))) };
}

/** Whether applying pieces in this order puts an older write of a sector over a newer one. */
function isReordered(order: Piece[]): boolean {
  const newest = new Map<number, number>();
  for (const p of order) {
    if ((newest.get(p.sector) ?? -1) > p.seq) return true;
    newest.set(p.sector, p.seq);
  }
  return false;
}

/**
 * Up to `count` distinct crash states of a power cut after the first `cut` records:
 * `barrier` (no pending sector landed), then, drawn with `random`, random subsets in a random
 * order, prefixes (the drive wrote in order and stopped) and random subsets, then `all` (every
 * pending sector landed, in order). With nothing pending there is one state.
 */
export function crashStates(records: LogRecord[], cut: number, count: number, random: () => number): CrashState[] {
  const { durable, pending } = splitAtCut(records, cut);
  const states: CrashState[] = [];
  const seen = new Set<string>();
  const allKey = pending.map((p) => p.seq).join(',');
  const add = (name: string, order: Piece[]) => {
    const key = order.map((p) => p.seq).join(',');
    // `all` keeps its name and its place at the end (a random draw can equal it).
    if (seen.has(key) || states.length >= count || (key === allKey && name !== 'all' && pending.length > 0)) return;
    seen.add(key);
    states.push({ name, writes: [...durable, ...order], dropped: pending.length - order.length, reordered: isReordered(order), pending: pending.length });
  };
  // Barrier-only first (LazyFS's case, the most lost), then random ones, then `all` (what
  // kill -9 leaves, which crash.test.ts already covers) when there is room.
  add('barrier', []);
  const n = pending.length;
  const int = (below: number) => Math.floor(random() * below);
  for (let attempt = 0; n > 1 && states.length < count - 1 && attempt < count * 4; attempt++) {
    // Reorderings first: the most adversarial, and with few slots (4 states per point) they
    // must not be crowded out by prefixes and subsets.
    const kind = attempt % 3;
    if (kind === 1) {
      const k = 1 + int(n - 1);
      add(`prefix-${k}`, pending.slice(0, k));
    } else {
      const subset = pending.filter(() => random() < 0.5);
      if (kind === 2) add('subset', subset);
      else {
        for (let i = subset.length - 1; i > 0; i--) {
          const j = int(i + 1);
          [subset[i], subset[j]] = [subset[j], subset[i]];
        }
        add('reordered', subset);
      }
    }
  }
  add('all', pending);
  return states;
}

/**
 * A one-line progress bar for downloads on stderr: bytes, rate, ETA. It draws only when the
 * stream is a terminal (scripts and logs get nothing), at most 10 times a second.
 */

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export interface ProgressState {
  label: string;
  doneBytes: number;
  totalBytes: number | null;
  /** Bytes per second, or null before there is a measure. */
  rate: number | null;
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** 83 -> "1:23", 3723 -> "1:02:03". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const two = (x: number) => String(x).padStart(2, '0');
  return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
}

/** The line for a state, fitted to `width` columns. Pure. */
export function renderProgressLine(s: ProgressState, width: number): string {
  const amount = s.totalBytes === null ? formatBytes(s.doneBytes) : `${formatBytes(s.doneBytes)} / ${formatBytes(s.totalBytes)}`;
  const rate = s.rate === null ? '' : `  ${formatBytes(Math.round(s.rate))}/s`;
  const eta = s.rate && s.totalBytes !== null && s.rate > 0 ? `  ETA ${formatDuration((s.totalBytes - s.doneBytes) / s.rate)}` : '';
  const text = `${s.label}  ${amount}${rate}${eta}`;
  // "[" + bar + "] " + text must fit in width - 1 columns (the last column would wrap).
  const barWidth = Math.min(30, width - 1 - text.length - 3);
  if (s.totalBytes === null || s.totalBytes === 0 || barWidth < 5) return text.slice(0, width - 1);
  const filled = Math.round((Math.min(s.doneBytes, s.totalBytes) / s.totalBytes) * barWidth);
  return `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${text}`.slice(0, width - 1);
}

export interface ProgressBar {
  update(doneBytes: number, totalBytes: number | null, label?: string): void;
  /** Draws the final state and ends the line (nothing when not a terminal). */
  done(): void;
}

/** A bar on `stream` (process.stderr by default); silent unless it is a TTY. The clock is injectable. */
export function createProgressBar(label: string, stream: ProgressStream = process.stderr, now: () => number = Date.now): ProgressBar {
  const state: ProgressState = { label, doneBytes: 0, totalBytes: null, rate: null };
  if (!stream.isTTY) return { update() {}, done() {} };
  let lastDraw = -Infinity;
  let drawn = false;
  // Rate over a sliding window of samples (about the last 5 s), so a stall shows at once.
  const samples: [number, number][] = [];
  const draw = () => {
    stream.write(`\r${renderProgressLine(state, stream.columns ?? 80)}\x1b[K`);
    drawn = true;
  };
  return {
    update(doneBytes, totalBytes, newLabel) {
      const t = now();
      state.doneBytes = doneBytes;
      state.totalBytes = totalBytes;
      if (newLabel) state.label = newLabel;
      samples.push([t, doneBytes]);
      while (samples.length > 2 && t - samples[0][0] > 5000) samples.shift();
      const [t0, b0] = samples[0];
      state.rate = t - t0 >= 500 ? ((doneBytes - b0) * 1000) / (t - t0) : state.rate;
      if (t - lastDraw >= 100) {
        lastDraw = t;
        draw();
      }
    },
    done() {
      draw();
      if (drawn) stream.write('\n');
    },
  };
}

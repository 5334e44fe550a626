/**
 * bench/delta.ts's breakdown: what larch's delta is made of by kind of content (kernel,
 * initramfs, gzip, elf, other), before (the larch-plain row: no views) and after (the larch row),
 * from the `by_kind` and `streams` of each row's `larch delta generate --json`. Pure: rows in,
 * figures and text out.
 */
import { CONTENT_KINDS } from '../src/delta/view/kind.ts';
import type { Row } from './delta-methods.ts';

/** The kinds of `larch delta generate --json`'s by_kind, in table order. */
const KINDS = CONTENT_KINDS;
interface KindFigures {
  objects: number;
  new_bytes: number;
  estimate_before: number;
  estimate_after: number;
  view: number;
}
interface Streams {
  found: number;
  used: number;
  fallbacks: { path: string; codec: string; reason: string }[];
}

export interface BreakdownLine {
  kind: string;
  objects: number;
  newBytes: number;
  /** Objects larch sent through their views. */
  views: number;
  /** Sum of the per-object estimates (brotli q5) of the larch-plain row, and of the larch row. */
  plainEstimate?: number;
  estimate?: number;
  /** estimate / plainEstimate. */
  ratio?: number;
  /** This kind's share of the larch row's estimates, and that share of its real delta bytes. */
  share?: number;
  deltaBytes?: number;
}
export interface Breakdown {
  lines: BreakdownLine[];
  total: BreakdownLine;
  /** The larch row's streams: found, used, fallbacks counted by reason and by codec. */
  streams?: { found: number; used: number; fallbacks: Record<string, Record<string, number>>; paths: Record<string, string[]> };
  /** The larch row's own "before" (its estimate_before) against the larch-plain row's estimates, when they differ. */
  note?: string;
}

const byKindOf = (r: Row | undefined) => r?.larchStats?.by_kind as Record<string, KindFigures> | undefined;

/** What larch's delta is made of, by kind, before (larch-plain) and after (larch). Undefined without by_kind. */
export function breakdown(rows: Row[]): Breakdown | undefined {
  const plainRow = rows.find((r) => r.method === 'larch-plain' && r.na === undefined);
  const larchRow = rows.find((r) => r.method === 'larch' && r.na === undefined);
  const [plain, after] = [byKindOf(plainRow), byKindOf(larchRow)];
  const base = after ?? plain;
  if (base === undefined) return undefined;
  const sum = (f: Record<string, KindFigures> | undefined) => (f ? KINDS.reduce((s, k) => s + (f[k]?.estimate_after ?? 0), 0) : undefined);
  const [plainTotal, afterTotal] = [sum(plain), sum(after)];
  const line = (kind: string, pick: (f: Record<string, KindFigures>) => KindFigures): BreakdownLine => {
    const b = pick(base);
    const l: BreakdownLine = { kind, objects: b.objects, newBytes: b.new_bytes, views: after ? pick(after).view : 0 };
    if (plain) l.plainEstimate = pick(plain).estimate_after;
    if (after) {
      l.estimate = pick(after).estimate_after;
      if (afterTotal) {
        l.share = l.estimate / afterTotal;
        if (larchRow?.bytes !== undefined) l.deltaBytes = Math.round(l.share * larchRow.bytes);
      }
    }
    if (l.plainEstimate && l.estimate !== undefined) l.ratio = l.estimate / l.plainEstimate;
    return l;
  };
  const zero: KindFigures = { objects: 0, new_bytes: 0, estimate_before: 0, estimate_after: 0, view: 0 };
  const lines = KINDS.map((k) => line(k, (f) => f[k] ?? zero));
  const totalOf = (f: Record<string, KindFigures>): KindFigures => {
    const t = { ...zero };
    for (const k of KINDS) for (const key of Object.keys(t) as (keyof KindFigures)[]) t[key] += f[k]?.[key] ?? 0;
    return t;
  };
  const total = line('total', totalOf);
  const result: Breakdown = { lines, total };
  if (plain && after) {
    const before = totalOf(after).estimate_before;
    if (before !== plainTotal) result.note = `the larch row's own estimate without views is ${before} B, the larch-plain row's ${plainTotal} B`;
  }
  const s = larchRow?.larchStats?.streams as Streams | undefined;
  if (s) {
    const fallbacks: Record<string, Record<string, number>> = {};
    const paths: Record<string, string[]> = {};
    for (const f of s.fallbacks) {
      const r = (fallbacks[f.reason] ??= {});
      r[f.codec] = (r[f.codec] ?? 0) + 1;
      (paths[f.reason] ??= []).push(f.path);
    }
    result.streams = { found: s.found, used: s.used, fallbacks, paths };
  }
  return result;
}

const MiB = (n: number) => (n / 2 ** 20).toFixed(1);
const group = (n: number | undefined) => (n === undefined ? '' : n.toLocaleString('en-US'));

/** The breakdown as text: the table (estimates and shares), then the streams. */
export function formatBreakdown(b: Breakdown, larchBytes: number | undefined): string[] {
  const pct = (x: number | undefined) => (x === undefined ? '' : `${(x * 100).toFixed(1)}%`);
  const header = ['kind', 'objects', 'views', 'new MiB', 'larch-plain est. B', 'larch est. B', 'x plain', 'share of larch', 'larch delta B (scaled)'];
  const cells = (l: BreakdownLine) => [l.kind, group(l.objects), group(l.views), MiB(l.newBytes), group(l.plainEstimate), group(l.estimate), l.ratio === undefined ? '' : l.ratio.toFixed(3), pct(l.share), group(l.deltaBytes)];
  const body = [...b.lines, b.total].map(cells);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ').trimEnd();
  const out = [
    'What the larch delta is made of, by kind of content. "est." columns: the generator\'s per-object',
    'estimates (brotli q5 of the literal, plain patch or view patch it chose; by_kind.*.estimate_after',
    `of each row), not the delta's bytes (parts are compressed solid at q11): shares are of the estimates,`,
    `scaled to the larch delta's real ${group(larchBytes)} B. "views": objects sent through their views.`,
    line(header),
    ...body.map(line),
  ];
  if (b.note) out.push(`note: ${b.note}`);
  if (b.streams) {
    const s = b.streams;
    const reasons = Object.entries(s.fallbacks)
      .sort(([, a], [, c]) => Object.values(c).reduce((x, y) => x + y, 0) - Object.values(a).reduce((x, y) => x + y, 0))
      .map(([reason, codecs]) => `${reason} ${Object.values(codecs).reduce((x, y) => x + y, 0)} (${Object.entries(codecs).map(([c, n]) => `${c} ${n}`).join(', ')})`);
    out.push(`streams (larch row): ${group(s.found)} compressed streams found in patched files, ${group(s.used)} used; not used: ${reasons.length ? reasons.join('; ') : 'none'}`);
    // 'larger' is the ordinary case (the view patch did not pay); the other reasons are worth seeing by name.
    for (const [reason, paths] of Object.entries(s.paths)) if (reason !== 'larger') out.push(`  ${reason}: ${paths.slice(0, 5).join(', ')}${paths.length > 5 ? `, ... (${paths.length})` : ''}`);
  }
  return out;
}

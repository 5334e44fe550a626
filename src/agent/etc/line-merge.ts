/**
 * The line merge of one text file: diff3 of base, local and theirs by line, as `git merge-file`,
 * kept fast on large files (anchors, shared ends set aside). Pure: strings in, a result out;
 * `plan.ts` calls it for a file both sides changed. Rules: docs/etc-merge.md.
 */
import { diff3Merge } from 'node-diff3';

/** Text files above this size are merged as whole files: diff3 is quadratic in the worst case. */
export const MAX_LINE_MERGE_BYTES = 16 * 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The file as text, or null when it is binary: a NUL byte, invalid UTF-8, or too large to line-merge. */
export function decodeText(bytes: Uint8Array, maxBytes = MAX_LINE_MERGE_BYTES): string | null {
  if (bytes.length > maxBytes || bytes.includes(0)) return null;
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/** Lines with their terminators ('a\r\n', 'b'), so joining them gives back the exact text. */
export function splitLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) break;
    lines.push(text.slice(start, nl + 1));
    start = nl + 1;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

export type LineMergeResult = { clean: true; text: string } | { clean: false; conflictRegions: number } | { clean: false; tooComplex: true };

/**
 * node-diff3's LCS (Hunt-McIlroy with a linear candidate scan) grows with the number of equal
 * line pairs times the length: 2,000 lines with many blank and '#' lines took 3.3 s, 4,000 took
 * 27 s (measured, x86). A segment with more equal pairs than this is merged as a whole file.
 */
export const MAX_LINE_PAIRS = 400_000;

/**
 * diff3 of three texts by line, as `git merge-file`: changes to separate regions of base both
 * land; changes that overlap or touch (adjacent lines) conflict unless they are identical. A last
 * line without '\n' is a different line from the same line with one, so trailing newlines and
 * CRLF endings come out exactly as the side that changed them wrote them.
 *
 * To keep node-diff3 fast, the lines the three share at both ends are set aside, and the middle
 * is cut at anchors: lines that occur once in each text, in the same order (patience diff's
 * idea). Each piece between anchors is merged on its own.
 */
export function mergeLines(base: string, local: string, theirs: string): LineMergeResult {
  const o = splitLines(base);
  const a = splitLines(local);
  const b = splitLines(theirs);
  let head = 0;
  while (head < o.length && head < a.length && head < b.length && o[head] === a[head] && o[head] === b[head]) head++;
  let tail = 0;
  while (tail < o.length - head && tail < a.length - head && tail < b.length - head && o[o.length - 1 - tail] === a[a.length - 1 - tail] && o[o.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const [om, am, bm] = [o.slice(head, o.length - tail), a.slice(head, a.length - tail), b.slice(head, b.length - tail)];

  const out: string[] = o.slice(0, head);
  let conflictRegions = 0;
  let from = [0, 0, 0];
  for (const anchor of [...findAnchors(om, am, bm), [om.length, am.length, bm.length]]) {
    const [os, as, bs] = [om.slice(from[0], anchor[0]), am.slice(from[1], anchor[1]), bm.slice(from[2], anchor[2])];
    if (equalPairs(os, as) + equalPairs(os, bs) > MAX_LINE_PAIRS) return { clean: false, tooComplex: true };
    for (const region of diff3Merge(as, os, bs, { excludeFalseConflicts: true })) {
      if (region.ok) out.push(...region.ok);
      else if (region.conflict) conflictRegions++;
    }
    if (anchor[0] < om.length) out.push(om[anchor[0]]!);
    from = [anchor[0] + 1, anchor[1] + 1, anchor[2] + 1];
  }
  out.push(...o.slice(o.length - tail));
  return conflictRegions > 0 ? { clean: false, conflictRegions } : { clean: true, text: out.join('') };
}

function countLines(lines: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l, (counts.get(l) ?? 0) + 1);
  return counts;
}

/** How many (i, j) with x[i] === y[j]: the work node-diff3's LCS does. */
function equalPairs(x: string[], y: string[]): number {
  const cy = countLines(y);
  let pairs = 0;
  for (const [line, n] of countLines(x)) pairs += n * (cy.get(line) ?? 0);
  return pairs;
}

/** Lines unique in all three texts, as [o, a, b] indexes increasing in all three (a long chain, not always the longest). */
function findAnchors(o: string[], a: string[], b: string[]): [number, number, number][] {
  const [co, ca, cb] = [countLines(o), countLines(a), countLines(b)];
  const indexIn = (lines: string[], counts: Map<string, number>) => {
    const at = new Map<string, number>();
    lines.forEach((l, i) => counts.get(l) === 1 && at.set(l, i));
    return at;
  };
  const [ia, ib] = [indexIn(a, ca), indexIn(b, cb)];
  const candidates: [number, number, number][] = [];
  o.forEach((l, i) => {
    if (co.get(l) === 1 && ia.has(l) && ib.has(l)) candidates.push([i, ia.get(l)!, ib.get(l)!]);
  });
  // Increasing in o by construction; keep the longest run increasing in a, then in b.
  return longestIncreasing(longestIncreasing(candidates, 1), 2);
}

/** Longest subsequence whose key-th element increases (patience sorting, O(n log n)). */
function longestIncreasing(items: [number, number, number][], key: 1 | 2): [number, number, number][] {
  const tails: number[] = []; // index into items of the smallest tail of each length
  const prev: number[] = new Array(items.length).fill(-1);
  items.forEach((item, i) => {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (items[tails[mid]!]![key] < item[key]) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[i] = tails[lo - 1]!;
    tails[lo] = i;
  });
  const chain: [number, number, number][] = [];
  for (let i = tails.length ? tails[tails.length - 1]! : -1; i >= 0; i = prev[i]!) chain.push(items[i]!);
  return chain.reverse();
}

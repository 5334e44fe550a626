/**
 * Properties of the line merge on random texts (seeded, so a failure names its seed): separated
 * local and vendor edits always both land; an untouched side always yields the other exactly.
 */
import t from 'tap';
import { mergeLines } from '../../../src/agent/etc/line-merge.ts';
import { type FileEntry, planEtcMerge } from '../../../src/agent/etc/plan.ts';
import { prng } from '../../helpers.ts';

const RUNS = 400;

interface Edit {
  start: number; // base lines [start, end) are replaced by lines
  end: number;
  lines: string[];
}

const pick = (rand: () => number, n: number) => Math.floor(rand() * n);

/** Random lines; unique ones carry a serial so that no two are equal. */
function randomLines(rand: () => number, count: number, tag: string, duplicates: boolean): string[] {
  const words = ['Port', 'Listen', 'include', 'enable', '=', 'yes', 'no', '#', 'user', 'path', '/etc/x'];
  return Array.from({ length: count }, (_, i) => {
    if (duplicates && rand() < 0.3) return ['\n', '#\n', '\r\n', '}\n'][pick(rand, 4)]!;
    const n = 1 + pick(rand, 4);
    const body = Array.from({ length: n }, () => words[pick(rand, words.length)]).join(' ');
    return `${body} ${tag}${i}${rand() < 0.2 ? '\r\n' : '\n'}`;
  });
}

/** Random non-overlapping edits with at least one untouched base line between any two. */
function randomEdits(rand: () => number, baseLength: number, tag: string): Edit[] {
  const edits: Edit[] = [];
  let pos = 0;
  while (pos <= baseLength && edits.length < 6) {
    const start = pos + pick(rand, 4);
    if (start > baseLength) break;
    const end = Math.min(baseLength, start + pick(rand, 3)); // 0..2 lines replaced (0: an insertion)
    const lines = randomLines(rand, end === start ? 1 + pick(rand, 2) : pick(rand, 3), `${tag}${edits.length}-`, false);
    edits.push({ start, end, lines });
    pos = end + 1;
  }
  return edits;
}

function apply(base: string[], edits: Edit[]): string[] {
  const out: string[] = [];
  let pos = 0;
  for (const e of [...edits].sort((a, b) => a.start - b.start)) {
    out.push(...base.slice(pos, e.start), ...e.lines);
    pos = e.end;
  }
  return [...out, ...base.slice(pos)];
}

const withoutFinalNewline = (rand: () => number, lines: string[]) => {
  const text = lines.join('');
  return rand() < 0.3 && text.endsWith('\n') ? text.replace(/\r?\n$/, '') : text;
};

t.test('separated local and vendor edits both land', async (t) => {
  let checked = 0;
  for (let seed = 1; seed <= RUNS; seed++) {
    const rand = prng(seed);
    const base = randomLines(rand, pick(rand, 30), 'b', false);
    // One set of separated edits, dealt to the two sides: no two edits touch, so none overlap.
    const edits = randomEdits(rand, base.length, 'e');
    const local = edits.filter(() => rand() < 0.5);
    const theirs = edits.filter((e) => !local.includes(e));
    const expected = apply(base, edits).join('');
    const r = mergeLines(base.join(''), apply(base, local).join(''), apply(base, theirs).join(''));
    if (!r.clean || r.text !== expected) {
      t.fail(`seed ${seed}: ${JSON.stringify({ base, local, theirs, r })}`);
      return;
    }
    checked++;
  }
  t.equal(checked, RUNS);
});

t.test('no local change yields theirs exactly; no vendor change yields local exactly (with repeated lines, CRLF, no final newline)', async (t) => {
  let checked = 0;
  for (let seed = 1; seed <= RUNS; seed++) {
    const rand = prng(1000 + seed);
    const baseLines = randomLines(rand, pick(rand, 40), 'b', true);
    const base = withoutFinalNewline(rand, baseLines);
    const changed = withoutFinalNewline(rand, apply(baseLines, randomEdits(rand, baseLines.length, 'x')));
    const r1 = mergeLines(base, base, changed);
    const r2 = mergeLines(base, changed, base);
    const r3 = mergeLines(base, changed, changed);
    if (!(r1.clean && r1.text === changed && r2.clean && r2.text === changed && r3.clean && r3.text === changed)) {
      t.fail(`seed ${1000 + seed}: ${JSON.stringify({ base, changed, r1, r2, r3 })}`);
      return;
    }
    checked++;
  }
  t.equal(checked, RUNS, `${RUNS} texts merged as expected`);
});

t.test('through planEtcMerge: the same properties on files', async (t) => {
  const enc = new TextEncoder();
  const file = (text: string): FileEntry => ({ type: 'file', mode: 0o644, uid: 0, gid: 0, content: enc.encode(text) });
  let checked = 0;
  for (let seed = 1; seed <= 100; seed++) {
    const rand = prng(5000 + seed);
    const base = randomLines(rand, 1 + pick(rand, 20), 'b', false);
    const edits = randomEdits(rand, base.length, 'e');
    const local = edits.filter((_, i) => i % 2 === 0);
    const theirs = edits.filter((_, i) => i % 2 === 1);
    const plan = planEtcMerge(new Map([['f', file(base.join(''))]]), new Map([['f', file(apply(base, local).join(''))]]), new Map([['f', file(apply(base, theirs).join(''))]]));
    const a = plan.actions[0]!;
    const got = a.result?.type === 'file' ? new TextDecoder().decode(a.result.content) : null;
    if (got !== apply(base, edits).join('') || a.action === 'conflict') {
      t.fail(`seed ${5000 + seed}: ${a.action}/${a.reason}: ${JSON.stringify(got)}`);
      return;
    }
    checked++;
  }
  t.equal(checked, 100, '100 files merged as expected');
});

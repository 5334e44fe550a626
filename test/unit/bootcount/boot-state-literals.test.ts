/**
 * Every boot-state change goes through next() in src/bootcount/state.ts, so the model the property
 * tests drive is the one that runs. This scans src/ outside bootcount/ for a BootState built by
 * hand: an object literal with a `lastGood` key (only BootState has it), or one that spreads
 * another object and sets `order`, `slots`, `lastGood` or `rescue` ({ ...s, order: … }).
 */
import t from 'tap';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import ts from 'typescript';

const SRC = join(import.meta.dirname, '../../../src');
const STATE_KEYS = new Set(['order', 'slots', 'lastGood', 'rescue']);

/** Where `text` builds a BootState by hand, as "line: the literal's first line". */
function handBuiltStates(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isObjectLiteralExpression(node)) {
      const names = node.properties.map((p) => (p.name && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name)) ? p.name.text : null));
      const spreads = node.properties.some((p) => ts.isSpreadAssignment(p));
      if (names.includes('lastGood') || (spreads && names.some((n) => n !== null && STATE_KEYS.has(n)))) {
        const { line } = source.getLineAndCharacterOfPosition(node.getStart());
        found.push(`${line + 1}: ${node.getText().split('\n')[0]}`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

t.test('the scan finds a hand-built state and passes what is not one', async (t) => {
  t.equal(handBuiltStates('x.ts', 'const a = { ...s, order: [b, c] };').length, 1, 'a spread with order');
  t.equal(handBuiltStates('x.ts', 'const a = { order: o, slots: x, lastGood: l, rescue: false };').length, 1, 'a full literal');
  t.equal(handBuiltStates('x.ts', 'f((s) => ({ ...next(s, e), rescue: true }));').length, 1, 'a spread with rescue');
  t.equal(handBuiltStates('x.ts', 'const j = { order: [...s.order], last_good: s.lastGood, rescue: s.rescue };').length, 0, 'a JSON report of the state');
  t.equal(handBuiltStates('x.ts', 'const j = { ...c, rescue: r.rescue === true ? 1 : 0 };').length, 1, 'errs on the side of reporting');
});

t.test('no BootState is built by hand outside src/bootcount/', async (t) => {
  const files = (await readdir(SRC, { recursive: true })).filter((f) => f.endsWith('.ts') && !f.startsWith(`bootcount/`));
  t.ok(files.length > 50, `scanned ${files.length} files`);
  const found: string[] = [];
  for (const f of files) for (const hit of handBuiltStates(f, await readFile(join(SRC, f), 'utf8'))) found.push(`src/${relative(SRC, join(SRC, f))}:${hit}`);
  t.same(found, [], 'build the state with next(state, event) (src/bootcount/state.ts) instead');
});

/**
 * The `data` of every LarchError is part of the --json error contract: every `new LarchError(` site
 * gives data (src/errors.ts makes it required, so tsc refuses a site without; this test says where,
 * and covers what tsc cannot: the keys), and its keys are snake_case (checked at every `data: {` literal,
 * shorthand keys included).
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../helpers.ts';

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Each occurrence of `head` up to its balanced closing bracket (`head` ends with the opening one). */
function balanced(text: string, head: string): string[] {
  const open = head.at(-1)!;
  const close = open === '{' ? '}' : ')';
  const out: string[] = [];
  for (let i = text.indexOf(head); i >= 0; i = text.indexOf(head, i + 1)) {
    let depth = 0;
    for (let k = i + head.length - 1; k < text.length; k++) {
      if (text[k] === open) depth++;
      else if (text[k] === close && --depth === 0) {
        out.push(text.slice(i, k + 1));
        break;
      }
    }
  }
  return out;
}

/** `data: { ... }` literals. */
const dataLiterals = (text: string) => balanced(text, 'data: {');
/** The keys of a data literal, shorthand ones (`{ path }`) included; not `${...}` in a template. */
const literalKeys = (lit: string) => [...lit.matchAll(/(?:(?<!\$)\{|,)\s*([A-Za-z_$][\w$]*)\s*(?=[:,}])/g)].map((m) => m[1]);
const isSnake = (key: string) => /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(key);
/** `new LarchError(...)` calls whose options give no data (`data: X`, or shorthand `{ data }`), or an empty `data: {}`. */
const sitesWithoutData = (text: string) => balanced(text, 'new LarchError(').filter((call) => !/\bdata\s*[:,}]/.test(call) || /\bdata:\s*\{\s*\}/.test(call));

const files = sources(join(ROOT, 'src'));

t.test('every data key written in the source is snake_case', async (t) => {
  const bad: string[] = [];
  for (const f of files) {
    for (const lit of dataLiterals(readFileSync(f, 'utf8'))) {
      for (const key of literalKeys(lit)) if (!isSnake(key)) bad.push(`${f.slice(ROOT.length)}: ${key}`);
    }
  }
  t.same(bad, [], 'no camelCase data key');
});

t.test('the scanner finds sites without data and camelCase keys', async (t) => {
  const text = [
    "throw new LarchError('USAGE', `bad ${f(x)}`, { hint: 'h' });",
    "throw new LarchError('IO', 'the data is bad');",
    "throw new LarchError('IO', 'm', { data: { path, tool: 'tar' } });",
    "throw new LarchError('IO', 'm', {\n  hint: 'h',\n  data,\n});",
    "throw new LarchError('IO', 'm', { data: { fooBar: 1, url: `${baseUrl}x`, bazQux } });",
    "throw new LarchError('IO', 'm', { data: {} });",
  ].join('\n');
  t.equal(sitesWithoutData(text).length, 3, 'a site with a hint only, one whose message says "data" and one with empty data have no data');
  t.same(dataLiterals(text).flatMap(literalKeys).filter((k) => !isSnake(k)), ['fooBar', 'bazQux'], 'camelCase keys, shorthand too; not a ${} in a template');
});

t.test('every LarchError carries data', async (t) => {
  const without = files.flatMap((f) => sitesWithoutData(readFileSync(f, 'utf8')).map((c) => `${f.slice(ROOT.length)}: ${c.slice(0, 100)}`));
  t.same(without, [], 'give each site data: what a script needs without parsing the message (the path, the id, the value, the limit)');
});

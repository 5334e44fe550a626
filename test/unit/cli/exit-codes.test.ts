/** The exit-code table is written once (src/errors.ts): docs/cli.md holds it, and every help text's EXIT STATUS agrees with it. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCommands } from '../../../src/cli/commands/index.ts';
import { ERROR_CODES, type ErrorCode, exitCodeTable } from '../../../src/errors.ts';
import { ROOT } from '../../helpers.ts';

const commands = await loadCommands();

t.test("docs/cli.md's table is the one made from ERROR_CODES", async (t) => {
  const doc = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
  t.ok(doc.includes(exitCodeTable()), "docs/cli.md holds exitCodeTable() verbatim (regenerate it: node --import tsx -e \"import('./src/errors.ts').then((m) => process.stdout.write(m.exitCodeTable()))\")");
  t.match(exitCodeTable(), /\| 14 \| `REFUSED` \|/, 'REFUSED has its own exit code');
});

/** The EXIT STATUS section of a help text. */
function exitStatus(help: string): string {
  const m = /\nEXIT STATUS\n([\s\S]*?)(?:\n\n[A-Z]|\s*$)/.exec(help);
  return m ? m[1] : '';
}

const EXITS = new Set([0, 1, 141, ...Object.values(ERROR_CODES).map((c) => c.exit)]);

/** Each "N (CODE)" / "N `CODE`" pair, and each exit number an item starts with. */
export function exitStatusProblems(text: string): string[] {
  const problems: string[] = [];
  for (const m of text.matchAll(/\b(\d+)\s*(?:\(`?([A-Z][A-Z_]{2,})`?\)|`([A-Z][A-Z_]{2,})`)/g)) {
    const code = (m[2] ?? m[3]) as ErrorCode;
    if (!(code in ERROR_CODES)) problems.push(`'${m[0]}': no code ${code} in ERROR_CODES`);
    else if (ERROR_CODES[code].exit !== Number(m[1])) problems.push(`'${m[0]}': ${code} exits ${ERROR_CODES[code].exit}`);
  }
  for (const m of text.matchAll(/(?:^|;|\bor)\s+(\d+)\b(?![ -]?(?:s\b|ms\b|%|bytes|tries|KiB|MiB))/gm)) {
    if (!EXITS.has(Number(m[1]))) problems.push(`exit ${m[1]} is not in the table`);
  }
  return problems;
}

t.test('the checker finds a wrong pair and an unknown exit', async (t) => {
  t.same(exitStatusProblems('  0 done; 4 (USAGE) bad'), ["'4 (USAGE)': USAGE exits 2"]);
  t.same(exitStatusProblems('  0 done; 77 broken'), ['exit 77 is not in the table']);
  t.same(exitStatusProblems('  0 done; 14 (REFUSED) the state forbids it; 2 usage'), []);
});

t.test("every command's EXIT STATUS names codes with their table exit", async (t) => {
  for (const c of commands) {
    const section = exitStatus(c.help);
    t.not(section.trim(), '', `${c.name}: has an EXIT STATUS section`);
    t.same(exitStatusProblems(section), [], `${c.name}: EXIT STATUS agrees with ERROR_CODES`);
  }
});

/**
 * The CLI is thin: a command file maps flags to library calls and printers, and never imports
 * another command file (shared option parsing and printers live in src/cli/, the work below it).
 * Only the command table (index.ts) imports them all; _repo.ts is a shared helper, not a command.
 */
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../helpers.ts';

const DIR = join(ROOT, 'src/cli/commands');
const NOT_COMMANDS = new Set(['index.ts', '_repo.ts']);

t.test('command files do not import each other', async (t) => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.ts'));
  t.ok(files.length > 10, 'found the command files');
  for (const f of files.filter((f) => f !== 'index.ts')) {
    const text = readFileSync(join(DIR, f), 'utf8');
    const siblings = [...text.matchAll(/(?:from|import\()\s*'\.\/([^']+)'/g)].map((m) => m[1]!).filter((s) => !NOT_COMMANDS.has(s));
    t.same(siblings, [], `${f} imports no other command file`);
  }
});

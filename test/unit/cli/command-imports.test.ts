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

t.test('the command table names every command once, each loaded from the module that defines it, none imported up front', async (t) => {
  const { COMMAND_NAMES, loadCommand } = await import('../../../src/cli/commands/index.ts');
  const defined = new Set<string>();
  for (const f of readdirSync(DIR).filter((f) => f.endsWith('.ts') && !NOT_COMMANDS.has(f))) {
    for (const value of Object.values(await import(join(DIR, f)))) {
      for (const c of Array.isArray(value) ? value : [value]) if (c && typeof c === 'object' && typeof c.run === 'function' && typeof c.name === 'string') defined.add(c.name);
    }
  }
  t.same([...COMMAND_NAMES].sort(), [...defined].sort(), 'the table and the command modules hold the same names');
  t.equal(new Set(COMMAND_NAMES).size, COMMAND_NAMES.length, 'no name twice');
  for (const name of COMMAND_NAMES) t.equal((await loadCommand(name))?.name, name, `'${name}' loads from the module the table names`);
  t.equal(await loadCommand('no-such-command'), undefined, 'an unknown name is undefined');
  const index = readFileSync(join(DIR, 'index.ts'), 'utf8');
  t.same([...index.matchAll(/^import (?!type )[^;]*from '\.\/[^']+'/gm)].map((m) => m[0]), [], 'index.ts imports no command module statically');
});

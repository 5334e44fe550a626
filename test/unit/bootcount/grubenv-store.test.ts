/**
 * The grubenv store against the real grub-editenv (grub-common 2.06): both directions, byte for
 * byte, escaping, capacity, damaged blocks. A missing grub-editenv fails these tests.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { grubEnvStore } from '../../../src/bootcount/env-store.ts';
import { GRUBENV_SIGNATURE } from '../../../src/bootcount/grubenv.ts';
import { rejectsCode, tempDir } from '../../helpers.ts';

function editenv(file: string, ...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync('grub-editenv', [file, ...args], { encoding: 'utf8' });
  if (r.error) throw new Error(`grub-editenv could not run (${(r.error as NodeJS.ErrnoException).code}): install grub-common`);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
function editenvOk(file: string, ...args: string[]): string {
  const r = editenv(file, ...args);
  if (r.code !== 0) throw new Error(`grub-editenv ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const TRICKY: [string, string][] = [
  ['ORDER', 'B A'],
  ['spaces', '  lead and trail  '],
  ['eq', 'x=y=z'],
  ['bs', 'a\\b\\\\c'],
  ['multi', 'line1\nline2\n'],
  ['hash', '#not a comment'],
  ['utf8', 'grün ✓'],
];

/** What `grub-editenv list` prints for these variables: name=value lines, values unescaped. */
const listing = (vars: [string, string][]) => vars.map(([k, v]) => `${k}=${v}\n`).join('');

t.test('grub-editenv create/set, then larch reads the same values', async (t) => {
  const file = join(tempDir(t, 'larch-grubenv-'), 'grubenv');
  editenvOk(file, 'create');
  editenvOk(file, 'set', ...TRICKY.map(([k, v]) => `${k}=${v}`));
  const store = grubEnvStore(file, { lockPath: `${file}.lock` });
  t.same([...(await store.read())], TRICKY, 'values and order');
  t.equal(editenvOk(file, 'list'), listing(TRICKY), 'grub-editenv lists the same');
});

t.test('larch writes, grub-editenv lists the same; sequences of changes give byte-identical files', async (t) => {
  const dir = tempDir(t, 'larch-grubenv-');
  const ours = join(dir, 'ours');
  const theirs = join(dir, 'theirs');
  const store = grubEnvStore(ours, { lockPath: join(dir, 'lock') });
  await store.init(new Map());
  editenvOk(theirs, 'create');
  t.ok(readFileSync(ours).equals(readFileSync(theirs)), 'create: identical');

  const steps: { larch: (v: Map<string, string>) => unknown; tool: string[] }[] = [
    { larch: (v) => TRICKY.forEach(([k, val]) => v.set(k, val)), tool: ['set', ...TRICKY.map(([k, v]) => `${k}=${v}`)] },
    { larch: (v) => v.set('ORDER', 'A B C D'), tool: ['set', 'ORDER=A B C D'] },
    { larch: (v) => v.set('spaces', 'x'), tool: ['set', 'spaces=x'] },
    { larch: (v) => (v.delete('eq'), v.delete('nonexistent')), tool: ['unset', 'eq', 'nonexistent'] },
    { larch: (v) => v.set('A_TRY', '1'), tool: ['set', 'A_TRY=1'] },
    { larch: (v) => v.set('empty', ''), tool: ['set', 'empty='] },
  ];
  for (const [i, step] of steps.entries()) {
    await store.update(step.larch);
    editenvOk(theirs, ...step.tool);
    t.ok(readFileSync(ours).equals(readFileSync(theirs)), `step ${i} (${step.tool[0]}): byte-identical to grub-editenv`);
  }
  t.equal(editenvOk(ours, 'list'), editenvOk(theirs, 'list'), 'grub-editenv lists the larch file like its own');
  t.equal((await store.read()).get('multi'), 'line1\nline2\n');
  t.equal((await store.read()).get('empty'), '', 'grub keeps empty values; larch reads them as stored');
});

t.test('capacity: the 931st byte is refused by both, the file untouched', async (t) => {
  const dir = tempDir(t, 'larch-grubenv-');
  const file = join(dir, 'grubenv');
  editenvOk(file, 'create');
  const store = grubEnvStore(file, { lockPath: join(dir, 'lock') });
  await store.update((v) => v.set('v', 'x'.repeat(927)));
  t.equal(editenvOk(file, 'list'), `v=${'x'.repeat(927)}\n`, '930 bytes of entries fit');
  const before = readFileSync(file);
  const err = await rejectsCode(t, store.update((v) => v.set('v', 'x'.repeat(928))), 'ENV_FULL', 'refused');
  t.same(err.data, { needed_bytes: 931, available_bytes: 930, env_size_bytes: 1024 });
  t.ok(readFileSync(file).equals(before), 'unchanged');
  t.equal(editenv(file, 'set', `v=${'x'.repeat(928)}`).code, 1, 'grub-editenv refuses the same');
});

t.test('a bigger hand-made block keeps its size', async (t) => {
  const dir = tempDir(t, 'larch-grubenv-');
  const file = join(dir, 'grubenv');
  writeFileSync(file, GRUBENV_SIGNATURE.padEnd(2048, '#'));
  const store = grubEnvStore(file, { lockPath: join(dir, 'lock') });
  await store.update((v) => v.set('big', 'y'.repeat(1500)));
  t.equal(statSync(file).size, 2048);
  t.equal(editenvOk(file, 'list'), `big=${'y'.repeat(1500)}\n`);
});

t.test('writes are atomic (new inode, mode kept); no change, no write', async (t) => {
  const dir = tempDir(t, 'larch-grubenv-');
  const file = join(dir, 'grubenv');
  editenvOk(file, 'create');
  spawnSync('chmod', ['600', file]);
  const store = grubEnvStore(file, { lockPath: join(dir, 'lock') });
  const before = statSync(file);
  await store.update((v) => v.set('a', '1'));
  const after = statSync(file);
  t.not(after.ino, before.ino, 'renamed into place');
  t.equal(after.mode & 0o777, 0o600, 'mode kept');
  const r = await store.update((v) => v.delete('nonexistent'));
  t.equal(r.changed, false);
  t.equal(statSync(file).ino, after.ino, 'untouched');
});

t.test('damaged or missing blocks', async (t) => {
  const dir = tempDir(t, 'larch-grubenv-');
  const file = join(dir, 'grubenv');
  const store = grubEnvStore(file, { lockPath: join(dir, 'lock') });
  await rejectsCode(t, store.read(), 'NOT_FOUND', 'read of a missing file');
  t.equal(existsSync(file), false, 'read creates nothing');
  await store.update((v) => v.set('A_OK', '1'));
  t.equal(statSync(file).size, 1024, 'set creates a 1024-byte block, as grub-editenv does');
  t.equal(editenvOk(file, 'list'), 'A_OK=1\n');

  writeFileSync(file, '# GRUB Environment Blok\n'.padEnd(1024, '#'));
  const bad = await rejectsCode(t, store.read(), 'ENV_CORRUPT', 'refused');
  t.match(bad.message, new RegExp(`grubenv '${file}' is not a GRUB environment block`));
  await rejectsCode(t, store.update((v) => v.set('a', '1')), 'ENV_CORRUPT', 'no write over a damaged block');
  t.equal(editenv(file, 'list').code, 1, 'grub-editenv refuses it too');
  await rejectsCode(t, store.init(new Map()), 'EXISTS', 'init needs force over a damaged block');
  await store.init(new Map([['ORDER', 'A B']]), { force: true });
  t.equal(editenvOk(file, 'list'), 'ORDER=A B\n', 'init --force rewrote it');

  writeFileSync(file, GRUBENV_SIGNATURE + 'a=1\nb=2');
  const cut = await rejectsCode(t, store.read(), 'ENV_CORRUPT', 'a value cut off');
  t.match(cut.message, /line 3/);
});

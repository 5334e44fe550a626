/** The grubenv codec, pure: layout, escaping, capacity, order, damaged blocks. */
import t from 'tap';
import { rejectsCode } from '../../helpers.ts';
import { GRUBENV_SIGNATURE, GRUBENV_WARNING, decodeGrubenv, encodeGrubenv, grubenvBytesNeeded } from '../../../src/bootcount/grubenv.ts';

const vars = (o: Record<string, string>) => new Map(Object.entries(o));
const text = (b: Uint8Array) => Buffer.from(b).toString('latin1');
const block = (body: string, size = 1024) => Buffer.from((GRUBENV_SIGNATURE + GRUBENV_WARNING + body).padEnd(size, '#'), 'latin1');

t.test('an empty block is what grub-editenv create writes: 94-byte header, 930 #', async (t) => {
  const b = encodeGrubenv(new Map());
  t.equal(b.length, 1024);
  t.equal(text(b.subarray(0, 94)), GRUBENV_SIGNATURE + GRUBENV_WARNING);
  t.equal(text(b.subarray(94)), '#'.repeat(930));
  t.same(decodeGrubenv(b), new Map());
});

t.test('entries in map order, escaping of backslash and newline', async (t) => {
  const v = vars({ ORDER: 'B A', bs: 'a\\b', multi: 'line1\nline2', eq: 'x=y', sp: ' lead and trail ', empty: '' });
  const b = encodeGrubenv(v);
  t.equal(text(b).slice(94, 94 + 71), 'ORDER=B A\nbs=a\\\\b\nmulti=line1\\\nline2\neq=x=y\nsp= lead and trail \nempty=\n', 'escaped as grub_envblk_set does');
  t.equal(b[94 + 71], 0x23, 'then # padding');
  const back = decodeGrubenv(b);
  t.same([...back], [...v], 'decodes to the same values in the same order');
  t.equal(grubenvBytesNeeded(v), 94 + 71);
});

t.test('capacity: 930 bytes of entries in a 1024-byte block (as grub-editenv makes it)', async (t) => {
  t.doesNotThrow(() => encodeGrubenv(vars({ v: 'x'.repeat(927) })), 'v= + 927 chars + newline = 930 fits');
  const err = await rejectsCode(t, () => encodeGrubenv(vars({ v: 'x'.repeat(928) })), 'ENV_FULL', '928 chars');
  t.same(err.data, { needed_bytes: 931, available_bytes: 930, env_size_bytes: 1024 });
  t.equal(encodeGrubenv(vars({ v: 'x'.repeat(1500) }), 2048).length, 2048, 'a bigger block holds more');
  await rejectsCode(t, () => encodeGrubenv(vars({ v: '\\'.repeat(465) })), 'ENV_FULL', 'escapes count: 465 backslashes take 930 + 3 bytes');
});

t.test('names and values GRUB cannot carry are refused', async (t) => {
  for (const name of ['', 'a=b', 'a\nb', '#x', 'a\\b', 'a\0']) await rejectsCode(t, () => encodeGrubenv(vars({ [name]: '1' })), 'INVALID_INPUT', JSON.stringify(name));
  await rejectsCode(t, () => encodeGrubenv(vars({ a: 'x\0' })), 'INVALID_INPUT', 'NUL in a value');
});

t.test('decoding: comments anywhere, duplicates, a block without the warning line, a full block', async (t) => {
  const b = Buffer.from(GRUBENV_SIGNATURE + 'a=1\n# note\nb=x\\#y\na=2\n'.padEnd(200, '#'), 'latin1');
  t.same([...decodeGrubenv(b)], [['a', '2'], ['b', 'x#y']], 'first place, last value; \\# unescapes to #');
  const full = Buffer.from(GRUBENV_SIGNATURE + 'k=' + 'v'.repeat(40) + '\n', 'latin1');
  t.equal(decodeGrubenv(full).get('k'), 'v'.repeat(40), 'no padding left');
});

t.test('damaged blocks are ENV_CORRUPT naming the file and line', async (t) => {
  const cases: [string, Uint8Array, RegExp][] = [
    ['wrong signature', Buffer.from('# GRUB environment block\n'.padEnd(1024, '#')), /not a GRUB environment block/],
    ['zeros', new Uint8Array(1024), /not a GRUB environment block/],
    ['too short', Buffer.from('# GRUB'), /not a GRUB environment block/],
    ['line without =', block('a=1\nnovalue\nb=2\n'), /line 4: no '=' in 'novalue'/],
    ['empty name', block('=1\n'), /line 3: an entry with an empty name/],
    ['value cut off', Buffer.from(GRUBENV_SIGNATURE + 'a=1\nb=unterminated', 'latin1'), /line 3: the value of 'b' runs to the end/],
    ['trailing backslash', Buffer.from(GRUBENV_SIGNATURE + 'b=x\\', 'latin1'), /runs to the end/],
    ['NUL inside', block('a=1\0\n'), /NUL/],
  ];
  for (const [comment, bytes, message] of cases) {
    const err = await rejectsCode(t, () => decodeGrubenv(bytes, "grubenv '/boot/grub/grubenv'"), 'ENV_CORRUPT', comment);
    t.match(err.message, message, comment);
    t.match(err.message, /^grubenv '\/boot\/grub\/grubenv'/, `${comment}: names the file`);
  }
});

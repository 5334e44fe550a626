/** The U-Boot env codec, pure: byte vectors from mkenvimage, the copy-selection table, flags, capacity, bad input. */
import t from 'tap';
import { createHash } from 'node:crypto';
import { rejectsCode } from '../../helpers.ts';
import { crc32, crc32Table } from '../../../src/bootcount/_crc32.ts';
import {
  type UbootEnvLayout,
  checkVarName,
  decodeEntries,
  decodeEnv,
  encodeCopy,
  envBytesNeeded,
  inspectCopy,
  nextFlags,
  parseEnvText,
  selectCopy,
} from '../../../src/bootcount/uboot-env.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const sha16 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex').slice(0, 16);
const vars = (o: Record<string, string>) => new Map(Object.entries(o));

const BOOT = vars({ BOOT_ORDER: 'A B', BOOT_A_LEFT: '3', BOOT_B_LEFT: '3' });

t.test('CRC-32 check value, native and table implementations agree', async (t) => {
  const nine = new TextEncoder().encode('123456789');
  t.equal(crc32(nine), 0xcbf43926);
  t.equal(crc32Table(nine), 0xcbf43926);
  const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * 131) & 0xff);
  t.equal(crc32Table(data), crc32(data), 'table = native on 5000 bytes');
});

// Vectors: `printf '<entries>' | mkenvimage [-r] [-b] -p 0 -s 0x4000` (u-boot-tools 2023.01),
// input already sorted as larch writes it. First 8 bytes and sha256 prefix of the 16384-byte image.
const MKENVIMAGE_SORTED = [
  { comment: 'single copy, 0x00 padding', layout: { sizeBytes: 0x4000, redundant: false }, flags: undefined, first8: '60218a1d424f4f54', sha: '3e8e15ad69ea405a' },
  { comment: 'redundant (-r), flags 1', layout: { sizeBytes: 0x4000, redundant: true }, flags: 1, first8: '36745b3201424f4f', sha: 'c5291700d21c09e8' },
  { comment: 'big-endian CRC (-b)', layout: { sizeBytes: 0x4000, redundant: false, byteOrder: 'big' as const }, flags: undefined, first8: '1d8a2160424f4f54', sha: 'd4ff791a30b2e6a3' },
];

t.test('encodeCopy reproduces mkenvimage byte for byte', async (t) => {
  for (const v of MKENVIMAGE_SORTED) {
    const img = encodeCopy(BOOT, v.layout, { flags: v.flags });
    t.equal(img.length, 0x4000, `${v.comment}: size`);
    t.equal(hex(img.subarray(0, 8)), v.first8, `${v.comment}: CRC and start`);
    t.equal(sha16(img), v.sha, `${v.comment}: whole image`);
    t.same(decodeEnv(v.layout.redundant ? [img, new Uint8Array(0x4000).fill(0xff)] : [img], v.layout).vars, BOOT, `${v.comment}: decodes back`);
  }
  // Research §1.2: size 0x40, data "a=1\0\0" padded with 0xFF -> stored CRC e5 b9 f4 62.
  t.equal(hex(encodeCopy(vars({ a: '1' }), { sizeBytes: 0x40, redundant: false }, { padByte: 0xff }).subarray(0, 4)), 'e5b9f462', 'small vector');
});

/** Builds an image the way mkenvimage does: entries in the given order, 0xFF padding. */
function mkenvimageLike(entries: string[], layout: UbootEnvLayout, flags = 1, pad = 0xff): Uint8Array {
  const header = layout.redundant ? 5 : 4;
  const img = new Uint8Array(layout.sizeBytes).fill(pad);
  const data = Buffer.from(entries.map((e) => `${e}\0`).join('') + '\0');
  img.set(data, header);
  if (layout.redundant) img[4] = flags;
  new DataView(img.buffer).setUint32(0, crc32(img.subarray(header)), layout.byteOrder !== 'big');
  return img;
}

t.test('decodes mkenvimage images in input order (vectors made with mkenvimage, 0xFF and 0x00 padding, -r, -b)', async (t) => {
  const entries = ['BOOT_ORDER=A B', 'BOOT_A_LEFT=3', 'BOOT_B_LEFT=3'];
  const cases = [
    { comment: 'default', layout: { sizeBytes: 0x4000, redundant: false }, pad: 0xff, first8: '8013cb81424f4f54', sha: '662f73652c1f6915' },
    { comment: '-r', layout: { sizeBytes: 0x4000, redundant: true }, pad: 0xff, first8: '0d3d6f7a01424f4f', sha: '608f904e600291d6' },
    { comment: '-p 0', layout: { sizeBytes: 0x4000, redundant: false }, pad: 0, first8: 'adc1d8c0424f4f54', sha: '6839593a975dfb28' },
    { comment: '-b', layout: { sizeBytes: 0x4000, redundant: false, byteOrder: 'big' as const }, pad: 0xff, first8: '81cb1380424f4f54', sha: '4d7179b8bd8a302c' },
  ];
  for (const c of cases) {
    const img = mkenvimageLike(entries, c.layout, 1, c.pad);
    t.equal(hex(img.subarray(0, 8)), c.first8, `${c.comment}: first bytes match the mkenvimage vector`);
    t.equal(sha16(img), c.sha, `${c.comment}: image matches the mkenvimage vector`);
    const decoded = decodeEnv(c.layout.redundant ? [img, img] : [img], c.layout);
    t.same([...decoded.vars.keys()], ['BOOT_ORDER', 'BOOT_A_LEFT', 'BOOT_B_LEFT'], `${c.comment}: stored order kept`);
    t.same(decoded.vars, BOOT, `${c.comment}: values`);
  }
  const be = mkenvimageLike(entries, { sizeBytes: 0x4000, redundant: false, byteOrder: 'big' });
  await rejectsCode(t, () => decodeEnv([be], { sizeBytes: 0x4000, redundant: false }), 'ENV_CORRUPT', 'a big-endian image read as little-endian is refused', { hint: /big-endian/ });
});

t.test('encoding: sorted by name bytes, empty values dropped, terminator, padding', async (t) => {
  const img = encodeCopy(vars({ b: '2', B: 'x', a: '1', gone: '' }), { sizeBytes: 32, redundant: false }, { padByte: 0xee });
  t.equal(Buffer.from(img.subarray(4, 17)).toString('latin1'), 'B=x\0a=1\0b=2\0\0', 'uppercase first (strcmp), `gone=` not written');
  t.ok(img.subarray(17).every((b) => b === 0xee), 'padded to the end');
  t.equal(envBytesNeeded(vars({ b: '2', B: 'x', a: '1', gone: '' })), 13);
  const redund = encodeCopy(vars({ a: '1' }), { sizeBytes: 32, redundant: true }, { flags: 7 });
  t.equal(redund[4], 7, 'flags byte after the CRC');
  t.equal(new DataView(redund.buffer).getUint32(0, true), crc32(redund.subarray(5)), 'CRC covers the data area only, not the flags');
  t.throws(() => encodeCopy(vars({ a: '1' }), { sizeBytes: 32, redundant: true }), RangeError, 'a redundant copy needs flags');
  t.same(decodeEnv([encodeCopy(vars({ 'näme': 'välue ✓', multi: 'line1\nline2', '.flags': 'x:sa' }), { sizeBytes: 64, redundant: false })], { sizeBytes: 64, redundant: false }).vars, vars({ '.flags': 'x:sa', multi: 'line1\nline2', 'näme': 'välue ✓' }), 'UTF-8 and newlines round-trip');
});

t.test('capacity: entries plus the final empty string must fit the data area', async (t) => {
  const layout = { sizeBytes: 0x40, redundant: false }; // 60-byte data area
  // a=1\0 (4) + big=<v>\0 (5 + n) + \0 (1) = 10 + n <= 60
  t.doesNotThrow(() => encodeCopy(vars({ a: '1', big: 'x'.repeat(50) }), layout), '50 chars fit exactly (ufw rule)');
  const err = await rejectsCode(t, () => encodeCopy(vars({ a: '1', big: 'x'.repeat(51) }), layout), 'ENV_FULL', '51 chars do not fit', { message: /61 bytes.*60/ });
  t.same(err.data, { needed_bytes: 61, available_bytes: 60, env_size_bytes: 64 }, 'names the sizes');
  await rejectsCode(t, () => encodeCopy(vars({ a: 'x'.repeat(56) }), { sizeBytes: 0x40, redundant: true }), 'ENV_FULL', 'redundant header is 5 bytes');
});

t.test('names with = or NUL, values with NUL, and empty names are refused', async (t) => {
  for (const name of ['', 'a=b', 'a\0b']) await rejectsCode(t, () => encodeCopy(vars({ [name]: '1' }), { sizeBytes: 64, redundant: false }), 'INVALID_INPUT', JSON.stringify(name));
  await rejectsCode(t, () => encodeCopy(vars({ a: 'x\0y' }), { sizeBytes: 64, redundant: false }), 'INVALID_INPUT', 'NUL in value');
  t.doesNotThrow(() => checkVarName('BOOT_ORDER'));
});

t.test('decoding entries: stops at the first empty string, skips entries without =, last duplicate wins', async (t) => {
  const data = Buffer.from('a=1\0junk\0b=2\0a=3\0\0stale=9\0\0');
  t.same(decodeEntries(data), vars({ a: '3', b: '2' }), 'stale bytes after the terminator are not data');
  t.same(decodeEntries(Buffer.from('a=1\0b=2\0')), vars({ a: '1', b: '2' }), 'area filled to the last byte without an empty string (libubootenv off-by-one) is accepted');
  t.same(decodeEntries(Buffer.from('\0a=1\0')), new Map(), 'empty env');
  t.same(decodeEntries(Buffer.from('e=\0\0')), vars({ e: '' }), 'an empty value is reported as stored (as fw_printenv lists it)');
  await rejectsCode(t, () => decodeEntries(Buffer.from('a=1\0b=unterminated')), 'ENV_CORRUPT', 'an entry running off the end');
});

t.test('selectCopy: the measured table (docs/formats.md §9.1)', async (t) => {
  const v = (flags: number) => ({ crcValid: true, flags });
  const bad = (flags: number) => ({ crcValid: false, flags });
  const table: [string, Parameters<typeof selectCopy>[0], 0 | 1 | null][] = [
    ['1 vs 1: tie, copy 0', [v(1), v(1)], 0],
    ['1 vs 2', [v(1), v(2)], 1],
    ['2 vs 1', [v(2), v(1)], 0],
    ['255 vs 0: wrap', [v(255), v(0)], 1],
    ['0 vs 255: wrap', [v(0), v(255)], 0],
    ['254 vs 0: no wrap', [v(254), v(0)], 0],
    ['0 vs 254', [v(0), v(254)], 1],
    ['bad CRC with higher flags loses', [bad(2), v(1)], 1],
    ['valid copy 0, bad copy 1', [v(0), bad(9)], 0],
    ['both bad', [bad(1), bad(2)], null],
  ];
  for (const [comment, copies, winner] of table) t.equal(selectCopy(copies), winner, comment);
  t.equal(selectCopy([v(1), v(0xff)], 'boolean'), 1, 'boolean scheme (NOR): 0xFF wins');
  t.equal(selectCopy([v(1), v(0)], 'boolean'), 0, 'boolean scheme: active beats obsolete');
});

t.test('nextFlags counts up and wraps 255 -> 0', async (t) => {
  t.equal(nextFlags(1), 2);
  t.equal(nextFlags(254), 255);
  t.equal(nextFlags(255), 0);
});

t.test('decodeEnv: redundant selection, one bad copy, both bad names every copy', async (t) => {
  const layout = { sizeBytes: 0x100, redundant: true };
  const old = encodeCopy(vars({ v: 'old' }), layout, { flags: 255 });
  const cur = encodeCopy(vars({ v: 'new' }), layout, { flags: 0 });
  const d = decodeEnv([old, cur], layout);
  t.equal(d.active, 1, 'wrap: flags 0 beats 255');
  t.equal(d.flags, 0);
  t.equal(d.vars.get('v'), 'new');
  const torn = Uint8Array.from(cur);
  torn[40] ^= 0xff;
  t.equal(decodeEnv([old, torn], layout).vars.get('v'), 'old', 'a copy with a bad CRC is skipped');
  t.same(inspectCopy(torn, layout).crcValid, false);
  const blank = new Uint8Array(0x100).fill(0xff);
  await rejectsCode(t, () => decodeEnv([blank, blank], layout, { where: ["'/x' at offset 0x0", "'/x' at offset 0x100"] }), 'ENV_CORRUPT', 'both copies bad: names both, says the storage is blank, hint: initialise with a whole env', {
    message: /'\/x' at offset 0x0: bad CRC.*'\/x' at offset 0x100: bad CRC/,
    data: { blank: true },
    hint: /init/,
  });
  t.throws(() => decodeEnv([old], layout), RangeError, 'a redundant env needs two copies');
});

t.test('parseEnvText reads mkenvimage/fw_setenv -f text', async (t) => {
  t.same(parseEnvText('# comment\n\nbootcmd=run a=b\r\nBOOT_ORDER=A B\nempty=\n'), vars({ bootcmd: 'run a=b', BOOT_ORDER: 'A B' }));
  await rejectsCode(t, () => parseEnvText('a=1\nnovalue\n', 'defaults.txt'), 'INVALID_INPUT', 'a line without =', { message: /defaults\.txt line 2/ });
  await rejectsCode(t, () => parseEnvText('=1\n'), 'INVALID_INPUT', 'empty name');
});

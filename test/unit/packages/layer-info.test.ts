/** The layer metadata of a derived commit (formats.md §12.2) and the preview of its upgrade. */
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { LAYER_KEYS, type LayerInfo, decodeLayerInfo, encodeLayerInfo, isDerived, layerSummary } from '../../../src/packages/layer-info.ts';
import { previewLayeredUpgrade } from '../../../src/packages/layer-preview.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from '../../../src/store/cbor.ts';

const BASE = 'ab'.repeat(32);
const p = (name: string, version: string, architecture = 'amd64') => ({ name, version, architecture });
const INFO: LayerInfo = {
  base: { commit: BASE, version: '1.2' },
  layered: [{ name: 'jq', version: '1.6-2.1' }, { name: 'htop', version: '3.2.2-2' }],
  overrides: { replaced: [{ name: 'openssl', version: '3.0.13-1', base_version: '3.0.11-1' }], removed: [{ name: 'nano', version: '7.2-1' }] },
  local: true,
};
/** Metadata as a device reads it: through canonical CBOR (maps come back as Map). */
const stored = (entries: Record<string, CborValue>) => decodeCanonical(encodeCanonical({ metadata: entries }))!;
const meta = (entries: Record<string, CborValue>) => (stored(entries) as Map<string, CborValue>).get('metadata') as Map<string, CborValue>;

t.test('encode then decode (through CBOR): the layer, lists sorted by name', async (t) => {
  const decoded = decodeLayerInfo(meta({ 'larch.ref': 'os/stable', ...encodeLayerInfo(INFO) }), 'c');
  t.same(decoded, { ...INFO, layered: [{ name: 'htop', version: '3.2.2-2' }, { name: 'jq', version: '1.6-2.1' }] });
  t.same(Object.keys(encodeLayerInfo(INFO)).sort(), Object.values(LAYER_KEYS).sort(), 'exactly the contract keys');
  t.same(layerSummary('cd'.repeat(32), '1.2', decoded), { base: { commit: BASE, version: '1.2' }, layered: ['htop', 'jq'], overrides: { replaced: ['openssl'], removed: ['nano'] }, local: true });
});

t.test('a vendor commit is not derived: null, and its summary is itself with nothing layered', async (t) => {
  const m = meta({ 'larch.ref': 'os/stable', 'larch.packages': [] });
  t.equal(isDerived(m), false);
  t.equal(decodeLayerInfo(m, 'c'), null);
  t.same(layerSummary('cd'.repeat(32), '7', null), { base: { commit: 'cd'.repeat(32), version: '7' }, layered: [], overrides: { replaced: [], removed: [] }, local: false });
});

t.test('lists may be absent (empty); larch.local absent is false', async (t) => {
  t.same(decodeLayerInfo(meta({ 'larch.base.commit': BASE, 'larch.base.version': '1' }), 'c'), { base: { commit: BASE, version: '1' }, layered: [], overrides: { replaced: [], removed: [] }, local: false });
});

t.test('malformed values: INVALID_INPUT naming the commit, the key and the problem', async (t) => {
  const good = encodeLayerInfo(INFO);
  const cases: [string, Record<string, CborValue>, RegExp][] = [
    ['base commit not an id', { 'larch.base.commit': 'abc' }, /larch\.base\.commit is not a commit id \(64 hex digits\): "abc"/],
    ['base commit missing', { 'larch.base.commit': undefined as unknown as CborValue }, /larch\.base\.commit is missing/],
    ['base version not text', { 'larch.base.version': 3 }, /larch\.base\.version is not text: 3/],
    ['layered not an array', { 'larch.layered': 'htop' }, /larch\.layered is not an array: "htop"/],
    ['entry not a map', { 'larch.layered': [['htop', '1']] }, /larch\.layered\[0\] is not a map \{name, version\}/],
    ['bad package name', { 'larch.layered': [{ name: 'Htop!', version: '1' }] }, /larch\.layered\[0\]\.name is not a Debian package name: "Htop!"/],
    ['bad version', { 'larch.overrides.removed': [{ name: 'nano', version: 'a b' }] }, /larch\.overrides\.removed\[0\]\.version is not a Debian version/],
    ['missing base_version', { 'larch.overrides.replaced': [{ name: 'openssl', version: '3' }] }, /larch\.overrides\.replaced\[0\]\.base_version is missing/],
    ['duplicate name', { 'larch.layered': [{ name: 'htop', version: '1' }, { name: 'htop', version: '2' }] }, /larch\.layered names htop twice/],
    ['local not a boolean', { 'larch.local': 'yes' }, /larch\.local is not true or false: "yes"/],
    ['bytes', { 'larch.base.version': new Uint8Array(3) }, /larch\.base\.version is not text: 3 bytes/],
  ];
  for (const [what, change, message] of cases) {
    const entries = { ...good, ...change };
    for (const [k, v] of Object.entries(entries)) if (v === undefined) delete entries[k];
    const err = t.throws(() => decodeLayerInfo(meta(entries), 'commit 1234 (slot B)'), what) as unknown as LarchError;
    t.ok(err instanceof LarchError && err.code === 'INVALID_INPUT', `${what}: INVALID_INPUT`);
    t.match(err.message, /^commit 1234 \(slot B\): layer metadata /, `${what}: names the commit`);
    t.match(err.message, message, `${what}: says what is wrong`);
    t.ok(err.hint, `${what}: with a hint`);
  }
});

t.test('upgrade preview: the new base with the layer re-applied, against the booted list', async (t) => {
  const oldBase = [p('busybox', '1:1.35.0-4'), p('libc6', '2.36-9'), p('nano', '7.2-1'), p('openssl', '3.0.11-1')];
  const booted = [p('busybox', '1:1.35.0-4'), p('htop', '3.2.2-2'), p('jq', '1.6-2.1'), p('libc6', '2.36-9'), p('libncursesw6', '6.4-4'), p('openssl', '3.0.13-1')];
  // The new base: busybox upgraded; jq now in the base; libncursesw6 too, older than the layer's; nano gone; openssl older than the override.
  const newBase = [p('busybox', '1:1.36.1-1'), p('jq', '1.7-1'), p('libc6', '2.36-9'), p('libncursesw6', '6.4-3'), p('openssl', '3.0.12-1')];
  const r = previewLayeredUpgrade(booted, INFO, oldBase, newBase);
  t.same(r.packages, {
    upgraded: [{ name: 'busybox', architecture: 'amd64', from: '1:1.35.0-4', to: '1:1.36.1-1' }, { name: 'jq', architecture: 'amd64', from: '1.6-2.1', to: '1.7-1' }],
    downgraded: [],
    added: [],
    removed: [],
  }, "the base's changes only: htop, the dependency's newer version and the override stay");
  t.notOk(r.packages.downgraded.some((c) => c.name === 'libncursesw6'), 'the dependency the layer brought at 6.4-4 is not taken back to the new base\'s 6.4-3');
  t.same(r.layer.reapplied, { layered: ['htop', 'jq'], replaced: ['openssl'], removed: ['nano'] });
  t.same(r.layer.notes.map((n) => [n.name, n.reason]), [['jq', 'in-new-base'], ['nano', 'not-in-new-base']]);

  const caughtUp = previewLayeredUpgrade(booted, INFO, oldBase, [...newBase.filter((x) => x.name !== 'openssl'), p('openssl', '3.0.13-1')]);
  t.same(caughtUp.layer.notes.find((n) => n.name === 'openssl'), { name: 'openssl', reason: 'base-not-older', message: "openssl: the new base has 3.0.13-1, not older than the override's 3.0.13-1" });

  // Without the booted base's list (pruned), the layer's own entries stand for the layer: the dependency is not known.
  const noBase = previewLayeredUpgrade(booted, INFO, null, newBase);
  t.same(noBase.packages.removed, [], 'libncursesw6 is in the new base: nothing removed');
  t.same(noBase.packages.downgraded, [{ name: 'libncursesw6', architecture: 'amd64', from: '6.4-4', to: '6.4-3' }], "the dependency is not known as the layer's: the new base's version");
  t.same(noBase.layer.notes.map((n) => [n.name, n.reason]), [['jq', 'in-new-base'], ['nano', 'not-in-new-base']]);
});

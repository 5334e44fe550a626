/** Product and hardware binding: ids checked, a commit's binding read, the first mismatch named; the summary's collection_id. */
import t from 'tap';
import { type Binding, bindingMismatch, bindingValueProblem, commitBinding } from '../../../src/store/binding.ts';
import { type Summary, decodeSummary, encodeSummary } from '../../../src/protocol/summary.ts';
import { checkCommitBinding, checkSummaryBinding, provisionBinding } from '../../../src/agent/product-binding.ts';
import { rejectsCode } from '../../helpers.ts';

const device: Binding = { collection_id: 'com.example.a', compatible: 'board-a', architecture: 'amd64' };
const none: Binding = { collection_id: null, compatible: null, architecture: null };
const meta = (m: Record<string, unknown>) => new Map(Object.entries(m)) as Map<string, never>;
const summary = (collection?: string): Summary => ({ serial: 1, created: 1, expires: 2, refs: {}, deltas: [], ...(collection ? { collectionId: collection } : {}) });
const ID = 'ab'.repeat(32);

t.test('ids: reverse-DNS collection ids, Debian architectures, compatible text without control characters', async (t) => {
  t.equal(bindingValueProblem('collection_id', 'com.example.gateway'), null);
  t.match(bindingValueProblem('collection_id', 'gateway'), /reverse-DNS/, 'one part is not a collection id');
  t.match(bindingValueProblem('collection_id', 'com..x'), /reverse-DNS/);
  t.equal(bindingValueProblem('architecture', 'arm64'), null);
  t.match(bindingValueProblem('architecture', 'ARM64'), /Debian architecture/);
  t.equal(bindingValueProblem('compatible', 'Acme Gadget v2'), null);
  t.match(bindingValueProblem('compatible', 'a\nb'), /control characters/);
  t.match(bindingValueProblem('compatible', ''), /1 to 255/);
  t.match(bindingValueProblem('compatible', 'x'.repeat(256)), /1 to 255/);
});

t.test('a commit binding: text values; other values never match a device', async (t) => {
  t.same(commitBinding(meta({ 'larch.collection_id': 'com.example.a', 'larch.compatible': 'board-a', 'larch.architecture': 'amd64', other: 1 })), device);
  t.same(commitBinding(meta({})), none, 'an older commit says nothing');
  const odd = commitBinding(meta({ 'larch.compatible': 7 }));
  t.equal(odd.compatible, '7');
  t.match(bindingMismatch(device, odd), { reason: 'incompatible', device: 'board-a', offered: '7' });
});

t.test('mismatch: the first field bound both sides to different values; unset on either side accepts', async (t) => {
  t.equal(bindingMismatch(device, device), null);
  t.equal(bindingMismatch(device, none), null, 'older commits and summaries are accepted');
  t.equal(bindingMismatch(none, { ...device, compatible: 'board-b' }), null, 'a device that recorded nothing accepts any');
  t.same(bindingMismatch(device, { collection_id: 'com.example.b' }), { reason: 'wrong-collection', field: 'collection_id', device: 'com.example.a', offered: 'com.example.b' });
  t.same(bindingMismatch(device, { architecture: 'arm64', compatible: 'board-b' }), { reason: 'wrong-architecture', field: 'architecture', device: 'amd64', offered: 'arm64' });
  t.same(bindingMismatch(device, { compatible: 'board-b' }), { reason: 'incompatible', field: 'compatible', device: 'board-a', offered: 'board-b' });
});

t.test('the summary carries collection_id only when set, and an older summary decodes without it', async (t) => {
  const older = decodeSummary(encodeSummary(summary()));
  t.notOk('collection_id' in older, 'no collection_id: none decoded');
  t.equal(decodeSummary(encodeSummary(summary('com.example.a'))).collectionId, 'com.example.a');
  t.not(Buffer.from(encodeSummary(summary())).toString('hex'), Buffer.from(encodeSummary(summary('com.example.a'))).toString('hex'));
});

t.test('the device refuses with REFUSED, data.reason and both values', async (t) => {
  await rejectsCode(t, () => checkSummaryBinding(device, summary('com.example.b'), 'http://x/'), 'REFUSED', 'summary of another collection', { data: { reason: 'wrong-collection', device: 'com.example.a', offered: 'com.example.b' } });
  t.doesNotThrow(() => checkSummaryBinding(device, summary(), 'http://x/'), 'a summary without collection_id is accepted');
  await rejectsCode(t, () => checkCommitBinding(device, ID, { version: '2', metadata: meta({ 'larch.architecture': 'arm64' }) }), 'REFUSED', 'commit of another architecture', { data: { reason: 'wrong-architecture', device: 'amd64', offered: 'arm64', commit: ID, version: '2' } });
});

t.test('provision records what was given, else the summary collection id, else the commit values; and refuses a mismatch', async (t) => {
  const commit = { version: '1', metadata: meta({ 'larch.compatible': 'board-a', 'larch.architecture': 'amd64', 'larch.collection_id': 'com.example.a' }) };
  t.same(provisionBinding({}, summary('com.example.a'), 's', ID, commit), device);
  t.same(provisionBinding({}, summary(), 's', ID, { version: '1', metadata: meta({}) }), none, 'nothing known: nothing recorded (accepts any)');
  t.same(provisionBinding({ compatible: 'board-a' }, summary(), 's', ID, { version: '1', metadata: meta({}) }), { ...none, compatible: 'board-a' });
  await rejectsCode(t, () => provisionBinding({ compatible: 'board-b' }, summary(), 's', ID, commit), 'REFUSED', 'provision --compatible of other hardware', { data: { reason: 'incompatible' } });
  await rejectsCode(t, () => provisionBinding({ collection_id: 'com.example.b' }, summary('com.example.a'), 's', ID, commit), 'REFUSED', 'provision --collection-id of another repo', { data: { reason: 'wrong-collection' } });
  await rejectsCode(t, () => provisionBinding({}, summary('com.example.b'), 's', ID, commit), 'REFUSED', "a commit of another collection than the summary's", { data: { reason: 'wrong-collection', device: 'com.example.b', offered: 'com.example.a' } });
});

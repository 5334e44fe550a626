/** The chunk request/response format of docs/formats.md §13.8: paths, requests, responses, reply topics. */
import t from 'tap';
import { FETCH_SHARED_SUBSCRIPTION, MAX_CHUNK_BYTES, decodeRequest, decodeResponse, encodeRequest, encodeResponse, isFetchablePath, isReplyTopic, replyTopic } from '../../../src/mqtt/fetch.ts';

const H64 = 'ab'.repeat(32);

t.test('only the files devices need may be fetched', async (t) => {
  for (const p of ['summary', 'summary.sig', `deltas/empty-${H64}/envelope`, `deltas/${H64}-${H64}/part-0`, `deltas/${H64}-${H64}/part-12`, `objects/ab/${'c'.repeat(62)}.filez`, `objects/00/${'0'.repeat(62)}.commit`, `objects/00/${'0'.repeat(62)}.sig`]) t.ok(isFetchablePath(p), p);
  for (const p of ['', 'config', 'refs/heads/os', '../summary', '/summary', 'summary/', './summary', `deltas/${H64}-${H64}/../../config`, `deltas/${H64}-${H64}/part-01`, `deltas/${H64}-${H64}/part--1`, `objects/ab/${'c'.repeat(61)}.filez`, `objects/AB/${'c'.repeat(62)}.filez`, `objects/ab/${'c'.repeat(62)}.tmp`, 'summary\u0000', 'summary.sig.nope', 'tmp/x']) t.notOk(isFetchablePath(p), JSON.stringify(p));
});

t.test('requests: round trip, bounds, refusals', async (t) => {
  t.same(decodeRequest(encodeRequest({ path: 'summary', offset: 5, length: 100 })), { path: 'summary', offset: 5, length: 100 });
  t.equal((decodeRequest(encodeRequest({ path: 'summary', offset: 0, length: 10 * MAX_CHUNK_BYTES })) as { length: number }).length, MAX_CHUNK_BYTES, 'length capped');
  t.match(decodeRequest(encodeRequest({ path: '../etc/passwd', offset: 0, length: 1 })), { status: 'not-found' });
  t.match(decodeRequest(Buffer.from('not json')), { status: 'bad-request' });
  t.match(decodeRequest(Buffer.from(JSON.stringify({ format: 2, path: 'summary', offset: 0, length: 1 }))), { status: 'bad-request' });
  t.match(decodeRequest(Buffer.from(JSON.stringify({ format: 1, path: 'summary', offset: -1, length: 1 }))), { status: 'bad-request' });
  t.match(decodeRequest(Buffer.from(JSON.stringify({ format: 1, path: 'summary', offset: 0, length: 0 }))), { status: 'bad-request' });
  t.match(decodeRequest(Buffer.from(JSON.stringify({ format: 1, path: 'summary', offset: 1.5, length: 1 }))), { status: 'bad-request' });
  t.match(decodeRequest(Buffer.alloc(2000, 32)), { status: 'bad-request' });
});

t.test('responses: header line then bytes', async (t) => {
  const bytes = Buffer.from('hello\nworld');
  const enc = encodeResponse({ status: 'ok', size: 100, offset: 7, bytes });
  t.equal(Buffer.from(enc).toString('utf8'), '{"format":1,"status":"ok","size":100,"offset":7,"length":11}\nhello\nworld');
  const dec = decodeResponse(enc);
  t.match(dec, { status: 'ok', size: 100, offset: 7 });
  t.equal(Buffer.from((dec as { bytes: Uint8Array }).bytes).toString(), 'hello\nworld');
  t.same(decodeResponse(encodeResponse({ status: 'not-found', message: 'x' })), { status: 'not-found', message: 'x' });
  t.throws(() => decodeResponse(Buffer.from('{"format":1,"status":"ok","size":10,"offset":0,"length":5}\nabc')), 'fewer bytes than the header says');
  t.throws(() => decodeResponse(Buffer.from('no header')));
  t.throws(() => decodeResponse(Buffer.from('{"format":1,"status":"maybe"}\n')));
});

t.test('reply topics and the shared subscription', async (t) => {
  t.equal(replyTopic('larch-fetch-0123abcd'), 'larch/v1/fetch/reply/larch-fetch-0123abcd');
  t.throws(() => replyTopic('a/b'));
  t.throws(() => replyTopic('#'));
  t.ok(isReplyTopic('larch/v1/fetch/reply/dev-1'));
  for (const topic of ['larch/v1/announce/os/stable', 'larch/v1/fetch/reply/', 'larch/v1/fetch/reply/a/b', 'larch/v1/fetch/reply/+', 'larch/v1/device/x/cmd']) t.notOk(isReplyTopic(topic), topic);
  t.equal(FETCH_SHARED_SUBSCRIPTION, '$share/larch/larch/v1/fetch');
});

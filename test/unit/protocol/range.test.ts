/** Range and Content-Range parsing (RFC 9110 §14), and the URL path rules of larch serve. */
import t from 'tap';
import { parseContentRange, parseRange } from '../../../src/protocol/range.ts';
import { resolveUrlPath } from '../../../src/server/serve.ts';

t.test('parseRange', async (t) => {
  const cases: [string | undefined, number, unknown, string][] = [
    [undefined, 10, { kind: 'full' }, 'no header'],
    ['bytes=0-0', 10, { kind: 'partial', start: 0, end: 0 }, 'first byte'],
    ['bytes=0-', 10, { kind: 'partial', start: 0, end: 9 }, 'open range from 0'],
    ['bytes=9-', 10, { kind: 'partial', start: 9, end: 9 }, 'last byte by offset'],
    ['bytes=3-100', 10, { kind: 'partial', start: 3, end: 9 }, 'end clipped to the size'],
    ['bytes=-3', 10, { kind: 'partial', start: 7, end: 9 }, 'suffix'],
    ['bytes=-30', 10, { kind: 'partial', start: 0, end: 9 }, 'suffix longer than the file'],
    ['bytes=10-', 10, { kind: 'unsatisfiable' }, 'start at the size'],
    ['bytes=11-20', 10, { kind: 'unsatisfiable' }, 'start past the end'],
    ['bytes=-0', 10, { kind: 'unsatisfiable' }, 'empty suffix'],
    ['bytes=0-', 0, { kind: 'unsatisfiable' }, 'any range of an empty file'],
    ['bytes=5-2', 10, { kind: 'full' }, 'last before first: ignored'],
    ['bytes=0-1,4-5', 10, { kind: 'full' }, 'several ranges: whole file'],
    ['items=0-1', 10, { kind: 'full' }, 'other unit'],
    ['bytes=-', 10, { kind: 'full' }, 'no numbers'],
    ['bytes=99999999999999999999-', 10, { kind: 'full' }, 'beyond safe integers'],
  ];
  for (const [header, size, want, name] of cases) t.same(parseRange(header, size), want, name);
});

t.test('parseContentRange', async (t) => {
  t.same(parseContentRange('bytes 5-9/10'), { start: 5, end: 9, size: 10 });
  t.same(parseContentRange('bytes 5-9/*'), { start: 5, end: 9, size: null });
  t.equal(parseContentRange('bytes 5-10/10'), null, 'end past size');
  t.equal(parseContentRange('bytes 9-5/10'), null, 'end before start');
  t.equal(parseContentRange('bytes */10'), null, 'unsatisfied form');
  t.equal(parseContentRange(undefined), null);
});

t.test('resolveUrlPath refuses traversal before touching the filesystem', async (t) => {
  t.equal(resolveUrlPath('/srv/r', '/summary'), '/srv/r/summary');
  t.equal(resolveUrlPath('/srv/r', '/objects/ab/cd.filez?x=1'), '/srv/r/objects/ab/cd.filez');
  t.equal(resolveUrlPath('/srv/r', '/deltas//x/'), '/srv/r/deltas/x');
  for (const bad of ['/../etc/passwd', '/%2e%2e/etc/passwd', '/objects/..%2f..%2fetc', '/./summary', '/a%00b', '/a%5c..%5cb', 'summary', '/%zz']) {
    t.equal(resolveUrlPath('/srv/r', bad), null, bad);
  }
});

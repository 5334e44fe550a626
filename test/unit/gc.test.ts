/**
 * src/_gc.ts: the collections the apply asks for go to the runtime that offers them. Bun is
 * stood in for by a global with its `gc(sync)` (under tap this is Node): a full collection waits
 * for it (`gc(true)`), a collection asked for soon does not (`gc(false)`), and without Bun (Node
 * without --expose-gc) both do nothing.
 */
import t from 'tap';
import { collectGarbage, collectGarbageSoon } from '../../src/_gc.ts';

t.test('with Bun: gc(true) for a full collection, gc(false) for one asked for soon', async (t) => {
  const calls: boolean[] = [];
  const global = globalThis as { Bun?: { gc(sync: boolean): void } };
  t.equal(global.Bun, undefined, 'the tests run on Node');
  global.Bun = { gc: (sync) => void calls.push(sync) };
  t.teardown(() => void delete global.Bun);
  collectGarbage();
  collectGarbageSoon();
  t.same(calls, [true, false]);
});

t.test('without Bun: nothing happens, nothing throws', async (t) => {
  t.doesNotThrow(() => collectGarbageSoon());
  t.doesNotThrow(() => collectGarbage());
});

/**
 * The resolved-tree cache's storage (tree-cache.ts) with a stand-in build (the key and the real
 * mmdebstrap are tested elsewhere): a miss builds and stores, a hit builds nothing, --no-tree-cache
 * builds and replaces without touching a tree already handed out, two composes of one key build
 * once and never read a half-written tar, a failed build leaves nothing, eviction keeps the most
 * recently used and spares a key whose lock is held. Real files, real flock(1).
 */
import t from 'tap';
import { existsSync, mkdirSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TREE_CACHE_KEEP, cachedTree, evictTrees } from '../../../src/compose/tree-cache.ts';
import { acquireLock } from '../../../src/store/lock.ts';
import { missingTools, tempDir, testNeeding } from '../../helpers.ts';

const cannot = missingTools(['flock']).map((tool) => `${tool} is not installed`).join(', ') || false;
const KEY = 'a'.repeat(64);
const keyOf = (n: number) => n.toString(16).padStart(64, '0');

/** A stand-in build that writes `content` and counts its calls. */
function builder(content: string) {
  const b = { calls: 0, build: async (to: string) => {
    b.calls++;
    await writeFile(to, content);
  } };
  return b;
}

testNeeding(t, 'a miss builds and stores, a hit builds nothing, --no-tree-cache rebuilds and replaces', cannot, { timeout: 60_000 }, async (t) => {
  const cache = tempDir(t, 'larch-tree-cache-');
  const b = builder('tree 1');
  t.equal(await cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'out1.tar'), refresh: false, build: b.build }), 'miss');
  t.equal(b.calls, 1, 'the miss built once');
  t.equal(readFileSync(join(cache, 'trees', `${KEY}.tar`), 'utf8'), 'tree 1', 'stored as trees/KEY.tar');
  t.equal(readFileSync(join(cache, 'out1.tar'), 'utf8'), 'tree 1', 'and put at out');

  t.equal(await cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'out2.tar'), refresh: false, build: b.build }), 'hit');
  t.equal(b.calls, 1, 'the hit built nothing');
  t.equal(readFileSync(join(cache, 'out2.tar'), 'utf8'), 'tree 1', 'the cached tree at out');

  const b2 = builder('tree 2');
  t.equal(await cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'out3.tar'), refresh: true, build: b2.build }), 'off');
  t.equal(b2.calls, 1, '--no-tree-cache built although the entry was there');
  t.equal(readFileSync(join(cache, 'trees', `${KEY}.tar`), 'utf8'), 'tree 2', 'and replaced the entry');
  t.equal(readFileSync(join(cache, 'out2.tar'), 'utf8'), 'tree 1', 'a tree handed out before (a hard link) keeps its content: the entry is replaced by a rename, never written in place');
  t.same(readdirSync(join(cache, 'trees')).filter((n) => n.startsWith('.tmp-')), [], 'no temporary file left');
});

testNeeding(t, 'two composes of one key at once: one builds, the other waits and takes its tree, never a half-written one', cannot, { timeout: 60_000 }, async (t) => {
  const cache = tempDir(t, 'larch-tree-cache-race-');
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const building = new Promise<void>((r) => (started = r));
  let calls = 0;
  const slowBuild = async (to: string) => {
    calls++;
    await writeFile(to, 'first half ');
    started();
    await gate;
    await writeFile(to, 'first half second half');
  };
  const first = cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'a.tar'), refresh: false, build: slowBuild });
  await building;
  t.notOk(existsSync(join(cache, 'trees', `${KEY}.tar`)), 'while building, there is no entry to read (only the temporary file)');
  let waited = false;
  const second = cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'b.tar'), refresh: false, build: slowBuild, onWait: () => {
    waited = true;
    // The second compose is at the lock: let the first finish.
    release();
  } });
  t.same(await Promise.all([first, second]), ['miss', 'hit'], 'the first built, the second took its tree');
  t.ok(waited, 'the second waited for the lock');
  t.equal(calls, 1, 'one build');
  t.equal(readFileSync(join(cache, 'b.tar'), 'utf8'), 'first half second half', 'the waiting compose got the whole tree');
});

testNeeding(t, 'a failed build leaves no entry and no temporary file, and releases the lock', cannot, { timeout: 60_000 }, async (t) => {
  const cache = tempDir(t, 'larch-tree-cache-fail-');
  const failing = async (to: string) => {
    await writeFile(to, 'half');
    throw new Error('mmdebstrap failed');
  };
  await t.rejects(cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'a.tar'), refresh: false, build: failing }), /mmdebstrap failed/, "the build's error");
  t.same(readdirSync(join(cache, 'trees')).filter((n) => n.endsWith('.tar')), [], 'no entry, no temporary tar');
  const b = builder('tree');
  t.equal(await cachedTree({ cacheDir: cache, key: KEY, out: join(cache, 'b.tar'), refresh: false, build: b.build }), 'miss', 'the next compose builds (the lock is free)');
});

testNeeding(t, `eviction keeps the ${TREE_CACHE_KEEP} most recently used trees, spares a locked key, removes a killed build's leftovers`, cannot, { timeout: 60_000 }, async (t) => {
  const cache = tempDir(t, 'larch-tree-cache-evict-');
  const b = builder('tree');
  const dir = join(cache, 'trees');
  mkdirSync(dir);
  // Trees 1..6 stored by earlier composes, each used a minute after the previous one.
  for (let n = 1; n <= 6; n++) {
    writeFileSync(join(dir, `${keyOf(n)}.tar`), `tree ${n}`);
    const mtime = new Date(Date.UTC(2026, 0, 1, 0, n));
    utimesSync(join(dir, `${keyOf(n)}.tar`), mtime, mtime);
  }
  // Tree 1 used again (a hit marks it used now): the newest.
  t.equal(await cachedTree({ cacheDir: cache, key: keyOf(1), out: join(cache, 'again.tar'), refresh: false, build: b.build }), 'hit');
  // A killed build of key 7 left its temporary file; another process holds key 2's lock.
  writeFileSync(join(dir, `.tmp-${keyOf(7)}-999-00000000.tar`), 'half');
  const held = await acquireLock(join(dir, `${keyOf(2)}.lock`));
  try {
    const evicted = await evictTrees(dir);
    t.same(evicted.sort(), [keyOf(3)], 'the least recently used unlocked tree goes (2 is locked and stays)');
  } finally {
    await held.release();
  }
  const left = readdirSync(dir).filter((n) => n.endsWith('.tar')).sort();
  t.same(left, [1, 2, 4, 5, 6].map((n) => `${keyOf(n)}.tar`), 'tree 1 (used last), 2 (locked), and the newest others');
  t.notOk(existsSync(join(dir, `${keyOf(3)}.lock`)), "the evicted key's lock file goes too");
  t.notOk(existsSync(join(dir, `.tmp-${keyOf(7)}-999-00000000.tar`)), "a killed build's temporary file goes (nobody holds its key's lock)");
  const evicted = await evictTrees(dir);
  t.same(evicted, [keyOf(2)], 'once its lock is free, the older of the surplus goes');
  t.same(readdirSync(dir).filter((n) => n.endsWith('.tar')).length, TREE_CACHE_KEEP, `${TREE_CACHE_KEEP} trees left`);

  // A miss evicts after storing: the new tree is the newest, the oldest of the rest goes.
  t.equal(await cachedTree({ cacheDir: cache, key: keyOf(8), out: join(cache, 'new.tar'), refresh: false, build: b.build }), 'miss');
  t.same(readdirSync(dir).filter((n) => n.endsWith('.tar')).sort(), [1, 5, 6, 8].map((n) => `${keyOf(n)}.tar`), 'after a miss: the new tree and the 3 most recently used');
});

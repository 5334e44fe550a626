/**
 * The Remote's contract, the same cases with the same expected codes over each of its three
 * fetchers: HTTP (`larch serve` on 127.0.0.1), MQTT chunks (a real Mosquitto on loopback and the
 * in-process responder of `larch serve --mqtt`), and a local directory (`file://`). One vendor
 * repo behind all three: v1, then v2 with a signed delta from v1. Then the device commands over
 * the local fetcher: provision from a directory path and a file:// URL, upgrade, check.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LarchError } from '../../src/errors.ts';
import type { FileFetcher } from '../../src/agent/remote/fetcher.ts';
import { httpFetcher } from '../../src/agent/remote/http-fetch.ts';
import { localFetcher } from '../../src/agent/remote/local-fetch.ts';
import { MqttFetcher } from '../../src/agent/remote/mqtt-fetch.ts';
import { objectPath } from '../../src/agent/remote/pull.ts';
import { type Remote, remoteOver } from '../../src/agent/remote/remote.ts';
import { findDelta } from '../../src/protocol/summary.ts';
import { Repo } from '../../src/store/repo.ts';
import { generateKey, readPublicKey } from '../../src/store/sign.ts';
import { startResponder } from '../../src/server/mqtt-responder.ts';
import { REF, type Test, vendor } from '../device-helpers.ts';
import { larchOk, tempDir } from '../helpers.ts';
import { startBroker } from '../mqtt-helpers.ts';

const now = () => Math.floor(Date.now() / 1000);

/** The error code a promise rejects with ('resolved' when it does not), and its data. */
async function outcome(p: Promise<unknown>): Promise<{ code: string; data: Record<string, unknown> }> {
  return p.then(
    () => ({ code: 'resolved', data: {} }),
    (e) => (e instanceof LarchError ? { code: e.code, data: e.data } : { code: `not a LarchError: ${String(e)}`, data: {} }),
  );
}

t.test('one Remote over HTTP, MQTT and file:// fetchers: the same answers and the same refusals', async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const v2 = await v.release(2);
  const trusted = [await readPublicKey(`${v.key}.pub`)];
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  const responder = await startResponder({ root: v.repo, mqtt: { url: broker.url } });
  t.teardown(() => responder.close());

  const fetchers: Record<string, FileFetcher> = {
    http: httpFetcher(v.url),
    mqtt: new MqttFetcher({ url: broker.url }, { requestTimeoutMs: 5000 }),
    file: localFetcher(pathToFileURL(v.repo).href),
  };
  /** Runs a case over every fetcher, each with its own Remote and scratch directory. */
  const each = async (t: Test, name: string, fn: (t: Test, remote: Remote, f: FileFetcher, dir: string) => Promise<void>) => {
    for (const [kind, f] of Object.entries(fetchers)) await t.test(`${name} (${kind})`, (t) => fn(t, remoteOver(f, { timeoutMs: 60_000 }), f, tempDir(t)));
  };

  await each(t, 'summary: verified, the ref at v2, the delta listed', async (t, remote) => {
    const s = await remote.fetchSummary({ trusted, now: now() });
    t.equal(s.refs[REF]?.commit, v2, 'the ref');
    t.ok(findDelta(s, v1, v2), 'the delta v1 -> v2');
  });

  await each(t, 'a summary signed by an untrusted key is refused', async (t, remote) => {
    const stranger = await generateKey();
    t.match(await outcome(remote.fetchSummary({ trusted: [stranger.publicKey], now: now() })), { code: 'SIGNATURE_INVALID' });
  });

  // A trust chain of one version in the repo (formats.md §15): fetched the same over every fetcher; a missing version is null.
  const root = join(v.dir, 'root');
  await larchOk(['keygen', '--out', root]);
  const trustFile = join(v.dir, 'v1.trust');
  await larchOk(['trust', 'create', '--out', trustFile, '--root', `${root}.pub`, '--commit', `${v.key}.pub`, '--summary', `${v.key}.pub`, '--command', `${v.key}.pub`, '--sign-key', `${root}.key`, '--sign-key', `${v.key}.key`]);
  await larchOk(['trust', 'publish', '--repo', v.repo, trustFile]);
  await each(t, 'trust/1.cbor fetched byte for byte; trust/2.cbor missing is null', async (t, remote) => {
    t.same(Buffer.from((await remote.fetchTrust!(1))!), readFileSync(trustFile), 'trust/1.cbor');
    t.equal(await remote.fetchTrust!(2), null, 'no trust/2.cbor');
  });

  await each(t, 'a summary older than the last one seen is refused as a rollback', async (t, remote) => {
    const s = await remote.fetchSummary({ trusted, now: now() });
    t.match(await outcome(remote.fetchSummary({ trusted, now: now(), lastSerial: s.serial + 1 })), { code: 'SIGNATURE_INVALID', data: { reason: 'rollback' } });
  });

  await each(t, 'objects pull of v1, then delta pull v1 -> v2, then history', async (t, remote, _f, dir) => {
    const repo = await Repo.init(join(dir, 'device'), 'bare-user');
    const s = await remote.fetchSummary({ trusted, now: now() });
    const first = await remote.pull(repo, v1, { delta: null, trusted, downloadDir: join(dir, 'dl') });
    t.equal(first.via, 'objects', 'v1 object by object');
    t.ok(first.bytes > 0, `bytes written: ${first.bytes}`);
    const second = await remote.pull(repo, v2, { delta: findDelta(s, v1, v2), trusted, downloadDir: join(dir, 'dl') });
    t.match(second, { via: 'delta' }, 'v2 through the delta');
    t.equal(second.fallback, undefined, 'no fallback');
    t.ok(await repo.hasObject('commit', v2), 'v2 in the repo');
    t.equal((await repo.readCommit(v2)).version, '2');
    t.same(await remote.history!(repo, v2, 10), [{ commit: v2, version: '2' }, { commit: v1, version: '1' }], 'history, newest first');
    t.same(await remote.history!(repo, v2, 1), [{ commit: v2, version: '2' }], 'history up to its limit');
  });

  await each(t, 'a missing file: NOT_FOUND from the fetcher, OBJECT_MISSING for a commit', async (t, remote, f) => {
    t.match(await outcome(f.exchange(undefined, (x) => x.fetchBytes('deltas/none/envelope', { maxBytes: 1024 }))), { code: 'NOT_FOUND' });
    t.match(await outcome(remote.fetchCommit('ab'.repeat(32), { trusted })), { code: 'OBJECT_MISSING' });
  });

  await each(t, 'a file over the cap, or of another size than the signed one, is refused', async (t, _remote, f) => {
    const size = readFileSync(join(v.repo, 'summary')).length;
    t.match(await outcome(f.exchange(undefined, (x) => x.fetchBytes('summary', { maxBytes: 100 }))), { code: 'INVALID_INPUT', data: { reason: 'too-large' } }, 'over maxBytes');
    t.match(await outcome(f.exchange(undefined, (x) => x.fetchBytes('summary', { maxBytes: size + 10, expectedSize: size + 10 }))), { code: 'INVALID_INPUT' }, 'another size than expected');
    const whole = await f.exchange(undefined, (x) => x.fetchBytes('summary', { maxBytes: size, expectedSize: size }));
    t.equal(whole.length, size, 'exactly at the cap: fetched');
  });

  // A commit object damaged on the server, the same size: every fetcher delivers it, the Remote refuses it.
  const commitFile = join(v.repo, objectPath(v2, 'commit'));
  const good = readFileSync(commitFile);
  const bad = Buffer.from(good);
  bad[bad.length - 1] ^= 0xff;
  writeFileSync(commitFile, bad);
  t.teardown(() => writeFileSync(commitFile, good));
  await each(t, 'a corrupt commit object is refused, not decoded', async (t, remote, _f, dir) => {
    t.match(await outcome(remote.fetchCommit(v2, { trusted })), { code: 'OBJECT_CORRUPT' }, 'fetchCommit');
    t.match(await outcome(remote.history!(await Repo.init(join(dir, 'r'), 'bare-user'), v2, 10)), { code: 'OBJECT_CORRUPT' }, 'history');
    t.match(await outcome(remote.pull(await Repo.init(join(dir, 'r2'), 'bare-user'), v2, { delta: null, trusted, downloadDir: join(dir, 'dl') })), { code: 'OBJECT_CORRUPT' }, 'objects pull');
  });
  writeFileSync(commitFile, good);

  // The device commands over the local fetcher: --repo-url as a directory path or a file:// URL.
  const dir = tempDir(t);
  // A relative path: recorded absolute, so later commands work from any directory.
  const p = await larchOk(['provision', '--sysroot', join(dir, 'dev'), '--repo-url', 'srv', '--ref', REF, '--keys', `${v.key}.pub`, '--json'], { cwd: v.dir });
  t.equal(p.json.version, '2', 'provisioned from the directory');
  t.match(JSON.parse(readFileSync(join(dir, 'dev', 'larch', 'config.json'), 'utf8')).remote, { kind: 'http', url: v.repo }, 'the absolute path is recorded');
  await larchOk(['sim-boot', '--sysroot', join(dir, 'dev')]);
  await v.release(3);
  const up = await larchOk(['upgrade', '--sysroot', join(dir, 'dev'), '--json']);
  t.match(up.json, { result: 'staged', to: { version: '3' }, download: { via: 'delta' } }, 'upgraded from the directory');

  const url = pathToFileURL(v.repo).href;
  await larchOk(['provision', '--sysroot', join(dir, 'dev2'), '--repo-url', url, '--ref', REF, '--keys', `${v.key}.pub`, '--json']);
  t.match(JSON.parse(readFileSync(join(dir, 'dev2', 'larch', 'config.json'), 'utf8')).remote, { url }, 'the file:// URL is recorded as given');
  const check = await larchOk(['check', '--sysroot', join(dir, 'dev2'), '--json']);
  t.match(check.json, { available: false }, 'nothing newer than what it was provisioned with');
});

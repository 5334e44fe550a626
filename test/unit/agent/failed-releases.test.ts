/** The pure rules of S/larch/failed.json (src/agent/failed-releases.ts) and the downgrade order (isOlderRelease, olderThanBooted). */
import t from 'tap';
import { EMPTY_FAILED_RELEASES, type FailedRelease, MAX_FAILED_RELEASES, describeFailure, findFailed, forgetFailure, formatFailedReleases, toFailedReleases, recordFailure } from '../../../src/agent/failed-releases.ts';
import type { DeploymentRecord } from '../../../src/agent/deploy.ts';
import { isOlderRelease, olderThanBooted } from '../../../src/agent/update.ts';

const entry = (n: number, extra: Partial<FailedRelease> = {}): FailedRelease => ({ commit: String(n).padStart(64, '0'), version: `1.${n}`, time: `2026-01-0${(n % 9) + 1}T00:00:00.000Z`, reason: 'fell-back', failed_checks: [], slot: 'B', ...extra });

t.test('record, find, forget', async (t) => {
  let f = recordFailure(EMPTY_FAILED_RELEASES, entry(5, { reason: 'tries-exhausted', failed_checks: ['10-services'] }));
  t.equal(findFailed(f, entry(5).commit)?.version, '1.5');
  t.equal(findFailed(f, entry(6).commit), null, 'another commit (a newer release) is not failed');
  // The fallback seen at the next boot: same failure, first time and checks kept.
  f = recordFailure(f, entry(5, { time: '2027-01-01T00:00:00.000Z', failed_checks: [] }));
  t.same(f.releases, [entry(5, { reason: 'tries-exhausted', failed_checks: ['10-services'] })], 'merged, not added twice');
  // Checks learnt later fill an empty list.
  const g = recordFailure(recordFailure(EMPTY_FAILED_RELEASES, entry(7)), entry(7, { failed_checks: ['x'] }));
  t.same(g.releases[0].failed_checks, ['x']);
  t.same(forgetFailure(f, entry(5).commit).releases, []);
  t.same(EMPTY_FAILED_RELEASES.releases, [], 'the shared empty value is never changed');
});

t.test('the list keeps the newest MAX_FAILED_RELEASES', async (t) => {
  let f = EMPTY_FAILED_RELEASES;
  for (let i = 0; i < MAX_FAILED_RELEASES + 3; i++) f = recordFailure(f, entry(i));
  t.equal(f.releases.length, MAX_FAILED_RELEASES);
  t.equal(f.releases[0].commit, entry(3).commit, 'the oldest three dropped');
});

t.test('check and format', async (t) => {
  const f = recordFailure(EMPTY_FAILED_RELEASES, entry(1, { failed_checks: ['a', 'b'] }));
  t.same(toFailedReleases(JSON.parse(formatFailedReleases(f))), f, 'round trip');
  for (const [value, why] of [
    [[], 'not an object'],
    [null, 'null'],
    [{ format: 2, releases: [] }, 'another format'],
    [{ format: 1, releases: [{ commit: 'x' }] }, 'an entry without version'],
  ] as const) t.throws(() => toFailedReleases(value), TypeError, why);
});

t.test('describeFailure: the sentence status and refusals use', async (t) => {
  t.equal(describeFailure(entry(5, { failed_checks: ['10-services'] })), '1.5 failed on this device at 2026-01-06T00:00:00.000Z (failed checks: 10-services); waiting for a newer release');
  t.equal(describeFailure(entry(5, { reason: 'marked-bad' })), '1.5 was marked bad on this device at 2026-01-06T00:00:00.000Z; waiting for a newer release');
});

t.test('isOlderRelease: Debian version ordering or timestamp, either is enough', async (t) => {
  t.equal(isOlderRelease({ version: '2026.1', timestamp: 0 }, { version: '2026.2', timestamp: 0 }), 'version', '1970 timestamps: the version decides');
  t.equal(isOlderRelease({ version: '1.0~rc1', timestamp: 200 }, { version: '1.0', timestamp: 100 }), 'version', '~ sorts before the release, whatever the clock');
  t.equal(isOlderRelease({ version: '1.10', timestamp: 100 }, { version: '1.9', timestamp: 200 }), 'timestamp', 'newer version, older timestamp');
  t.equal(isOlderRelease({ version: '1.10', timestamp: 200 }, { version: '1.9', timestamp: 100 }), null, '1.10 > 1.9 (not string order)');
  t.equal(isOlderRelease({ version: 'v 2 beta', timestamp: 100 }, { version: '1', timestamp: 100 }), null, 'a version that is not a Debian version: the timestamp alone');
  t.equal(isOlderRelease({ version: '2', timestamp: 100 }, { version: '2', timestamp: 100 }), null, 'equal');
});

t.test("olderThanBooted: the booted record's version and ISO time, by isOlderRelease (check's update.older and upgrade's downgrade refusal)", async (t) => {
  const booted = { version: '2', timestamp: '2023-11-14T22:46:40.000Z' } as DeploymentRecord;
  const bootedS = Date.parse(booted.timestamp) / 1000;
  t.equal(olderThanBooted({ version: '1', timestamp: bootedS - 1000 }, booted), 'version', 'a head moved back to the previous release');
  t.equal(olderThanBooted({ version: '3', timestamp: bootedS - 1 }, booted), 'timestamp', "the record's ISO time is compared in seconds");
  t.equal(olderThanBooted({ version: '3', timestamp: bootedS + 1000 }, booted), null, 'a newer release');
  t.equal(olderThanBooted({ version: '2', timestamp: bootedS }, booted), null, 'the booted release itself');
});

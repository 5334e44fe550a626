/**
 * Compose's defaults (through the Bun binary, on real Debian packages from .cache/debs; exact = true,
 * the way that can date a commit by its packages): a definition
 * without `timestamp` is dated by SOURCE_DATE_EPOCH, else by the newest package's date, never
 * 1970; and composing an unchanged definition onto its ref makes no new commit (as
 * `rpm-ostree compose tree`) unless --force.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from '../device-helpers.ts';
import { ROOT, debs, larch, larchOk, sh, tempDir } from '../helpers.ts';

const CACHE = join(ROOT, '.cache', 'debs');
const ARCH = sh('dpkg --print-architecture').trim();
const PACKAGES = ['busybox', 'hostname'];

function setup(t: Test): { dir: string; def: string; repo: string } {
  const dir = tempDir(t, 'larch-compose-');
  const def = join(dir, 'small.toml');
  writeFileSync(def, `ref = "test/small"\nversion = "1.0"\narchitecture = "${ARCH}"\nexact = true\npackages = ${JSON.stringify(PACKAGES)}\n`);
  return { dir, def, repo: join(dir, 'repo') };
}

const compose = (def: string, repo: string, more: string[] = [], env: Record<string, string> = {}) => larchOk(['compose', def, '--repo', repo, '--cache', CACHE, ...more], { env });

/** The newest member time (seconds) in the data of these .deb files, as GNU tar lists it. */
function newestMemberTime(files: string[]): number {
  let newest = 0;
  for (const deb of files) {
    const out = sh(`dpkg-deb --fsys-tarfile '${deb}' | TZ=UTC tar -tv --full-time -f -`);
    for (const m of out.matchAll(/ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) /g)) newest = Math.max(newest, Date.parse(`${m[1].replace(' ', 'T')}Z`) / 1000);
  }
  return newest;
}

t.test('no timestamp in the definition: SOURCE_DATE_EPOCH, else the newest package date, never 1970', async (t) => {
  const { def, repo } = setup(t);
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  const first = (await compose(def, repo, ['--json'], { SOURCE_DATE_EPOCH: '' })).json;
  const used = debs().filter((d) => PACKAGES.some((p) => d.includes(`/${p}_`)));
  t.equal(used.length, PACKAGES.length, 'the .deb files are in the cache');
  const newest = newestMemberTime(used);
  t.ok(newest > 1_500_000_000, `the packages carry dates (${new Date(newest * 1000).toISOString()})`);
  t.equal(first.timestamp_s, newest, 'the commit is dated by the newest package');
  const fromEpoch = (await compose(def, repo, ['--json', '--orphan'], { SOURCE_DATE_EPOCH: '1767225600' })).json;
  t.equal(fromEpoch.timestamp_s, 1767225600, 'SOURCE_DATE_EPOCH wins when set');
  const shown = (await larchOk(['show', '--repo', repo, first.commit, '--json'])).json;
  t.notMatch(JSON.stringify(shown), /1970-01-01/, 'larch show does not date it 1970');
});

t.test('composing an unchanged definition makes no new commit; --force does', async (t) => {
  const { def, repo } = setup(t);
  await larchOk(['init', '--repo', repo, '--mode', 'bare-user']);
  const first = (await compose(def, repo, ['--json'])).json;
  t.equal(first.changed, true, 'the first compose is a change');
  const again = await compose(def, repo, ['--json']);
  t.same(again.json, { commit: first.commit, changed: false }, '--json: the head, changed: false');
  t.same((await larchOk(['refs', '--repo', repo, '--json'])).json, [{ branch: 'test/small', commit: first.commit }], 'the ref stays at the head');
  const human = await compose(def, repo);
  t.equal(human.stdout, `${first.commit}\n`, 'stdout: the head, as for a new commit');
  t.match(human.stderr, /no changes/, "stderr says 'no changes'");
  const log = (await larchOk(['log', '--repo', repo, 'test/small', '--json'])).json;
  t.equal(log.length, 1, 'one commit in the history');

  const forced = (await compose(def, repo, ['--json', '--force'])).json;
  t.match(forced, { changed: true, parent: first.commit }, '--force commits anyway, onto the head');
  t.not(forced.commit, first.commit);
  // A changed definition (its version) is a change.
  writeFileSync(def, `ref = "test/small"\nversion = "1.1"\narchitecture = "${ARCH}"\nexact = true\npackages = ${JSON.stringify(PACKAGES)}\n`);
  const bumped = (await compose(def, repo, ['--json'])).json;
  t.match(bumped, { changed: true, version: '1.1', parent: forced.commit }, 'a new version is a new commit');
  const r = await larch(['compose', def, '--repo', repo, '--cache', CACHE, '--json']);
  t.same(r.json, { commit: bumped.commit, changed: false }, 'and unchanged again after it');
});

/** Pure parts of package layering: the request edits, apt's simulation output, dpkg status, failure reasons, the origin file. */
import t from 'tap';
import { classifyFailure, parseSimulation } from '../../../src/agent/layering/apt-result.ts';
import { parseDpkgStatus } from '../../../src/packages/dpkg-status.ts';
import { formatOrigin, parseOrigin } from '../../../src/agent/layering/origin.ts';
import { EMPTY_REQUEST, addInstall, addRemove, addReplace, dropPackages, isPackageName, removeInstall, resetOverrides } from '../../../src/agent/layering/request.ts';
import { rejectsCode } from '../../helpers.ts';

const deb = (name: string, version = '1.0') => ({ name, version, architecture: 'all', sha256: 'a'.repeat(64) });

t.test('request edits', async (t) => {
  let r = addInstall(EMPTY_REQUEST, ['jq', 'curl', 'jq'], []);
  t.same(r.packages, ['curl', 'jq'], 'install: sorted, once each');
  r = addInstall(r, [], [deb('jq')]);
  t.same([r.packages, r.local.map((d) => d.name)], [['curl'], ['jq']], 'a local .deb takes the place of the same name from the sources');
  r = addReplace(r, [deb('hello', '2.0')]);
  r = addRemove(r, ['hello', 'nano']);
  t.same([r.replace, r.remove], [[], ['hello', 'nano']], 'override remove of a replaced package drops the replacement');
  r = addReplace(r, [deb('hello', '2.0')]);
  t.same([r.replace.map((d) => d.name), r.remove], [['hello'], ['nano']], 'and the other way round');
  t.same(resetOverrides(r, ['nano']).remove, [], 'reset one');
  t.same(resetOverrides(r, []), { ...r, replace: [], remove: [] }, 'reset all');
  t.same(removeInstall(r, ['jq', 'curl']).packages.length + removeInstall(r, ['jq', 'curl']).local.length, 0, 'uninstall by name, local or not');
  await rejectsCode(t, () => removeInstall(r, ['vim']), 'NOT_FOUND', 'uninstall of a package not layered', { data: { packages: ['vim'] } });
  await rejectsCode(t, () => resetOverrides(r, ['vim']), 'NOT_FOUND', 'reset of a package not overridden', { data: { packages: ['vim'] } });
  t.same(dropPackages(r, ['hello', 'curl']), { packages: [], local: r.local, replace: [], remove: ['nano'] }, 'drop failing parts by name');
  t.ok(isPackageName('libstdc++6') && isPackageName('g++') && !isPackageName('-o') && !isPackageName('../x') && !isPackageName('Jq'), 'Debian package names only');
});

t.test('apt simulation output', async (t) => {
  const out = `NOTE: This is only a simulation!
Inst libonig5 (6.9.8-1 Debian:12.11/stable [amd64])
Inst larch-test-hello [1.0] (2.0 local-deb [all])
Remv larch-test-newbase [1.0]
Inst jq:amd64 (1.6-2.1 Debian:12.11/stable [amd64])
Conf jq (1.6-2.1 Debian:12.11/stable [amd64])
`;
  t.same(parseSimulation(out), [
    { name: 'libonig5', from: null, to: '6.9.8-1' },
    { name: 'larch-test-hello', from: '1.0', to: '2.0' },
    { name: 'larch-test-newbase', from: '1.0', to: null },
    { name: 'jq', from: null, to: '1.6-2.1' },
  ]);
});

t.test('dpkg status', async (t) => {
  const status = 'Package: b\nStatus: install ok installed\nArchitecture: all\nVersion: 2\n\nPackage: a\nStatus: install ok installed\nVersion: 1:1.0\nArchitecture: amd64\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 3\n';
  t.same(parseDpkgStatus(status), [{ name: 'a', version: '1:1.0', architecture: 'amd64' }, { name: 'b', version: '2', architecture: 'all' }], 'installed packages only, sorted');
});

t.test('failure reasons', async (t) => {
  const cases: [string, string][] = [
    ['E: Unable to locate package nosuch', 'not-found'],
    [' larch-test-unresolvable : Depends: larch-test-missing (>= 1) but it is not installable\nE: Unable to correct problems, you have held broken packages.', 'unresolvable'],
    ['dpkg: error processing package x (--configure):\n installed x package post-installation script subprocess returned error exit status 1', 'script-failed'],
    ['E: Write error - write (28: No space left on device)', 'no-space'],
    ['E: Failed to fetch http://127.0.0.1:1/./jq.deb  Could not connect to 127.0.0.1:1', 'network'],
    ['E: something else', 'apt-failed'],
  ];
  for (const [output, reason] of cases) t.equal(classifyFailure(output).reason, reason, reason);
});

t.test('origin file round trip', async (t) => {
  const o = { base: { commit: 'b'.repeat(64), version: '3' }, request: { packages: ['jq'], local: [deb('xz')], replace: [deb('hello', '2.0')], remove: ['nano'] } };
  const text = formatOrigin(o);
  t.match(JSON.parse(text), { format: 1, packages: ['jq'], local_packages: [{ name: 'xz' }], override_replace: [{ name: 'hello' }], override_remove: ['nano'] }, 'snake_case on disk');
  t.same(parseOrigin(text, 'X.origin.json'), o, 'reads back');
  await rejectsCode(t, () => parseOrigin('{"format":1,"packages":["-o foo"]}', 'X.origin.json'), 'INVALID_INPUT', 'a damaged origin', { data: { path: 'X.origin.json' } });
});

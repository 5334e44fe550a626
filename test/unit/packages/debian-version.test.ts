/**
 * compareDebianVersions against the real `dpkg --compare-versions`: hand-picked edge cases
 * (epochs, '~', letters vs symbols, leading zeros, missing revisions) and seeded random pairs
 * of the versions in this host's apt indexes.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { compareDebianVersions, parseDebianVersion } from '../../../src/packages/debian-version.ts';
import { prng } from '../../helpers.ts';

const EDGE_CASES: [string, string][] = [
  ['1.0', '1.0'], ['1.0', '1.0-0'], ['0:1.0', '1.0'], ['1:1.0', '2.0'], ['1.0~rc1', '1.0'], ['1.0~~', '1.0~'],
  ['1.0~', '1.0'], ['1.0', '1.0+b1'], ['1.0a', '1.0+'], ['1.0a', '1.0.'], ['1.0-1', '1.0-1~bpo1'], ['1.001', '1.1'],
  ['1.01', '1.1'], ['1.10', '1.9'], ['2.36-9+deb12u7', '2.36-9+deb12u14'], ['3.0.17-1~deb12u2', '3.0.22-1~deb12u2'],
  ['2025b-0+deb12u1', '2026f-0+deb12u1'], ['1:1.35.0-4+deb12u1+b1', '1:1.35.0-4+deb12u1'], ['1.0-a', '1.0-A'],
  ['1.2-3-4', '1.2-3'], ['1.2.3', '1.2.3.0'], ['10.42-1', '10.42-1+deb12u2'], ['20230311+deb12u1', '20250419~deb12u2'],
  ['0.0', '0'], ['9', '10'], ['1+dfsg', '1'], ['1.0.0~beta', '1.0.0~alpha'], ['a', 'b'], ['1:0', '0:9'], ['7.0', '7.0~'],
];

/** One `dpkg` run per pair, batched through one shell: lt, eq or gt. */
function dpkgOrder(pairs: [string, string][]): string[] {
  const script = 'while read a b; do if dpkg --compare-versions "$a" lt "$b"; then echo lt; elif dpkg --compare-versions "$a" eq "$b"; then echo eq; else echo gt; fi; done';
  const r = spawnSync('sh', ['-c', script], { input: pairs.map(([a, b]) => `${a} ${b}`).join('\n') + '\n', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dpkg --compare-versions failed: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

const sign = (n: number) => (n < 0 ? 'lt' : n === 0 ? 'eq' : 'gt');

t.test('hand-picked edge cases order as dpkg orders them', async (t) => {
  const expected = dpkgOrder(EDGE_CASES);
  EDGE_CASES.forEach(([a, b], i) => {
    t.equal(sign(compareDebianVersions(a, b)), expected[i], `${a} ${expected[i]} ${b}`);
    t.equal(sign(compareDebianVersions(b, a)), dpkgOrder([[b, a]])[0], `${b} vs ${a}`);
  });
});

t.test('1500 random pairs of real archive versions order as dpkg orders them', async (t) => {
  const dump = spawnSync('sh', ['-c', "apt-cache dumpavail | sed -n 's/^Version: //p' | sort -u"], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const versions = dump.stdout.split('\n').filter(Boolean);
  t.ok(versions.length > 1000, `${versions.length} distinct versions in the apt indexes`);
  const random = prng(7);
  const pick = () => versions[Math.floor(random() * versions.length)];
  const pairs: [string, string][] = [];
  for (let i = 0; i < 1000; i++) pairs.push([pick(), pick()]);
  // Near neighbours in sorted order differ only slightly: the interesting comparisons.
  for (let i = 0; i < 500; i++) {
    const k = Math.floor(random() * (versions.length - 1));
    pairs.push([versions[k], versions[k + 1]]);
  }
  const expected = dpkgOrder(pairs);
  const wrong = pairs.filter(([a, b], i) => sign(compareDebianVersions(a, b)) !== expected[i]).map(([a, b]) => `${a} vs ${b}`);
  t.same(wrong, [], 'no pair orders differently from dpkg');
});

t.test('parses epoch, upstream and revision; refuses what dpkg refuses', async (t) => {
  t.same(parseDebianVersion('1:2.36-9+deb12u7'), { epoch: 1, upstream: '2.36', revision: '9+deb12u7' });
  t.same(parseDebianVersion('1.2-3-4'), { epoch: 0, upstream: '1.2-3', revision: '4' }, 'the revision follows the last hyphen');
  t.same(parseDebianVersion('2.0'), { epoch: 0, upstream: '2.0', revision: '' });
  for (const bad of ['', 'a:1.0', '1:', '1.0-', '1.0 1', '1.0_1', ':1']) t.equal(parseDebianVersion(bad), undefined, `refuses '${bad}'`);
  t.throws(() => compareDebianVersions('1.0', 'x y'), TypeError);
});

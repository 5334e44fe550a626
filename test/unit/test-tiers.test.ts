/**
 * The test tiers (scripts/test-tiers.ts): every tap file is in exactly one, every entry names
 * something that exists, and `npm test` runs tap's include, which holds both tiers.
 */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, TIERS, filesOf, testFiles, tiersOf } from '../../scripts/test-tiers.ts';

t.test('every test file belongs to exactly one tier', async (t) => {
  const files = testFiles();
  t.ok(files.length > 50, `${files.length} test files found`);
  t.same(files.filter((f) => tiersOf(f).length === 0), [], 'none in no tier (add a new file to TIERS in scripts/test-tiers.ts)');
  t.same(files.filter((f) => tiersOf(f).length > 1), [], 'none in both tiers');
  t.same([...filesOf('quick'), ...filesOf('slow')].sort(), files, 'the two tiers together are all the files, each once');
  t.ok(filesOf('slow').includes('test/integration/fleet.test.ts') && filesOf('quick').includes('test/unit/test-tiers.test.ts'), 'the fleet is slow, this file quick');
});

t.test('every entry names a test file or a folder of them', async (t) => {
  const files = testFiles();
  for (const [tier, entries] of Object.entries(TIERS)) {
    t.same(entries.filter((e) => !existsSync(join(ROOT, e))), [], `${tier}: no entry names a missing path`);
    t.same(entries.filter((e) => !files.some((f) => (e.endsWith('/') ? f.startsWith(e) : f === e))), [], `${tier}: every entry holds a test file`);
    t.equal(new Set(entries).size, entries.length, `${tier}: no entry twice`);
  }
});

t.test('npm test runs every tier: tap includes test/**/*.test.ts; the tier scripts run one each', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  t.same(pkg.tap.include, ['test/**/*.test.ts'], "tap's include is what testFiles() lists");
  t.match(pkg.scripts.test, /&& LARCH_SYNC=file tap$/, 'npm test ends in a bare tap: its include, both tiers (fsync per file: docs/testing.md)');
  t.match(pkg.scripts['test:quick'], /scripts\/test-tiers\.ts quick$/);
  t.match(pkg.scripts['test:slow'], /scripts\/test-tiers\.ts slow$/);
});

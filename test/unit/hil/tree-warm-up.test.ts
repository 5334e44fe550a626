/**
 * The HIL runner builds the trees of a scenario's variants ahead (hil-tests/lib/fixture.ts,
 * warmVariantTrees): a scratch compose of treeWarmUpDefinition's definition must ask compose's
 * tree cache for the very key the variant's own compose asks for, or the warm-up is work for
 * nothing. The key is made of what these tests compare (src/compose/tree-key.ts), the timestamp
 * aside (both composes get variant n's by --timestamp).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parse, stringify } from 'smol-toml';
import { type ImageDefinition, parseDefinition } from '../../../src/compose/definition.ts';
import { treeWarmUpDefinition, variantDefinition } from '../../../hil-tests/lib/fixture.ts';
import { ROOT } from '../../helpers.ts';

/** What decides the resolved tree and its cache key, from a parsed definition (local .deb files by name: the key takes their names and content). */
const treeInputs = (d: ImageDefinition) => ({ packages: d.packages, kernel: d.kernel, architecture: d.architecture, recommends: d.recommends, exact: d.exact, localPackages: d.localPackages.map((p) => basename(p)) });
const reparse = (def: Record<string, unknown>, file: string) => parseDefinition(stringify(def), file);

t.test("every image definition's variants: the warm-up asks for the variant's tree, or there is none to build", async (t) => {
  const files = readdirSync(join(ROOT, 'images')).filter((f) => f.endsWith('.toml'));
  t.ok(files.length >= 4, `the image definitions (${files.join(', ')})`);
  for (const file of files) {
    const base = parse(readFileSync(join(ROOT, 'images', file), 'utf8')) as Record<string, unknown>;
    const warm = treeWarmUpDefinition(base);
    if (base.exact === true) {
      t.equal(warm, null, `${file}: exact, no tree to build ahead`);
      continue;
    }
    t.ok(warm, `${file}: resolved, a tree to build ahead`);
    for (const kind of ['good', 'bad-health', 'bad-kernel', 'vendor-kargs'] as const) {
      const variant = reparse(variantDefinition(base, kind, `${base.version}.1-${kind}`, 1), file);
      t.same(treeInputs(reparse(warm!, file)), treeInputs(variant), `${file}, a ${kind} variant: the same packages, kernel, architecture, recommends and local .deb files`);
    }
  }
});

t.test('recommends, the kernel and local .deb files are carried; the one command fails, so nothing is committed', async (t) => {
  const base = parse('ref = "os/x"\nversion = "1"\narchitecture = "arm64"\ntimestamp = 2026-01-01T00:00:00Z\npackages = ["busybox", "tzdata=2024a-1"]\nkernel = "linux-image-6.1.0-56-arm64"\nrecommends = true\nlocal_packages = ["debs/app_1.0_all.deb"]\ncommands = ["true"]\nagent = "../dist/larch-arm64"\n') as Record<string, unknown>;
  const warm = treeWarmUpDefinition(base)!;
  t.same(treeInputs(reparse(warm, 'x.toml')), treeInputs(reparse(variantDefinition(base, 'good', '1.1-good', 1), 'x.toml')), 'the tree inputs of a good variant');
  t.same(warm.local_packages, ['app_1.0_all.deb'], 'the local .deb by its name (copied beside the scratch definition)');
  t.notOk('agent' in warm || 'timestamp' in warm || 'overlay' in warm, 'no agent, timestamp or overlay: they do not decide the tree');
  t.equal((warm.commands as string[]).length, 1, 'one command');
  t.equal(spawnSync('sh', ['-c', (warm.commands as string[])[0]], { stdio: 'ignore' }).status, 1, 'and it fails');
  t.equal(treeWarmUpDefinition({ ...base, exact: true }), null, 'exact: nothing to build ahead');
});

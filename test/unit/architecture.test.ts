/**
 * Layers point down: every import in src/ (static `import … from`, `export … from`, `import '…'`,
 * dynamic and type `import('…')`) goes to the importer's own folder, to a folder its layer's row
 * of LAYERS allows, or to a shared file of src/ itself; a `_`-prefixed helper is private to its
 * folder (a helper used across folders lives in src/_*.ts). docs/architecture.md draws the same
 * table and names every file of the tree; both are checked here.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { ROOT } from '../helpers.ts';

/**
 * Each top-level folder of src/ with its layer (0 lowest) and the folders it may import. Every
 * folder may import its own files and src/*.ts (layer 0: errors.ts, failpoint.ts, the shared
 * `_` helpers), which import nothing but each other. A new folder needs a row here and in
 * docs/architecture.md.
 */
const LAYERS: Record<string, { layer: number; imports: string[] }> = {
  store: { layer: 1, imports: [] },
  bootcount: { layer: 2, imports: ['store'] },
  delta: { layer: 2, imports: ['store'] },
  mqtt: { layer: 2, imports: ['store'] },
  packages: { layer: 2, imports: ['store'] },
  protocol: { layer: 2, imports: ['store'] },
  compose: { layer: 3, imports: ['store', 'packages'] },
  server: { layer: 3, imports: ['store', 'delta', 'mqtt', 'protocol'] },
  agent: { layer: 3, imports: ['store', 'bootcount', 'delta', 'mqtt', 'packages', 'protocol'] },
  image: { layer: 4, imports: ['store', 'bootcount', 'packages', 'protocol', 'compose', 'server', 'agent'] },
  oci: { layer: 4, imports: ['store', 'packages', 'compose'] },
  cli: { layer: 5, imports: ['store', 'bootcount', 'delta', 'mqtt', 'packages', 'protocol', 'compose', 'server', 'agent', 'image', 'oci'] },
};
const SHARED = '(src/*.ts)';

/** The folder whose rules apply to a path under src/: its top-level folder, or SHARED for src/*.ts. */
function folderOf(srcPath: string): string {
  const parts = srcPath.split('/');
  return parts.length > 2 ? parts[1] : SHARED;
}

/** Why `from` may not import `to` (both `src/...` paths), or null when it may. */
function importViolation(from: string, to: string): string | null {
  const f = folderOf(from);
  const g = folderOf(to);
  const prefix = `${from} imports ${to}: `;
  if (basename(to).startsWith('_') && !from.startsWith(`${dirname(to)}/`)) {
    return `${prefix}${basename(to)} is private to ${dirname(to)}/ (a helper used across folders lives in src/_*.ts)`;
  }
  if (f === g || g === SHARED) return null;
  if (f === SHARED) return `${prefix}the shared files of src/ may import only each other, not ${g}`;
  const rule = LAYERS[f];
  const target = LAYERS[g];
  if (!rule) return `${prefix}${f} is not in the layer table (test/unit/architecture.test.ts LAYERS, docs/architecture.md)`;
  if (!target) return `${prefix}${g} is not in the layer table (test/unit/architecture.test.ts LAYERS, docs/architecture.md)`;
  if (rule.imports.includes(g)) return null;
  if (target.layer > rule.layer) return `${prefix}${f} may not import ${g} (an upward import: ${g} is layer ${target.layer}, ${f} layer ${rule.layer})`;
  return `${prefix}${f} may not import ${g}`;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Every relative import of every file in src/, as `src/...` paths. */
function srcImports(): { from: string; to: string }[] {
  const out: { from: string; to: string }[] = [];
  for (const abs of sourceFiles(join(ROOT, 'src'))) {
    const from = relative(ROOT, abs);
    // preProcessFile finds import/export-from, side-effect imports and import('…') (dynamic and in types), skipping comments and strings.
    for (const ref of ts.preProcessFile(readFileSync(abs, 'utf8'), true, true).importedFiles) {
      if (!ref.fileName.startsWith('.')) continue; // node: and packages
      out.push({ from, to: relative(ROOT, resolve(dirname(abs), ref.fileName)) });
    }
  }
  return out;
}

t.test('the checker: upward, cross-layer and private-helper imports are named; allowed ones pass', async (t) => {
  t.equal(importViolation('src/store/repo.ts', 'src/agent/boot.ts'), 'src/store/repo.ts imports src/agent/boot.ts: store may not import agent (an upward import: agent is layer 3, store layer 1)');
  t.equal(importViolation('src/agent/update.ts', 'src/server/summary.ts'), 'src/agent/update.ts imports src/server/summary.ts: agent may not import server');
  t.equal(importViolation('src/image/_tool.ts', 'src/compose/_run.ts'), 'src/image/_tool.ts imports src/compose/_run.ts: _run.ts is private to src/compose/ (a helper used across folders lives in src/_*.ts)');
  t.equal(importViolation('src/errors.ts', 'src/store/repo.ts'), 'src/errors.ts imports src/store/repo.ts: the shared files of src/ may import only each other, not store');
  t.match(importViolation('src/newthing/x.ts', 'src/store/repo.ts'), /newthing is not in the layer table/);
  t.equal(importViolation('src/agent/daemon/session.ts', 'src/agent/_x.ts'), null, 'a private helper serves its folder and the folders below it');
  t.equal(importViolation('src/delta/apply.ts', 'src/_durable.ts'), null, 'a shared helper serves all');
  t.equal(importViolation('src/store/checkout.ts', 'src/store/_fs.ts'), null);
  t.equal(importViolation('src/cli/commands/db.ts', 'src/packages/package-diff.ts'), null);
});

t.test('the layer table points down only', async (t) => {
  for (const [folder, rule] of Object.entries(LAYERS)) {
    for (const dep of rule.imports) t.ok(LAYERS[dep] && LAYERS[dep].layer < rule.layer, `${folder} (layer ${rule.layer}) may import ${dep} (layer ${LAYERS[dep]?.layer}): a lower layer`);
  }
});

t.test('every import in src/ follows the layer table', async (t) => {
  const imports = srcImports();
  t.ok(imports.length > 300, `parsed the imports of src/ (${imports.length})`);
  const violations: string[] = [];
  for (const { from, to } of imports) {
    const why = importViolation(from, to);
    if (why) violations.push(why);
  }
  for (const v of [...new Set(violations)]) t.fail(v);
  t.equal(violations.length, 0, 'no import breaks the table');
});

t.test('every top-level folder of src/ has a layer', async (t) => {
  const folders = readdirSync(join(ROOT, 'src'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  for (const f of folders) t.ok(LAYERS[f], `src/${f}/ is in the layer table`);
});

/** docs/architecture.md: the `| folder | layer | may import |` table, and the files each `Module map of src/X/` section's table rows name first. */
function readArchitectureDoc(): { layers: Map<string, { layer: number; imports: string[] }>; maps: Map<string, Set<string>> } {
  const doc = readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8');
  const layers = new Map<string, { layer: number; imports: string[] }>();
  for (const m of doc.matchAll(/^\| `src\/([a-z]+)\/` +\| (\d) +\| ([^|]*)\|/gm)) {
    layers.set(m[1], { layer: Number(m[2]), imports: [...m[3].matchAll(/`([a-z]+)`/g)].map((x) => x[1]) });
  }
  const maps = new Map<string, Set<string>>();
  let current: Set<string> | null = null;
  for (const line of doc.split('\n')) {
    if (line.startsWith('#')) {
      const heading = /^#+ Module map of `src\/([a-z/]*)`/.exec(line);
      current = heading ? new Set() : null;
      if (heading && current) maps.set(heading[1], current);
    } else if (current) {
      const row = /^\| *`([A-Za-z0-9_./*-]+\.ts)` *\|/.exec(line);
      if (row) current.add(row[1]);
    }
  }
  return { layers, maps };
}

t.test('docs/architecture.md draws this table and maps every file of src/', async (t) => {
  const { layers, maps } = readArchitectureDoc();
  t.same(Object.fromEntries(layers), LAYERS, 'the doc\'s layer table is LAYERS');
  const files = sourceFiles(join(ROOT, 'src')).map((abs) => relative(join(ROOT, 'src'), abs));
  t.ok(maps.size >= 5, `the doc has module maps (${[...maps.keys()].join(', ')})`);
  for (const file of files) {
    const section = file.includes('/') ? file.slice(0, file.indexOf('/') + 1) : '';
    const named = maps.get(section);
    const name = file.slice(section.length);
    // `dir/*.ts` stands for every file of a subfolder of one kind (cli's one file per command group).
    const wildcard = name.includes('/') && named?.has(`${name.slice(0, name.lastIndexOf('/'))}/*.ts`);
    t.ok(named?.has(name) || wildcard, `src/${file} is in the module map of src/${section}`);
  }
  for (const [section, named] of maps) {
    for (const name of named) {
      const exists = name.endsWith('/*.ts') ? files.some((f) => f.startsWith(section + name.slice(0, -4))) : files.includes(section + name);
      t.ok(exists, `the module map of src/${section} names ${name}, which exists`);
    }
  }
});

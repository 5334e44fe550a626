/**
 * src/_run.ts: every tool larch runs is in the one tool -> Debian package table, and a missing
 * tool is TOOL_MISSING naming the tool and its package, wherever it is run from.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { TOOL_PACKAGES, runTool, runToolChecked } from '../../src/_run.ts';
import { acquireLock } from '../../src/store/lock.ts';
import { makeFifo } from '../../src/store/transaction.ts';
import { readTreeXattrs } from '../../src/store/xattrs.ts';
import { ROOT, tempDir } from '../helpers.ts';

/** Runs fn with no tool on PATH, as on a device that lacks them. */
async function withoutTools<T>(fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    return await fn();
  } finally {
    process.env.PATH = saved;
  }
}

t.test('a missing tool is TOOL_MISSING with the package to install and the caller\'s own hint', async (t) => {
  const dir = tempDir(t);
  await withoutTools(async () => {
    await t.rejects(acquireLock(join(dir, 'lock')), { code: 'TOOL_MISSING', message: "'flock' is needed to lock the repo and is not installed", hint: /apt-get install util-linux; busybox's flock applet/, data: { tool: 'flock', package: 'util-linux' } });
    await t.rejects(readTreeXattrs(dir), { code: 'TOOL_MISSING', hint: /apt-get install attr; 'larch commit --no-xattrs'/, data: { tool: 'getfattr', package: 'attr' } });
    await t.rejects(runToolChecked('mkfs.ext4', ['x'], { context: 'image build' }), { code: 'TOOL_MISSING', message: "image build: 'mkfs.ext4' is not installed", data: { tool: 'mkfs.ext4', package: 'e2fsprogs' } });
    t.throws(() => makeFifo(join(dir, 'fifo'), 0o644), { code: 'TOOL_MISSING', data: { tool: 'mkfifo', package: 'coreutils' } });
  });
});

t.test('a tool that fails is IO with its stderr; input reaches its stdin', async (t) => {
  t.equal(await runToolChecked('sh', ['-c', 'cat'], { input: 'to stdin' }), 'to stdin');
  await t.rejects(runToolChecked('sh', ['-c', 'echo broken >&2; exit 3'], { context: 'step' }), { code: 'IO', message: 'step: sh failed: broken', data: { tool: 'sh' } });
  t.equal((await runTool('sh', ['-c', 'exit 4'])).code, 4);
});

t.test('every tool run in src/ is in the table (a new tool must say which package provides it)', async (t) => {
  const t0 = /\b(?:runTool|runToolChecked|runToolSync|spawnFailure|toolMissing|tool)\(\s*'([^']+)'/g;
  const seen = new Set<string>();
  const handMade: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts')) {
        const text = readFileSync(p, 'utf8');
        for (const m of text.matchAll(t0)) seen.add(m[1]);
        if (!p.endsWith('/src/_run.ts') && /new LarchError\(\s*'TOOL_MISSING'/.test(text)) handMade.push(p);
      }
    }
  };
  walk(join(ROOT, 'src'));
  t.same(handMade, [], 'TOOL_MISSING is built only by src/_run.ts (toolMissing, spawnFailure)');
  t.ok(seen.size >= 10, `found the tool calls (${[...seen].join(', ')})`);
  for (const tool of seen) t.ok(TOOL_PACKAGES[tool], `${tool}: its package is listed`);
  await t.rejects(runTool('no-such-tool', []), TypeError, 'an unlisted tool is a programming error, not a user-facing one');
});

/**
 * Writes test/vectors/compat/v0.3/: the frozen files of delta format 3 (docs/formats.md §8.3,
 * zero-run coded diff bytes), so that every later larch is tested to read them
 * (test/integration/compat-vectors.test.ts). The commits are v0.2's (its repo.tar.gz, unchanged):
 *
 *   delta.larchdelta the format-3 one-file delta between v0.2's two commits (three view records)
 *   vectors.json     the commit ids (v0.2's), the key, the delta's format and view records
 *
 * Signed with the RFC 8032 TEST 1 key (docs/formats.md §4). Run only to freeze the set (never to
 * refresh it): node --import tsx scripts/make-compat-vectors-v0.3.ts [OUT_DIR]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? join(ROOT, 'test/vectors/compat/v0.3');
const v02 = join(ROOT, 'test/vectors/compat/v0.2');
const work = mkdtempSync(join(tmpdir(), 'larch-compat-'));
const larch = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bin/larch.js'), ...args, '--json'], { encoding: 'utf8' }));

try {
  mkdirSync(out, { recursive: true });
  const base = JSON.parse(readFileSync(join(v02, 'vectors.json'), 'utf8'));
  const key = join(work, 'vendor');
  writeFileSync(`${key}.key`, 'larch-ed25519-secret nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n', { mode: 0o600 });
  const repo = join(work, 'repo');
  mkdirSync(repo);
  execFileSync('tar', ['-xzf', join(v02, 'repo.tar.gz'), '-C', repo]);
  const [c1, c2] = (base.commits as { commit: string }[]).map((c) => c.commit);
  const delta = larch('delta', 'generate', '--repo', repo, '--from', c1, '--to', c2, '--sign-key', `${key}.key`, '--out', join(out, 'delta.larchdelta'), '--format', 'auto');
  if (delta.format !== 3 || delta.view_patched !== 3) throw new Error(`expected a format-3 delta with 3 view records, got format ${delta.format}, ${delta.view_patched}`);
  const vectors = {
    source: 'scripts/make-compat-vectors-v0.3.ts, run with larch ' + JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version + ' (delta format 3), on the commits of v0.2/repo.tar.gz',
    ref: base.ref,
    public_key: base.public_key,
    commits: base.commits,
    delta: { format: delta.format, view_patched: delta.view_patched, bytes: delta.bytes },
  };
  writeFileSync(join(out, 'vectors.json'), JSON.stringify(vectors, null, 2) + '\n');
  console.log(`wrote ${out}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/**
 * Writes test/vectors/compat/v0.2/: the frozen files of delta format 2 (docs/formats.md §8.6),
 * so that every later larch is tested to read them (test/integration/compat-vectors.test.ts):
 *
 *   repo.tar.gz      an archive repo with two signed commits on os/stable whose compressed files
 *                    change: a GNU `gzip -9n` changelog, a two-member gzip (-9n and -6n), and an
 *                    x86 bzImage-shaped kernel whose payload is an `lz4 -l -9` legacy frame
 *   delta.larchdelta the format-2 one-file delta between them (three view records)
 *   vectors.json     commit ids, the key, the delta's format and view records
 *
 * Signed with the RFC 8032 TEST 1 key (docs/formats.md §4). Run only to freeze the set (never to
 * refresh it): node --import tsx scripts/make-compat-vectors-v0.2.ts [OUT_DIR]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bzImage, changelog, codeLike, compressWith, gzip9n } from '../test/helpers.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? join(ROOT, 'test/vectors/compat/v0.2');
const work = mkdtempSync(join(tmpdir(), 'larch-compat-'));
const larch = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bin/larch.js'), ...args, '--json'], { encoding: 'utf8' }));
const REF = 'os/stable';

try {
  mkdirSync(out, { recursive: true });
  const key = join(work, 'vendor');
  writeFileSync(`${key}.key`, 'larch-ed25519-secret nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n', { mode: 0o600 });
  const repo = join(work, 'repo');
  larch('init', '--repo', repo, '--mode', 'archive');
  const commits: string[] = [];
  for (const v of [1, 2]) {
    const tree = join(work, `tree${v}`);
    const files: Record<string, Uint8Array | string> = {
      'etc/os-release': `NAME=compat\nVERSION=${v}\n`,
      'usr/share/doc/compat/changelog.Debian.gz': gzip9n(changelog(60 + v, 1)),
      'usr/share/doc/compat/NEWS.gz': Buffer.concat([gzip9n(changelog(30 + v, 2)), compressWith('gzip', ['-6n'], changelog(20 + v, 3))]),
      [`boot/vmlinuz-6.1.0-1-amd64`]: bzImage(codeLike(v, 200_000, 20 * v), 9, Buffer.from(`signature ${v}`.repeat(10))),
    };
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(tree, path, '..'), { recursive: true });
      writeFileSync(join(tree, path), content);
    }
    commits.push(larch('commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(v), '--subject', `v${v}`, '--owner', '0:0', '--no-xattrs', '--timestamp', String(1_767_225_600 + v * 86_400), '--sign-key', `${key}.key`).commit);
  }
  const [c1, c2] = commits as [string, string];
  // --format 2: the default became format 3 after this set was frozen (v0.3/).
  const delta = larch('delta', 'generate', '--repo', repo, '--from', c1, '--to', c2, '--sign-key', `${key}.key`, '--out', join(out, 'delta.larchdelta'), '--format', '2');
  if (delta.format !== 2 || delta.view_patched !== 3) throw new Error(`expected a format-2 delta with 3 view records, got format ${delta.format}, ${delta.view_patched}`);
  rmSync(join(repo, 'lock'), { force: true });
  execFileSync('tar', ['--sort=name', '--numeric-owner', '-czf', join(out, 'repo.tar.gz'), '-C', repo, '.']);
  const vectors = {
    source: 'scripts/make-compat-vectors-v0.2.ts, run with larch ' + JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version + ' (delta format 2)',
    ref: REF,
    public_key: 'larch-ed25519-public 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
    commits: [
      { commit: c1, version: '1' },
      { commit: c2, version: '2' },
    ],
    delta: { format: delta.format, view_patched: delta.view_patched, bytes: delta.bytes },
  };
  writeFileSync(join(out, 'vectors.json'), JSON.stringify(vectors, null, 2) + '\n');
  console.log(`wrote ${out}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

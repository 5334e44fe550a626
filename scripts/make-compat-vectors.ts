/**
 * Writes test/vectors/compat/v0.1/: frozen files in the formats larch 0.1 writes, so that every
 * later larch is tested to read them (test/integration/compat-vectors.test.ts):
 *
 *   repo.tar.gz      an archive repo with two signed commits on os/stable, the signed delta
 *                    between them (R/deltas/FROM-TO/) and a signed summary listing both
 *   delta.larchdelta the same delta in the one-file form (docs/formats.md §8.1)
 *   sysroot.tar.gz   a device (GRUB) provisioned at version 1, booted good by sim-boot, with
 *                    version 2 staged by `upgrade` (deployment records, env, journal, ...)
 *   vectors.json     what the test expects: commit ids, versions, the key, the summary's times
 *
 * Signed with the RFC 8032 TEST 1 key (docs/formats.md §4). Run only to freeze a new set, with
 * the larch whose formats are to be frozen (never to refresh an old set: the point is that they
 * do not change): node --import tsx scripts/make-compat-vectors.ts [OUT_DIR]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const out = process.argv[2] ?? join(ROOT, 'test/vectors/compat/v0.1');
const work = mkdtempSync(join(tmpdir(), 'larch-compat-'));
const larch = (...args: string[]) => JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bin/larch.js'), ...args, '--json'], { encoding: 'utf8' }));
const REF = 'os/stable';

try {
  mkdirSync(out, { recursive: true });
  const key = join(work, 'vendor');
  writeFileSync(`${key}.key`, 'larch-ed25519-secret nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\n', { mode: 0o600 });
  writeFileSync(`${key}.pub`, 'larch-ed25519-public 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n');
  const repo = join(work, 'repo');
  larch('init', '--repo', repo, '--mode', 'archive');
  const commits: string[] = [];
  for (const v of [1, 2]) {
    const tree = join(work, `tree${v}`);
    const files: Record<string, string> = {
      'etc/os-release': `NAME=compat\nVERSION=${v}\n`,
      'etc/app.conf': `a=1\nb=${v}\n`,
      'usr/bin/tool': `#!/bin/sh\necho tool ${v}\n`,
      'usr/share/doc/notes': 'the same in both releases\n'.repeat(20) + (v === 2 ? 'and one line more\n' : ''),
      [`boot/vmlinuz-6.1.0-${v}`]: `kernel ${v}\n`,
      [`boot/initrd.img-6.1.0-${v}`]: `initrd ${v}\n`,
      'var/lib/seed': 'seeded\n',
    };
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(tree, path, '..'), { recursive: true });
      writeFileSync(join(tree, path), content, { mode: path.startsWith('usr/bin/') ? 0o755 : 0o644 });
    }
    commits.push(larch('commit', '--repo', repo, '-b', REF, '--tree', tree, '--version', String(v), '--subject', `v${v}`, '--owner', '0:0', '--no-xattrs', '--timestamp', String(1_767_225_600 + v * 86_400), '--sign-key', `${key}.key`).commit);
  }
  const [c1, c2] = commits as [string, string];
  larch('delta', 'generate', '--repo', repo, '--from', c1, '--to', c2, '--sign-key', `${key}.key`, '--out', join(out, 'delta.larchdelta'));
  const published = larch('publish', '--repo', repo, '--sign-key', `${key}.key`, '--expires-in', '1d');
  rmSync(join(repo, 'lock'), { force: true });

  const sysroot = join(work, 'sysroot');
  larch('provision', '--sysroot', sysroot, '--repo-url', repo, '--ref', REF, '--keys', `${key}.pub`, '--bootloader', 'grub', '--version', '1');
  larch('sim-boot', '--sysroot', sysroot);
  larch('upgrade', '--sysroot', sysroot);
  const status = larch('status', '--sysroot', sysroot);

  const tar = (dir: string, file: string) => execFileSync('tar', ['--sort=name', '--numeric-owner', '-czf', join(out, file), '-C', dir, '.']);
  tar(repo, 'repo.tar.gz');
  tar(sysroot, 'sysroot.tar.gz');
  const vectors = {
    source: 'scripts/make-compat-vectors.ts, run with larch ' + JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version,
    ref: REF,
    public_key: 'larch-ed25519-public 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=',
    commits: [
      { commit: c1, version: '1' },
      { commit: c2, version: '2' },
    ],
    summary: { serial: published.serial, created_s: published.created_s, expires_s: published.expires_s },
    sysroot: { repo_url: repo, booted: { slot: status.booted.slot, commit: status.booted.commit, version: status.booted.version }, pending: { slot: status.pending.slot, commit: status.pending.commit, version: status.pending.version } },
  };
  writeFileSync(join(out, 'vectors.json'), JSON.stringify(vectors, null, 2) + '\n');
  console.log(`wrote ${out}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

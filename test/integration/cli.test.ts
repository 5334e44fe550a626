/** The command line contract: help, usage errors, exit codes, --json errors, idempotent init. */
import t from 'tap';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { larch, larchOk, tempDir } from '../helpers.ts';

const COMMANDS = ['init', 'keygen', 'commit', 'sign', 'verify', 'trust', 'log', 'show', 'ls', 'diff', 'refs', 'checkout', 'fsck', 'prune', 'pull-local'];

t.test('every command has a manual page', async (t) => {
  const top = await larch(['--help']);
  t.equal(top.code, 0);
  for (const c of COMMANDS) {
    t.match(top.stdout, new RegExp(`^  ${c} `, 'm'), `listed: ${c}`);
    const r = await larch([c, '--help']);
    t.equal(r.code, 0, `${c} --help exits 0`);
    t.match(r.stdout, /^NAME\n/, `${c}: NAME section`);
    t.match(r.stdout, /\nSYNOPSIS\n/, `${c}: SYNOPSIS section`);
    t.match(r.stdout, /\nOPTIONS\n/, `${c}: OPTIONS section`);
  }
  t.equal((await larch([])).code, 2, 'no command: usage, exit 2');
});

t.test('usage errors exit 2 with a one-line message and a hint', async (t) => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['commit', '--repo', 'x'], /no larch repo|--branch is required|exactly one of/],
    [['init'], /--repo is required/],
    [['log', '--repo', '/nonexistent', '--bogus'], /Unknown option '--bogus'/],
    [['prune', '--repo', 'r', '--keep', 'zero'], /--keep must be an integer/],
  ];
  for (const [args, message] of cases) {
    const r = await larch(args);
    t.not(r.code, 0, `${args.join(' ')}: fails`);
    t.match(r.stderr, message, `${args.join(' ')}: says why`);
    t.match(r.stderr, /\nhint: /, `${args.join(' ')}: gives a hint`);
  }
  t.equal((await larch(['frobnicate'])).code, 2);
  t.equal((await larch(['init', '--mode', 'weird', '--repo', '/tmp/x'])).code, 2);
});

t.test('--json errors are one object with code, message, hint and data', async (t) => {
  const dir = tempDir(t);
  const r = await larch(['log', '--repo', join(dir, 'missing'), 'main', '--json']);
  t.equal(r.code, 3);
  t.same(Object.keys(r.json.error).sort(), ['code', 'data', 'hint', 'message']);
  t.equal(r.json.error.code, 'NOT_FOUND');
  t.match(r.json.error.hint, /larch init --repo/);
});

t.test('init is idempotent and refuses another mode', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  t.equal((await larch(['init', '--repo', repo, '--mode', 'archive'])).code, 0, 'again: fine');
  const other = await larch(['init', '--repo', repo, '--mode', 'bare-user', '--json']);
  t.equal(other.code, 11);
  t.equal(other.json.error.code, 'EXISTS');
});

t.test('revisions, log, show, ls and refs', async (t) => {
  const dir = tempDir(t);
  const repo = join(dir, 'r');
  const tree = join(dir, 'tree');
  mkdirSync(join(tree, 'etc'), { recursive: true });
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const ids: string[] = [];
  for (const v of ['1', '2', '3']) {
    writeFileSync(join(tree, 'etc', 'version'), v);
    ids.push((await larchOk(['commit', '--repo', repo, '-b', 'os/main', '--tree', tree, '--version', v, '--subject', `release ${v}`, '--metadata', 'k=v', '--timestamp', '2026-01-0' + v + 'T00:00:00Z', '--json'])).json.commit);
  }
  const log = (await larchOk(['log', '--repo', repo, 'os/main', '--json'])).json;
  t.same(log.map((c: { version: string }) => c.version), ['3', '2', '1'], 'log newest first');
  t.equal(log[0].parent, ids[1], 'parents chain');
  t.equal(log[2].date, '2026-01-01T00:00:00Z', 'ISO timestamp');
  t.equal((await larchOk(['show', '--repo', repo, 'os/main^^', '--json'])).json.commit, ids[0], 'branch^^');
  t.equal((await larchOk(['show', '--repo', repo, ids[1].slice(0, 10), '--json'])).json.version, '2', 'id prefix');
  t.same((await larchOk(['show', '--repo', repo, 'os/main', '--json'])).json.metadata, { k: 'v' }, 'metadata');
  t.equal((await larch(['show', '--repo', repo, 'os/main^^^', '--json'])).json.error.code, 'NOT_FOUND', 'past the root');
  const ls = (await larchOk(['ls', '--repo', repo, 'os/main', '-R', '--json'])).json;
  t.same(ls.map((e: { path: string; type: string }) => `${e.type} ${e.path}`), ['dir /etc', 'reg /etc/version']);
  t.same((await larchOk(['diff', '--repo', repo, 'os/main^', 'os/main', '--json'])).json.modified, ['/etc/version']);
  t.equal((await larchOk(['log', '--repo', repo, 'os/main', '-n', '1', '--json'])).json.length, 1, '-n 1');
  await larchOk(['refs', '--repo', repo, '--delete', 'os/main']);
  t.same((await larchOk(['refs', '--repo', repo, '--json'])).json, [], 'branch deleted');
  t.equal((await larchOk(['show', '--repo', repo, ids[2], '--json'])).json.version, '3', 'commit stays until prune');
});

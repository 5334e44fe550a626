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
  const bare = await larch([]);
  t.equal(bare.code, 0, 'no command: the list of commands, exit 0');
  t.equal(bare.stdout, top.stdout, 'no command: the same text as --help, on stdout');
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

t.test('command groups answer by their name; larch --json alone is a usage error in JSON', async (t) => {
  for (const group of ['delta', 'db', 'image', 'bootenv']) {
    for (const args of [[group], [group, '--help']]) {
      const r = await larch(args);
      t.equal(r.code, 0, `larch ${args.join(' ')}: exit 0`);
      t.match(r.stdout, new RegExp(`SUBCOMMANDS\\n  ${group} \\w+`), `larch ${args.join(' ')}: lists the subcommands`);
    }
  }
  const sub = await larch(['delta', 'frobnicate', '--json']);
  t.equal(sub.code, 2);
  t.match(sub.json.error, { code: 'USAGE', message: "unknown command 'delta frobnicate'", hint: /delta generate/ });
  const json = await larch(['--json']);
  t.equal(json.code, 2, 'larch --json: exit 2');
  t.match(json.json.error, { code: 'USAGE', message: 'no command given' }, 'as JSON on stdout');
});

t.test('NOT_FOUND hints name the next step for what was not found', async (t) => {
  const dir = tempDir(t);
  const file = await larch(['delta', 'show', join(dir, 'no.delta'), '--json']);
  t.equal(file.json.error.code, 'NOT_FOUND');
  t.notMatch(file.json.error.hint, /larch refs/, 'a missing file: no talk of refs');
  t.match(file.json.error.hint, /check the path/);
  const repo = join(dir, 'r');
  await larchOk(['init', '--repo', repo, '--mode', 'archive']);
  const rev = await larch(['log', '--repo', repo, 'nope', '--json']);
  t.match(rev.json.error, { code: 'NOT_FOUND', hint: new RegExp(`larch refs --repo ${repo}`), data: { rev: 'nope' } }, 'a missing branch: refs and log of that repo');
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
  t.equal(log[2].date, '2026-01-01T00:00:00.000Z', 'ISO timestamp with milliseconds');
  t.equal(log[2].timestamp_s, Date.parse('2026-01-01T00:00:00Z') / 1000, 'and the seconds, named _s');
  t.equal((await larchOk(['show', '--repo', repo, 'os/main^^', '--json'])).json.commit, ids[0], 'branch^^');
  t.equal((await larchOk(['show', '--repo', repo, ids[1].slice(0, 10), '--json'])).json.version, '2', 'id prefix');
  t.same((await larchOk(['show', '--repo', repo, 'os/main', '--json'])).json.metadata, { k: 'v', 'larch.ref': 'os/main', 'larch.release': 3 }, 'metadata, with the ref and the release commit gives every commit');
  t.equal((await larch(['show', '--repo', repo, 'os/main^^^', '--json'])).json.error.code, 'NOT_FOUND', 'past the root');
  const ls = (await larchOk(['ls', '--repo', repo, 'os/main', '-R', '--json'])).json;
  t.same(ls.map((e: { path: string; type: string }) => `${e.type} ${e.path}`), ['dir /etc', 'reg /etc/version']);
  const one = (await larchOk(['ls', '--repo', repo, 'os/main', '/etc/version', '--json'])).json;
  t.same(one.map((e: { path: string; type: string; size: number }) => `${e.type} ${e.path} ${e.size}`), ['reg /etc/version 1'], 'ls of a file shows that entry');
  const missing = await larch(['ls', '--repo', repo, 'os/main', '/etc/nope', '--json']);
  t.equal(missing.json.error.code, 'NOT_FOUND');
  t.match(missing.json.error.hint, /larch ls --repo .* os\/main \/etc' lists what is there/, 'the hint lists the directory that exists');
  t.same((await larchOk(['diff', '--repo', repo, 'os/main^', 'os/main', '--json'])).json.modified, ['/etc/version']);
  t.equal((await larchOk(['log', '--repo', repo, 'os/main', '-n', '1', '--json'])).json.length, 1, '-n 1');
  await larchOk(['refs', '--repo', repo, '--delete', 'os/main']);
  t.same((await larchOk(['refs', '--repo', repo, '--json'])).json, [], 'branch deleted');
  t.equal((await larchOk(['show', '--repo', repo, ids[2], '--json'])).json.version, '3', 'commit stays until prune');
});

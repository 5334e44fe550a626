/**
 * One vocabulary: every command's --json output (its result and its error) and every JSON record
 * a device writes use snake_case keys at every depth, and every timestamp is ISO 8601 UTC with
 * milliseconds. The commands come from the CLI's command table: a new command without a run
 * below fails this test until it gets one.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCommands } from '../../src/cli/commands/index.ts';
import { BIN, type RunResult, debs, larch, tempDir } from '../helpers.ts';
import { REF, vendor } from '../device-helpers.ts';
import { startBroker } from '../mqtt-helpers.ts';

const commands = await loadCommands();

const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** Anything that starts like a date is a timestamp and must be the one format. */
const LOOKS_LIKE_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;
/** A number under a time-like name is integer seconds and says so: NAME_s. */
const TIME_NAME = /(^|_)(time|timestamp|issued|expires|created|at|since|until|mtime)$/;

/**
 * Objects whose keys are data, not field names (refs by name, env variables, metadata, files by
 * path): their keys are not checked, their values are.
 */
const DATA_MAPS = /(^|\.)(refs|vars|metadata|slots|counts|boot_aliases)$/;

/** Every key (path.key) that is not snake_case and every timestamp-looking value in another format. */
export function vocabularyProblems(value: unknown, path = ''): string[] {
  const problems: string[] = [];
  if (Array.isArray(value)) {
    value.forEach((v, i) => problems.push(...vocabularyProblems(v, `${path}[${i}]`)));
  } else if (value !== null && typeof value === 'object') {
    const dataKeys = DATA_MAPS.test(path);
    for (const [k, v] of Object.entries(value)) {
      const at = path ? `${path}.${k}` : k;
      if (!dataKeys && !SNAKE.test(k)) problems.push(`key ${at} is not snake_case`);
      if (!dataKeys && typeof v === 'number' && TIME_NAME.test(k)) problems.push(`key ${at} holds seconds: name it ${k}_s`);
      problems.push(...vocabularyProblems(v, at));
    }
  } else if (typeof value === 'string' && LOOKS_LIKE_TIME.test(value) && !ISO_MS.test(value)) {
    problems.push(`value ${path} '${value}' is not ISO 8601 UTC with milliseconds`);
  }
  return problems;
}

t.test('the checker itself finds camelCase keys, second timestamps and other date formats', async (t) => {
  t.same(vocabularyProblems({ a_b: 1, refs: { 'os/stable': 'x' } }), []);
  t.same(vocabularyProblems({ data: { maxBytes: 1 } }), ['key data.maxBytes is not snake_case']);
  t.same(vocabularyProblems([{ time: '2026-01-01T00:00:00Z' }]), ["value [0].time '2026-01-01T00:00:00Z' is not ISO 8601 UTC with milliseconds"]);
  t.same(vocabularyProblems({ expires: 5 }), ['key expires holds seconds: name it expires_s']);
  t.same(vocabularyProblems({ expires_s: 5, time: '2026-01-01T00:00:00.000Z' }), []);
});

interface Run {
  cmd: string;
  args: string[];
  /** The error code it ends with; undefined: it succeeds; 'either': the outcome is not what this run checks. */
  fails?: string;
  /** Done before the run (a new release). */
  before?: () => Promise<unknown>;
}

t.test("every command's --json output and error, and the device's JSON records, speak one vocabulary", async (t) => {
  const v = await vendor(t);
  const v1 = await v.release(1);
  const v2 = await v.release(2);
  
  const dir = tempDir(t);
  const dev = join(dir, 'dev');
  const local = join(dir, 'local');
  const tree = join(v.dir, 'v1');
  const deltaFile = join(dir, 'v2.delta');
  const pkgs = join(dir, 'pkgs.json');
  writeFileSync(pkgs, JSON.stringify({ 'larch.packages': [['busybox', '1:1.35.0-4', 'amd64']] }));
  const pkgs2 = join(dir, 'pkgs2.json');
  writeFileSync(pkgs2, JSON.stringify({ 'larch.packages': [['busybox', '1:1.36.1-1', 'amd64'], ['hostname', '3.23', 'amd64']] }));
  const envDefaults = join(dir, 'env-defaults');
  writeFileSync(envDefaults, 'bootcmd=run larch\nBOOT_ORDER=A B\n');
  const broker = await startBroker(t, tempDir(t));
  const sysroot = ['--sysroot', dev];
  const repo = ['--repo', v.repo];

  // In this order: later runs use what earlier ones made.
  const runs: Run[] = [
    { cmd: 'keygen', args: ['--out', join(dir, 'k2')] },
    { cmd: 'init', args: ['--repo', local, '--mode', 'archive'] },
    { cmd: 'commit', args: ['--repo', local, '-b', 'pkgs', '--tree', tree, '--version', '1', '--metadata-json', pkgs, '--timestamp', '1700000000'] },
    { cmd: 'commit', args: ['--repo', local, '-b', 'pkgs2', '--tree', tree, '--version', '2', '--metadata-json', pkgs2, '--timestamp', '1700000100'] },
    { cmd: 'compose', args: [join(dir, 'missing.toml'), '--repo', local], fails: 'NOT_FOUND' },
    { cmd: 'sign', args: ['--repo', local, '--sign-key', `${join(dir, 'k2')}.key`, 'pkgs'] },
    { cmd: 'trust', args: ['--repo', local, `${join(dir, 'k2')}.pub`] },
    { cmd: 'trust create', args: ['--out', join(dir, 't1.trust'), '--root', `${join(dir, 'k2')}.pub`, '--commit', `${v.key}.pub`, '--summary', `${v.key}.pub`, '--command', `${join(dir, 'k2')}.pub`, '--sign-key', `${v.key}.key`] },
    { cmd: 'trust sign', args: [join(dir, 't1.trust'), '--sign-key', `${join(dir, 'k2')}.key`] },
    { cmd: 'trust rotate', args: [join(dir, 't1.trust'), '--out', join(dir, 't2.trust'), '--add', `command=${v.key}.pub`, '--threshold', 'command=2', '--sign-key', `${join(dir, 'k2')}.key`] },
    { cmd: 'trust show', args: [join(dir, 't2.trust')] },
    { cmd: 'trust publish', args: ['--repo', local, join(dir, 't1.trust')] },
    { cmd: 'verify', args: ['--repo', local, 'pkgs'] },
    { cmd: 'verify', args: ['--repo', local, 'pkgs2'], fails: 'SIGNATURE_MISSING' },
    { cmd: 'log', args: [...repo, REF] },
    { cmd: 'show', args: [...repo, REF] },
    { cmd: 'show', args: ['--repo', local, 'pkgs'] },
    { cmd: 'ls', args: [...repo, REF, '/etc'] },
    { cmd: 'diff', args: [...repo, v1, v2] },
    { cmd: 'db list', args: ['--repo', local, 'pkgs'] },
    { cmd: 'db diff', args: ['--repo', local, 'pkgs', 'pkgs2'] },
    { cmd: 'refs', args: repo },
    { cmd: 'checkout', args: [...repo, v1, join(dir, 'co')] },
    { cmd: 'export-oci', args: [...repo, v1, '--out', join(dir, 'image.tar'), '--platform', 'linux/amd64'] },
    { cmd: 'commit', args: ['--repo', local, '-b', 'image', '--oci', join(dir, 'image.tar'), '--version', '1-oci'] },
    { cmd: 'fsck', args: repo },
    { cmd: 'pull-local', args: ['--repo', local, v.repo, REF] },
    { cmd: 'prune', args: ['--repo', local, '--keep', '1'] },
    { cmd: 'image build', args: [join(dir, 'missing.toml'), '--board', 'qemu-x86_64-grub', '--out', join(dir, 'disk.img'), '--repo', local, '--sign-key', `${v.key}.key`], fails: 'NOT_FOUND' },
    { cmd: 'delta generate', args: [...repo, '--to', v2, '--sign-key', `${v.key}.key`, '--out', deltaFile] },
    { cmd: 'delta show', args: [deltaFile] },
    { cmd: 'delta apply', args: ['--repo', join(dir, 'empty'), deltaFile, '--key', `${v.key}.pub`], fails: 'NOT_FOUND' },
    { cmd: 'init', args: ['--repo', join(dir, 'fresh'), '--mode', 'archive'] },
    { cmd: 'delta apply', args: ['--repo', join(dir, 'fresh'), deltaFile], fails: 'USAGE' },
    { cmd: 'delta apply', args: ['--repo', join(dir, 'fresh'), deltaFile, '--key', `${v.key}.pub`] },
    { cmd: 'delta list', args: repo },
    { cmd: 'barrier add', args: [...repo, '--ref', REF, '1'] },
    { cmd: 'barrier add', args: [...repo, '--ref', REF, '99'], fails: 'NOT_FOUND' },
    { cmd: 'barrier list', args: repo },
    { cmd: 'barrier remove', args: [...repo, '--ref', REF, '1'] },
    { cmd: 'publish', args: [...repo, '--sign-key', `${v.key}.key`] },
    { cmd: 'bundle create', args: [...repo, '--ref', REF, '--sign-key', `${v.key}.key`, '--out', join(dir, 'update.larchb')] },
    { cmd: 'provision', args: [...sysroot, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot', '--kargs', 'console=ttyS0 quiet'] },
    { cmd: 'sim-boot', args: sysroot },
    { cmd: 'status', args: sysroot },
    { cmd: 'check', args: sysroot },
    { cmd: 'deploy', args: [...sysroot, '1'], fails: 'REFUSED' },
    { cmd: 'upgrade', args: [...sysroot, '--dry-run'], before: () => v.release(3) },
    { cmd: 'upgrade', args: sysroot },
    { cmd: 'finalize', args: sysroot },
    { cmd: 'sim-boot', args: [...sysroot, '--unhealthy'] },
    { cmd: 'boot-check', args: [...sysroot, '--no-reboot'] },
    { cmd: 'sim-boot', args: sysroot },
    { cmd: 'mark-bad', args: [...sysroot, '--slot', 'B', '--force'] },
    { cmd: 'mark-good', args: sysroot },
    { cmd: 'rollback', args: sysroot, fails: 'either' },
    { cmd: 'cleanup', args: sysroot },
    { cmd: 'pin', args: sysroot },
    { cmd: 'unpin', args: sysroot },
    { cmd: 'history', args: sysroot },
    { cmd: 'kargs', args: sysroot },
    { cmd: 'kargs', args: [...sysroot, '--append', 'loglevel=7', '--dry-run'] },
    { cmd: 'kargs', args: [...sysroot, '--delete', 'nosuch'], fails: 'INVALID_INPUT' },
    // Package layering on a tree that is not layering-capable (no dpkg database): the errors' JSON; layering.test.ts has the successes.
    { cmd: 'install', args: [...sysroot, 'jq'], fails: 'INVALID_INPUT' },
    { cmd: 'uninstall', args: [...sysroot, 'jq'], fails: 'NOT_FOUND' },
    { cmd: 'override replace', args: [...sysroot, debs().find((d) => /\/hostname_/.test(d))!], fails: 'INVALID_INPUT' },
    { cmd: 'override remove', args: [...sysroot, 'hostname'], fails: 'INVALID_INPUT' },
    { cmd: 'override reset', args: sysroot },
    { cmd: 'remote add', args: [...sysroot, 'mirror', v.url] },
    { cmd: 'remote add', args: [...sysroot, 'mirror', v.url], fails: 'EXISTS' },
    { cmd: 'remote list', args: sysroot },
    { cmd: 'remote show', args: [...sysroot, 'mirror', '--refs'] },
    { cmd: 'rebase', args: [...sysroot, 'mirror:nosuch/ref'], fails: 'NOT_FOUND' },
    { cmd: 'rebase', args: [...sysroot, `mirror:${REF}`], fails: 'either' },
    { cmd: 'remote delete', args: [...sysroot, 'origin'], fails: 'REFUSED' },
    { cmd: 'rebase', args: [...sysroot, `origin:${REF}`], fails: 'either' },
    { cmd: 'cancel', args: sysroot },
    { cmd: 'apply-live', args: [...sysroot, '--dry-run'], fails: 'either' },
    { cmd: 'trust install', args: [...sysroot, join(dir, 't1.trust')] },
    { cmd: 'trust show', args: sysroot },
    { cmd: 'bootenv list', args: ['--uboot', join(dev, 'boot/fw_env.config'), '--lock', join(dir, 'env.lock')] },
    { cmd: 'bootenv get', args: ['--uboot', join(dev, 'boot/fw_env.config'), '--lock', join(dir, 'env.lock'), 'BOOT_ORDER'] },
    { cmd: 'bootenv init', args: ['--grub', join(dir, 'grubenv'), '--lock', join(dir, 'env.lock'), '--defaults', envDefaults] },
    { cmd: 'bootenv set', args: ['--grub', join(dir, 'grubenv'), '--lock', join(dir, 'env.lock'), 'A=1'] },
    { cmd: 'bootenv unset', args: ['--grub', join(dir, 'grubenv'), '--lock', join(dir, 'env.lock'), 'A'] },
    { cmd: 'announce', args: [...repo, '--sign-key', `${v.key}.key`, '--mqtt', broker.url] },
    { cmd: 'command', args: ['--mqtt', broker.url, '--device', 'dev-0', '--sign-key', `${v.key}.key`, '--wait', '0', 'check'] },
    { cmd: 'daemon', args: ['--sysroot', join(dir, 'not-provisioned')], fails: 'NOT_FOUND' },
    { cmd: 'failpoints', args: [] },
  ];

  const check = (what: string, r: RunResult, expect: string | undefined) => {
    t.ok(r.json !== undefined, `${what}: stdout is one JSON document (${r.stderr.trim().slice(0, 300)})`);
    if (expect === undefined) t.equal(r.code, 0, `${what}: succeeds (${r.stderr.trim().slice(0, 300)})`);
    else if (expect !== 'either') t.equal(r.json?.error?.code, expect, `${what}: ${expect} (${r.json?.error?.message})`);
    t.same(vocabularyProblems(r.json), [], `${what}: snake_case keys, one timestamp format`);
  };

  for (const run of runs) {
    await run.before?.();
    const r = await larch([...run.cmd.split(' '), ...run.args, '--json']);
    check(`larch ${run.cmd} ${run.args.join(' ')}`, r, run.fails);
  }

  // serve runs until stopped: its first line is its --json answer.
  const serveLine = await new Promise<string>((resolve, reject) => {
    const child = spawn(BIN, ['serve', ...repo, '--port', '0', '--log', join(dir, 'serve.log'), '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) {
        child.kill('SIGTERM');
        resolve(out.slice(0, out.indexOf('\n')));
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
  });
  t.same(vocabularyProblems(JSON.parse(serveLine)), [], 'larch serve --json: snake_case');
  runs.push({ cmd: 'serve', args: [] });

  const ran = new Set(runs.map((r) => r.cmd));
  t.same(commands.map((c) => c.name).filter((n) => !ran.has(n)), [], 'every command in the command table has a --json run here');

  // The JSON records the device keeps on disk.
  const records: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      // Not the object store, nor the deployed trees (S/larch/deploy/X/): their files are the OS's.
      if (e.isDirectory() && e.name !== 'repo' && !d.endsWith('/deploy')) walk(p);
      else if (e.isFile() && /\.jsonl?$/.test(e.name)) records.push(p);
    }
  };
  walk(join(dev, 'larch'));
  t.ok(records.length >= 3, `the device keeps JSON records (${records.map((r) => r.slice(dev.length)).join(', ')})`);
  for (const file of records) {
    const text = readFileSync(file, 'utf8');
    const docs = file.endsWith('.jsonl') ? text.split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [JSON.parse(text)];
    t.same(docs.flatMap((d) => vocabularyProblems(d)), [], `${file.slice(dev.length)}: snake_case, one timestamp format`);
  }
});

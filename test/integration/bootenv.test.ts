/**
 * `larch bootenv` through the built binary, against the real fw_printenv/fw_setenv
 * (libubootenv), mkenvimage and grub-editenv: output, --json, exit codes. A missing tool fails.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { larch, larchOk, tempDir } from '../helpers.ts';

function tool(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd} could not run (${(r.error as NodeJS.ErrnoException).code}): install libubootenv-tool, u-boot-tools and grub-common`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

const DEFAULTS = 'bootcmd=run distro_bootcmd\nbootdelay=2\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n';

function ubootSetup(t: { teardown(fn: () => unknown): void }, redundant: boolean) {
  const dir = tempDir(t, 'larch-bootenv-');
  const env = join(dir, 'uboot.env');
  const cfg = join(dir, 'fw_env.config');
  writeFileSync(cfg, redundant ? `${env} 0x0 0x4000\n${env} 0x4000 0x4000\n` : `${env} 0x0 0x4000\n`);
  writeFileSync(env, new Uint8Array(redundant ? 0x8000 : 0x4000).fill(0xff));
  const defaults = join(dir, 'defaults.txt');
  writeFileSync(defaults, DEFAULTS);
  return { dir, env, cfg, defaults, lock: ['--lock', join(dir, 'lock')] };
}

t.test('every bootenv command has a manual page', async (t) => {
  const top = await larch(['--help']);
  for (const sub of ['list', 'get', 'set', 'unset', 'init']) {
    t.match(top.stdout, new RegExp(`^  bootenv ${sub} `, 'm'), `listed: bootenv ${sub}`);
    const r = await larch(['bootenv', sub, '--help']);
    t.equal(r.code, 0, `bootenv ${sub} --help exits 0`);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'EXIT STATUS', 'EXAMPLES']) t.match(r.stdout, new RegExp(`^${section}\\n`, 'm'), `bootenv ${sub}: ${section}`);
  }
});

t.test('U-Boot, redundant: init, set, get, unset, list agree with fw_printenv and fw_setenv', async (t) => {
  const s = ubootSetup(t, true);
  const blank = await larch(['bootenv', 'set', 'BOOT_ORDER=B A', '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(blank.code, 13, 'set on blank storage: exit 13');
  t.equal(blank.json?.error?.code, 'ENV_CORRUPT');
  t.match(blank.json?.error?.message, new RegExp(`'${s.env}' at offset 0x0: bad CRC`), 'names the file and offset');
  t.match(blank.stderr, /hint: .*bootenv init --defaults/, 'hint: init with the whole default env');
  t.equal(readFileSync(s.env).every((b) => b === 0xff), true, 'nothing written');

  const init = await larchOk(['bootenv', 'init', '--uboot', s.cfg, ...s.lock, '--defaults', s.defaults, 'serial=42', '--json']);
  t.equal(init.json.vars.serial, '42');
  t.equal(tool('fw_printenv', ['-c', s.cfg]), 'BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=A B\nbootcmd=run distro_bootcmd\nbootdelay=2\nserial=42\n', 'fw_printenv reads the whole env');
  t.equal((await larch(['bootenv', 'init', '--uboot', s.cfg, ...s.lock, '--defaults', s.defaults])).code, 11, 'init again: exit 11 (EXISTS)');

  const set = await larchOk(['bootenv', 'set', 'BOOT_ORDER=B A', 'BOOT_B_LEFT=2', 'note=a=b c', 'serial=', '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(set.json.changed, true);
  t.same(set.json.vars, { BOOT_A_LEFT: '3', BOOT_B_LEFT: '2', BOOT_ORDER: 'B A', bootcmd: 'run distro_bootcmd', bootdelay: '2', note: 'a=b c' }, 'all variables after the update; NAME= unset serial');
  const file = readFileSync(s.env);
  t.same([file[4], file[0x4004]], [1, 2], 'one update: copy 1 written once, flags 1 -> 2');
  t.equal(tool('fw_printenv', ['-c', s.cfg, '-n', 'note']), 'a=b c\n', 'fw_printenv -n sees the value');

  t.equal((await larchOk(['bootenv', 'get', 'BOOT_ORDER', '--uboot', s.cfg, ...s.lock])).stdout, 'B A\n', 'get prints the value alone');
  t.same((await larchOk(['bootenv', 'get', 'BOOT_ORDER', '--uboot', s.cfg, ...s.lock, '--json'])).json, { name: 'BOOT_ORDER', value: 'B A' });
  const missing = await larch(['bootenv', 'get', 'serial', '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(missing.code, 3, 'get of an unset variable: exit 3');
  t.equal(missing.json?.error?.code, 'NOT_FOUND');
  t.same(missing.json?.error?.data, { name: 'serial' });

  tool('fw_setenv', ['-c', s.cfg, 'fromtool', 'x y']);
  const list = await larchOk(['bootenv', 'list', '--uboot', s.cfg, ...s.lock]);
  t.equal(list.stdout, tool('fw_printenv', ['-c', s.cfg]), 'list prints what fw_printenv prints, after an fw_setenv write');

  const unset = await larchOk(['bootenv', 'unset', 'note', 'fromtool', 'never-set', '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(unset.json.changed, true);
  t.equal(tool('fw_printenv', ['-c', s.cfg]).includes('note='), false, 'unset');
  const again = await larchOk(['bootenv', 'unset', 'never-set', '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(again.json.changed, false, 'unsetting nothing writes nothing');

  // Damage the newest copy: list falls back to the other, the next set repairs it.
  const b = readFileSync(s.env);
  const newest = b[4] > b[0x4004] ? 0 : 0x4000;
  b[newest + 50] ^= 0xff;
  writeFileSync(s.env, b);
  t.equal((await larchOk(['bootenv', 'get', 'note', '--uboot', s.cfg, ...s.lock])).stdout, 'a=b c\n', 'the previous copy is used');
  await larchOk(['bootenv', 'set', 'repaired=1', '--uboot', s.cfg, ...s.lock]);
  t.equal(tool('fw_printenv', ['-c', s.cfg, '-n', 'repaired']), '1\n', 'fw_printenv reads the repaired copy');

  const full = await larch(['bootenv', 'set', `huge=${'x'.repeat(0x4000)}`, '--uboot', s.cfg, ...s.lock, '--json']);
  t.equal(full.code, 13, 'too big: exit 13');
  t.equal(full.json?.error?.code, 'ENV_FULL');
  t.equal(full.json?.error?.data?.available_bytes, 0x4000 - 5);
});

t.test('U-Boot, single copy: init is byte-identical to mkenvimage -p 0, little- and big-endian', async (t) => {
  for (const endian of [[], ['--big-endian']]) {
    const s = ubootSetup(t, false);
    const sortedText = join(s.dir, 'sorted.txt');
    writeFileSync(sortedText, DEFAULTS.trim().split('\n').sort().join('\n') + '\n');
    await larchOk(['bootenv', 'init', '--uboot', s.cfg, ...s.lock, '--defaults', s.defaults, ...endian]);
    const image = join(s.dir, 'mk.bin');
    tool('mkenvimage', ['-p', '0', ...(endian.length ? ['-b'] : []), '-s', '0x4000', '-o', image, sortedText]);
    t.ok(readFileSync(s.env).equals(readFileSync(image)), `${endian.join('') || 'little-endian'}: same bytes as mkenvimage`);
    t.equal((await larchOk(['bootenv', 'get', 'bootcmd', '--uboot', s.cfg, ...s.lock, ...endian])).stdout, 'run distro_bootcmd\n');
    if (endian.length) {
      const wrong = await larch(['bootenv', 'list', '--uboot', s.cfg, ...s.lock, '--json']);
      t.equal(wrong.code, 13, 'read without --big-endian: ENV_CORRUPT');
      t.match(wrong.json?.error?.hint, /big-endian/);
    }
  }
});

t.test('GRUB: set/unset/list agree with grub-editenv, escaping included', async (t) => {
  const dir = tempDir(t, 'larch-bootenv-');
  const ours = join(dir, 'ours');
  const theirs = join(dir, 'theirs');
  const lock = ['--lock', join(dir, 'lock')];
  const values = ['ORDER=B A', 'A_OK=1', 'eq=x=y', 'bs=a\\b', 'multi=line1\nline2', 'sp= two  spaces '];
  await larchOk(['bootenv', 'set', ...values, '--grub', ours, ...lock]);
  tool('grub-editenv', [theirs, 'set', ...values]);
  t.ok(readFileSync(ours).equals(readFileSync(theirs)), 'larch creates and sets the same bytes as grub-editenv');
  t.equal((await larchOk(['bootenv', 'list', '--grub', ours, ...lock])).stdout, tool('grub-editenv', [theirs, 'list']), 'list matches grub-editenv list');
  const json = await larchOk(['bootenv', 'list', '--grub', theirs, ...lock, '--json']);
  t.same(json.json.vars, { ORDER: 'B A', A_OK: '1', eq: 'x=y', bs: 'a\\b', multi: 'line1\nline2', sp: ' two  spaces ' }, 'exact values in --json');
  t.equal((await larchOk(['bootenv', 'get', 'multi', '--grub', theirs, ...lock])).stdout, 'line1\nline2\n');

  await larchOk(['bootenv', 'unset', 'eq', 'A_OK', '--grub', ours, ...lock]);
  tool('grub-editenv', [theirs, 'unset', 'eq', 'A_OK']);
  t.ok(readFileSync(ours).equals(readFileSync(theirs)), 'unset: same bytes');

  const big = await larch(['bootenv', 'set', `v=${'x'.repeat(1000)}`, '--grub', ours, ...lock, '--json']);
  t.equal(big.code, 13);
  t.equal(big.json?.error?.code, 'ENV_FULL');

  writeFileSync(theirs, 'garbage'.padEnd(1024, '#'));
  const bad = await larch(['bootenv', 'list', '--grub', theirs, ...lock, '--json']);
  t.equal(bad.code, 13);
  t.equal(bad.json?.error?.code, 'ENV_CORRUPT');
  t.match(bad.json?.error?.message, new RegExp(`grubenv '${theirs}'`));
  t.equal((await larch(['bootenv', 'init', '--grub', theirs, ...lock])).code, 11, 'init over an existing file needs --force');
  await larchOk(['bootenv', 'init', '--grub', theirs, ...lock, '--force', 'ORDER=A B']);
  t.equal(tool('grub-editenv', [theirs, 'list']), 'ORDER=A B\n');
  t.equal((await larch(['bootenv', 'list', '--grub', join(dir, 'none'), ...lock])).code, 3, 'list of a missing grubenv: exit 3');
});

t.test('usage errors exit 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['bootenv', 'list'], /exactly one of --uboot/],
    [['bootenv', 'list', '--uboot', 'a', '--grub', 'b'], /exactly one of --uboot/],
    [['bootenv', 'list', '--grub', 'a', '--systemd-boot', 'b'], /exactly one of --uboot FW_ENV_CONFIG, --grub GRUBENV and --systemd-boot ESP/],
    [['bootenv', 'list', '--systemd-boot', '/tmp/x', '--big-endian'], /--big-endian applies to --uboot only/],
    [['bootenv', 'set', 'novalue', '--grub', '/tmp/x'], /expected NAME=VALUE, got 'novalue'/],
    [['bootenv', 'set', '--grub', '/tmp/x'], /at least one NAME=VALUE/],
    [['bootenv', 'get', '--grub', '/tmp/x'], /expected NAME/],
    [['bootenv', 'list', '--grub', '/tmp/x', '--big-endian'], /--big-endian applies to --uboot only/],
  ];
  for (const [args, message] of cases) {
    const r = await larch(args);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, message);
  }
  const cfg = await larch(['bootenv', 'list', '--uboot', '/nonexistent/fw_env.config']);
  t.equal(cfg.code, 3, 'missing fw_env.config: exit 3');
});

t.test('the same commands run on Node', async (t) => {
  const s = ubootSetup(t, false);
  await larchOk(['bootenv', 'init', '--uboot', s.cfg, ...s.lock, '--defaults', s.defaults], { runtime: 'node' });
  t.equal((await larchOk(['bootenv', 'get', 'BOOT_ORDER', '--uboot', s.cfg, ...s.lock], { runtime: 'node' })).stdout, 'A B\n');
});

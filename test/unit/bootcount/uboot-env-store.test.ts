/**
 * The U-Boot env store against the real tools: libubootenv's fw_printenv/fw_setenv 0.3.2 and
 * mkenvimage. Both directions, single and redundant, damaged copies, torn writes, flag wrap,
 * the shared lock. A missing tool fails these tests (it never skips them).
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type EnvFileIo, UBOOT_LOCK_PATH, nodeEnvFileIo, openUbootEnvStore } from '../../../src/bootcount/env-store.ts';
import { decodeEnv, encodeCopy, inspectCopy } from '../../../src/bootcount/uboot-env.ts';
import { acquireLock } from '../../../src/store/lock.ts';
import { rejectsCode, tempDir, waitUntil } from '../../helpers.ts';

const SIZE = 0x4000;

function tool(cmd: string, args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  if (r.error) throw new Error(`${cmd} could not run (${(r.error as NodeJS.ErrnoException).code}): install libubootenv-tool and u-boot-tools`);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** fw_printenv's view: every variable, and each value exactly (via -n, which prints value + newline). */
function fwPrintenv(cfg: string, names?: string[]): Map<string, string> {
  const all = tool('fw_printenv', ['-c', cfg]);
  if (all.code !== 0) throw new Error(`fw_printenv -c ${cfg} exited ${all.code}: ${all.stderr}`);
  const out = new Map<string, string>();
  const listed = names ?? all.stdout.split('\n').filter((l) => l.includes('=')).map((l) => l.slice(0, l.indexOf('=')));
  for (const name of listed) {
    const one = tool('fw_printenv', ['-c', cfg, '-n', name]);
    if (one.code !== 0) throw new Error(`fw_printenv -n ${name} exited ${one.code}`);
    out.set(name, one.stdout.replace(/\n$/, ''));
  }
  return out;
}

function fwSetenv(cfg: string, args: string[]): void {
  const r = tool('fw_setenv', ['-c', cfg, ...args]);
  if (r.code !== 0) throw new Error(`fw_setenv ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
}

function sorted(m: Map<string, string>): [string, string][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function setup(t: { teardown(fn: () => unknown): void }, redundant: boolean) {
  const dir = tempDir(t, 'larch-ubootenv-');
  const env = join(dir, 'uboot.env');
  const cfg = join(dir, 'fw_env.config');
  writeFileSync(cfg, redundant ? `${env} 0x0 0x4000\n${env} 0x4000 0x4000\n` : `${env} 0x0 0x4000\n`);
  writeFileSync(env, new Uint8Array(redundant ? 2 * SIZE : SIZE));
  const defaults = join(dir, 'defaults.txt');
  writeFileSync(defaults, 'bootcmd=run distro_bootcmd\nbootdelay=2\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n');
  return { dir, env, cfg, defaults, lockPath: join(dir, 'lock') };
}

const TRICKY = { spaces: 'a b  c', eq: 'x=y=z', bs: 'a\\b', nl: 'line1\nline2', utf8: 'grün ✓', script: 'if test ${a} = 1; then echo ok; fi' };

for (const redundant of [false, true]) {
  const kind = redundant ? 'redundant' : 'single copy';

  t.test(`${kind}: an env fw_setenv wrote reads the same in larch, and the other way round`, async (t) => {
    const s = setup(t, redundant);
    fwSetenv(s.cfg, ['-f', s.defaults, 'fromtool', 'yes']);
    const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
    const fromTool = fwPrintenv(s.cfg);
    t.same(sorted(await store.read()), sorted(fromTool), 'larch reads what fw_printenv prints');
    t.equal(fromTool.get('fromtool'), 'yes');

    const r = await store.update((v) => {
      for (const [k, val] of Object.entries(TRICKY)) v.set(k, val);
      v.set('BOOT_A_LEFT', '2');
      v.delete('fromtool');
    });
    t.equal(r.changed, true);
    const after = fwPrintenv(s.cfg);
    t.same(sorted(after), sorted(await store.read()), 'fw_printenv prints what larch wrote');
    for (const [k, val] of Object.entries(TRICKY)) t.equal(after.get(k), val, `fw_printenv -n ${k}`);
    t.equal(after.has('fromtool'), false, 'unset');
    t.equal(after.get('bootcmd'), 'run distro_bootcmd', 'variables not named are kept');

    fwSetenv(s.cfg, ['BOOT_B_LEFT', '1']);
    t.equal((await store.read()).get('BOOT_B_LEFT'), '1', 'fw_setenv after larch: larch reads it');
    t.equal((await store.read()).get('nl'), 'line1\nline2', 'and keeps the rest');
  });
}

t.test('single copy in a regular file is replaced atomically (new inode, mode kept); no change, no write', async (t) => {
  const s = setup(t, false);
  fwSetenv(s.cfg, ['-f', s.defaults, 'x', '1']);
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  statSync(s.env);
  spawnSync('chmod', ['640', s.env]);
  const before = statSync(s.env);
  await store.update((v) => v.set('x', '2'));
  const after = statSync(s.env);
  t.not(after.ino, before.ino, 'renamed into place');
  t.equal(after.mode & 0o777, 0o640, 'mode kept');
  t.equal(after.size, SIZE);
  const r = await store.update((v) => v.set('x', '2'));
  t.equal(r.changed, false);
  t.equal(statSync(s.env).ino, after.ino, 'nothing written when nothing changed');
  fwSetenv(s.cfg, ['empty', '']); // libubootenv stores `empty=`
  t.equal((await store.read()).get('empty'), '', 'an empty value reads as stored');
  const ino = statSync(s.env).ino;
  t.equal((await store.update((v) => v.delete('never-set'))).changed, false, 'a stored `empty=` alone is no reason to write');
  t.equal(statSync(s.env).ino, ino);
  await store.write(new Map([['only', 'this'], ['dropped', '']]));
  t.same(sorted(fwPrintenv(s.cfg)), [['only', 'this']], 'write replaces the whole env; empty values are not stored');
});

t.test('single copy inside a file over 16 MiB (a disk image) is written in place', async (t) => {
  const dir = tempDir(t, 'larch-ubootenv-');
  const image = join(dir, 'disk.img');
  spawnSync('truncate', ['-s', '17M', image]);
  const cfg = join(dir, 'cfg');
  writeFileSync(cfg, `${image} 0x100000 0x4000\n`);
  const store = await openUbootEnvStore(cfg, { lockPath: join(dir, 'lock') });
  await store.init(new Map([['bootcmd', 'boot'], ['a', '1']]));
  const ino = statSync(image).ino;
  await store.update((v) => v.set('a', '2'));
  t.equal(statSync(image).ino, ino, 'same inode: not copied');
  t.equal(statSync(image).size, 17 * 1024 * 1024, 'size kept');
  t.same(sorted(fwPrintenv(cfg)), [['a', '2'], ['bootcmd', 'boot']]);
});

t.test('ENV_FULL names the sizes and leaves the env as it was', async (t) => {
  const s = setup(t, true);
  fwSetenv(s.cfg, ['-f', s.defaults]);
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  const before = readFileSync(s.env);
  const err = await rejectsCode(t, store.update((v) => v.set('big', 'x'.repeat(SIZE))), 'ENV_FULL', 'refused');
  t.equal(err.data.available_bytes, SIZE - 5, 'data area of a redundant copy');
  t.ok(readFileSync(s.env).equals(before), 'nothing written');
});

t.test('blank storage: reads and writes fail with ENV_CORRUPT, never a partial env; init writes the whole defaults', async (t) => {
  for (const redundant of [false, true]) {
    const s = setup(t, redundant);
    const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
    const blank = readFileSync(s.env);
    const err = await rejectsCode(t, store.read(), 'ENV_CORRUPT', `${redundant}: read`);
    t.match(err.message, new RegExp(`'${s.env}' at offset 0x0: bad CRC`), 'names the file and offset');
    t.equal(err.data.blank, true);
    await rejectsCode(t, store.update((v) => v.set('a', '1')), 'ENV_CORRUPT', 'update refused');
    await rejectsCode(t, store.write(new Map([['a', '1']])), 'ENV_CORRUPT', 'write refused');
    t.ok(readFileSync(s.env).equals(blank), 'storage untouched');

    const defaults = new Map([...readFileSync(s.defaults, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string])]);
    defaults.set('extra', '1');
    await store.init(defaults);
    t.same(sorted(fwPrintenv(s.cfg)), sorted(defaults), `${redundant ? 'redundant' : 'single'}: fw_printenv reads the whole env`);
    if (redundant) {
      const bytes = readFileSync(s.env);
      const copies = [bytes.subarray(0, SIZE), bytes.subarray(SIZE)].map((c) => inspectCopy(c, { sizeBytes: SIZE, redundant: true }));
      t.same(copies.map((c) => [c.crcValid, c.flags]), [[true, 1], [true, 0]], 'both copies written: copy 0 flags 1, copy 1 flags 0');
    }
    await rejectsCode(t, store.init(new Map([['a', '1']])), 'EXISTS', 'init refuses a valid env');
    await store.init(new Map([['only', 'this']]), { force: true });
    t.same(sorted(fwPrintenv(s.cfg)), [['only', 'this']], 'init --force replaces it');
  }
});

t.test('a missing env file: ENV_CORRUPT saying so; init creates it', async (t) => {
  const dir = tempDir(t, 'larch-ubootenv-');
  const cfg = join(dir, 'cfg');
  const env = join(dir, 'sub-uboot.env');
  writeFileSync(cfg, `${env} 0 4000\n`);
  const store = await openUbootEnvStore(cfg, { lockPath: join(dir, 'lock') });
  const err = await rejectsCode(t, store.read(), 'ENV_CORRUPT', 'refused');
  t.match(err.message, /does not exist/);
  await store.init(new Map([['a', '1']]));
  t.equal(statSync(env).size, SIZE);
  t.same(sorted(fwPrintenv(cfg)), [['a', '1']]);
});

t.test('redundant: writes alternate copies with flags +1; fw_setenv agrees', async (t) => {
  const s = setup(t, true);
  writeFileSync(s.env, new Uint8Array(2 * SIZE).fill(0xff)); // erased flash
  fwSetenv(s.cfg, ['-f', s.defaults]); // blank storage: libubootenv writes copy 1 with flags 0xFF + 1 = 0
  const flagsOf = () => {
    const b = readFileSync(s.env);
    return [b.subarray(0, SIZE), b.subarray(SIZE)].map((c) => {
      const st = inspectCopy(c, { sizeBytes: SIZE, redundant: true });
      return st.crcValid ? st.flags : 'bad';
    });
  };
  t.same(flagsOf(), ['bad', 0], 'fw_setenv on blank storage');
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  await store.update((v) => v.set('n', '1'));
  t.same(flagsOf(), [1, 0], 'larch wrote copy 0 with flags 1');
  fwSetenv(s.cfg, ['n', '2']);
  t.same(flagsOf(), [1, 2], 'fw_setenv wrote copy 1 with flags 2');
  await store.update((v) => v.set('n', '3'));
  t.same(flagsOf(), [3, 2], 'larch wrote copy 0 with flags 3');
  t.equal(fwPrintenv(s.cfg, ['n']).get('n'), '3');
});

t.test('redundant: a copy with a bad CRC is skipped and the next write repairs it', async (t) => {
  const s = setup(t, true);
  const layout = { sizeBytes: SIZE, redundant: true };
  const file = Buffer.concat([encodeCopy(new Map([['v', 'older'], ['keep', 'k']]), layout, { flags: 4 }), encodeCopy(new Map([['v', 'newer'], ['keep', 'k']]), layout, { flags: 5 })]);
  file[SIZE + 100] ^= 0x55; // damage the newer copy's data area
  writeFileSync(s.env, file);
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  t.equal((await store.read()).get('v'), 'older', 'larch uses the valid copy');
  t.equal(fwPrintenv(s.cfg, ['v']).get('v'), 'older', 'so does fw_printenv');
  await store.update((v) => v.set('v', 'repaired'));
  const b = readFileSync(s.env);
  const states = [b.subarray(0, SIZE), b.subarray(SIZE)].map((c) => inspectCopy(c, layout));
  t.same(states.map((x) => [x.crcValid, x.flags]), [[true, 4], [true, 5]], 'the damaged copy was rewritten with flags 5; the other kept');
  t.equal(fwPrintenv(s.cfg, ['v']).get('v'), 'repaired', 'fw_printenv reads the repaired copy');
  t.equal((await store.read()).get('keep'), 'k');

  b[100] ^= 0x55;
  b[SIZE + 100] ^= 0x55;
  writeFileSync(s.env, b);
  const err = await rejectsCode(t, store.read(), 'ENV_CORRUPT', 'both copies bad');
  t.match(err.message, new RegExp(`'${s.env}' at offset 0x0: bad CRC.*'${s.env}' at offset 0x4000: bad CRC`));
  t.equal((err.data.copies as unknown[]).length, 2);
  t.not(tool('fw_printenv', ['-c', s.cfg]).code, 0, 'fw_printenv refuses it too');
});

t.test('redundant: a torn write of the new copy leaves the old copy in charge', async (t) => {
  const s = setup(t, true);
  fwSetenv(s.cfg, ['-f', s.defaults, 'state', 'old']);
  const before = readFileSync(s.env);
  const tornIo: EnvFileIo = {
    ...nodeEnvFileIo,
    async writeAt(path, offset, bytes) {
      // Power cut halfway through the copy: the first half lands, the rest is left garbled.
      const torn = Uint8Array.from(bytes).fill(0xa5, bytes.length / 2);
      await nodeEnvFileIo.writeAt(path, offset, torn);
      throw Object.assign(new Error('simulated power cut'), { code: 'EIO' });
    },
  };
  const torn = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath, io: tornIo });
  const err = await rejectsCode(t, torn.update((v) => v.set('state', 'new')), 'IO', 'refused');
  t.not(readFileSync(s.env).equals(before), true, 'half a copy was written');
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  t.equal((await store.read()).get('state'), 'old', 'larch reads the old copy');
  t.equal(fwPrintenv(s.cfg, ['state']).get('state'), 'old', 'fw_printenv too');
  await store.update((v) => v.set('state', 'new'));
  t.equal(fwPrintenv(s.cfg, ['state']).get('state'), 'new', 'the next write goes through');

  // The same from the outside: damage the copy just written; the previous one wins again.
  const b = readFileSync(s.env);
  const d = decodeEnv([b.subarray(0, SIZE), b.subarray(SIZE)], { sizeBytes: SIZE, redundant: true });
  b[d.active * SIZE + 10] ^= 0xff;
  writeFileSync(s.env, b);
  t.equal((await store.read()).get('state'), 'old', 'a damaged newest copy falls back to the previous one');
});

t.test('redundant: flags wrap 255 -> 0, and fw_printenv picks the wrapped copy', async (t) => {
  const s = setup(t, true);
  const layout = { sizeBytes: SIZE, redundant: true };
  writeFileSync(s.env, Buffer.concat([encodeCopy(new Map([['v', '254']]), layout, { flags: 254 }), encodeCopy(new Map([['v', '255']]), layout, { flags: 255 })]));
  const store = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath });
  t.equal((await store.read()).get('v'), '255');
  await store.update((v) => v.set('v', 'wrapped'));
  const b = readFileSync(s.env);
  t.equal(b[4], 0, 'copy 0 written with flags 0');
  t.equal(fwPrintenv(s.cfg, ['v']).get('v'), 'wrapped', 'fw_printenv: 0 beats 255');
  await store.update((v) => v.set('v', 'after'));
  t.equal(readFileSync(s.env)[SIZE + 4], 1, 'then copy 1 with flags 1');
  t.equal(fwPrintenv(s.cfg, ['v']).get('v'), 'after');
});

t.test('mkenvimage images decode: -s, -r at one or both offsets, -b, -p', async (t) => {
  const dir = tempDir(t, 'larch-mkenvimage-');
  const txt = join(dir, 'env.txt');
  writeFileSync(txt, '# comment\nbootcmd=run distro_bootcmd\nBOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n');
  const expected = [['BOOT_A_LEFT', '3'], ['BOOT_B_LEFT', '3'], ['BOOT_ORDER', 'A B'], ['bootcmd', 'run distro_bootcmd']];
  const make = (opts: string[]) => {
    const out = join(dir, `img${opts.join('')}.bin`);
    const r = tool('mkenvimage', [...opts, '-s', '0x4000', '-o', out, txt]);
    if (r.code !== 0) throw new Error(`mkenvimage failed: ${r.stderr}`);
    return readFileSync(out);
  };
  for (const opts of [[], ['-p', '0'], ['-p', '0x5a']]) {
    const img = make(opts);
    t.same(sorted(decodeEnv([img], { sizeBytes: SIZE, redundant: false }).vars), expected, `mkenvimage ${opts.join(' ')}`);
  }
  t.same(sorted(decodeEnv([make(['-b'])], { sizeBytes: SIZE, redundant: false, byteOrder: 'big' }).vars), expected, 'mkenvimage -b, read big-endian');
  const r = make(['-r']);
  t.equal(r[4], 1, '-r writes flags 1');
  t.same(sorted(decodeEnv([r, r], { sizeBytes: SIZE, redundant: true }).vars), expected, '-r at both offsets');
  const d = decodeEnv([new Uint8Array(SIZE).fill(0xff), r], { sizeBytes: SIZE, redundant: true });
  t.equal(d.active, 1, '-r at the second offset, the first blank');

  // And through the store, with the image as the file fw_env.config names.
  const cfg = join(dir, 'cfg');
  writeFileSync(join(dir, 'r2.bin'), Buffer.concat([r, r]));
  writeFileSync(cfg, `${join(dir, 'r2.bin')} 0x0 0x4000\n${join(dir, 'r2.bin')} 0x4000 0x4000\n`);
  const store = await openUbootEnvStore(cfg, { lockPath: join(dir, 'lock') });
  await store.update((v) => v.set('BOOT_ORDER', 'B A'));
  t.equal(fwPrintenv(cfg, ['BOOT_ORDER']).get('BOOT_ORDER'), 'B A', 'larch wrote copy 1 (flags 2) over a mkenvimage -r pair');
  t.equal(readFileSync(join(dir, 'r2.bin'))[SIZE + 4], 2);
});

t.test('larch and fw_setenv share /var/lock/fw_printenv.lock', async (t) => {
  const s = setup(t, false);
  fwSetenv(s.cfg, ['-f', s.defaults]);
  const lock = await acquireLock(UBOOT_LOCK_PATH);
  const child = spawn('fw_setenv', ['-c', s.cfg, 'waited', 'yes']);
  let exited = false;
  const done = new Promise<number | null>((r) => child.on('close', (code) => ((exited = true), r(code))));
  // Blocked on the lock: /proc/locks lists a waiter ("->") of fw_setenv's pid.
  await waitUntil(() => readFileSync('/proc/locks', 'utf8').split('\n').some((l) => / -> /.test(l) && l.split(/\s+/).includes(String(child.pid))), 5000, 'fw_setenv blocked on the lock');
  t.equal(exited, false, 'fw_setenv waits while larch holds the lock');
  await lock.release();
  t.equal(await done, 0);
  t.equal((await (await openUbootEnvStore(s.cfg)).read()).get('waited'), 'yes', 'then runs (larch read under the default lock)');

  const holder = spawn('flock', ['-x', s.lockPath, 'sh', '-c', 'echo held; exec sleep 3']);
  await new Promise<void>((r) => holder.stdout.once('data', () => r())); // flock runs the command once it holds the lock
  const held = await openUbootEnvStore(s.cfg, { lockPath: s.lockPath, lockTimeoutMs: 200 });
  const err = await rejectsCode(t, held.update((v) => v.set('x', '1')), 'LOCKED', 'a held lock times out with LOCKED');
  t.match(err.message, /bootloader env lock/);
  // Reads are optimistic: a valid env (every copy has a CRC) is read without the lock...
  t.equal((await held.read()).get('waited'), 'yes', 'a valid env reads while the lock is held');
  // ...and one that does not check out is read again under the lock, after the writer.
  writeFileSync(s.env, new Uint8Array(SIZE));
  await rejectsCode(t, held.read(), 'LOCKED', 'an invalid env waits for the lock (here: times out) instead of failing at once');
  holder.kill();
});

t.test('storage that is not a file or block device is refused', async (t) => {
  const dir = tempDir(t, 'larch-ubootenv-');
  writeFileSync(join(dir, 'cfg'), '/dev/null 0 0x4000\n');
  const err = await rejectsCode(t, (await openUbootEnvStore(join(dir, 'cfg'), { lockPath: join(dir, 'lock') })).read(), 'INVALID_INPUT', 'refused');
  t.match(err.message, /'\/dev\/null' is not a regular file, block device or MTD device/);
  await rejectsCode(t, openUbootEnvStore(join(dir, 'nope')), 'NOT_FOUND', 'a missing fw_env.config');
});

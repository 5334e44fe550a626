/**
 * daemon.conf (TOML, read by smol-toml): the reboot and metrics keys, string arrays, and the
 * refusals naming file, line and key (a strategy without its windows or lock URL names the line
 * that chose it).
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDaemonConfig, readDaemonConfig, retryDelayMs } from '../../../src/agent/policy.ts';
import { rejectsCode, tempDir } from '../../helpers.ts';

t.test('reboot and metrics keys', async (t) => {
  const c = parseDaemonConfig(
    [
      'reboot_strategy = "periodic"',
      'reboot_windows = ["Mon,Wed 02:00 60m", "Sat-Sun 23:30 2h",]  # a trailing comma, a comment',
      'fleet_lock_url = "http://fleetlock.example:8080/"',
      'fleet_lock_group = "canary.eu-1"',
      'fleet_lock_retry_s = 30',
      'metrics_listen = "[::1]:9105"',
    ].join('\n'),
    'd.conf',
  );
  t.same(c, { rebootStrategy: 'periodic', rebootWindows: ['Mon,Wed 02:00 60m', 'Sat-Sun 23:30 2h'], fleetLockUrl: 'http://fleetlock.example:8080/', fleetLockGroup: 'canary.eu-1', fleetLockRetryS: 30, metricsListen: '[::1]:9105' });
  t.same(parseDaemonConfig('reboot_windows = "Sun 03:00 1h"', 'd.conf'), { rebootWindows: ['Sun 03:00 1h'] }, 'one window as a plain string');
  t.same(parseDaemonConfig('reboot_windows = []', 'd.conf'), { rebootWindows: [] });
  t.same(parseDaemonConfig('retry_interval_s = 30\nretry_max_s = 600', 'd.conf'), { retryIntervalS: 30, retryMaxS: 600 }, 'the retry of a failed announced update');
  t.same(parseDaemonConfig("reboot_windows = [\n  'Mon 02:00 1h', # literal string\n  \"Tue 02:00 1h\",\n]\npolicy = 'apply'", 'd.conf'), { rebootWindows: ['Mon 02:00 1h', 'Tue 02:00 1h'], policy: 'apply' }, 'TOML: a multi-line array, literal strings');
});

t.test('bad values are refused with file and line', async (t) => {
  const cases: [string, RegExp][] = [
    ['reboot_strategy = "sometimes"', /must be one of immediate, periodic, fleet_lock/],
    ['reboot_windows = ["Mon 25:00 1h"]', /not a time of day/],
    ['reboot_windows = ["Mon 02:00 1h" "Tue 02:00 1h"]', /not valid TOML \(column \d+\): expected comma/],
    ['reboot_windows = [1]', /a quoted window or an array of them/],
    ['policy = ["apply"]', /takes one value, not an array/],
    ['fleet_lock_url = "ftp://x"', /http:\/\/ or https:\/\//],
    ['fleet_lock_group = "a b"', /letters, digits/],
    ['metrics_listen = "9105"', /HOST:PORT/],
    ['retry_interval_s = -1', /non-negative integer, got the integer -1/],
    ['jitter_s = "5"', /non-negative integer, got the string '5'/],
    ['wariness = 1.5', /from 0 to 1, got the number 1.5/],
    ['policy = true', /must be one of none, .*, got true/],
    ['[mqtt]', /'mqtt' is a table: daemon.conf has no tables/],
    ['polcy = "apply"', /unknown key 'polcy'/],
    ['device_id = "a', /not valid TOML \(column \d+\): /],
    ['metrics_listen = "127.0.0.1:99999"', /HOST:PORT/],
  ];
  for (const [line, why] of cases) {
    const err = await rejectsCode(t, () => parseDaemonConfig(`# x\n${line}\n`, '/s/larch/daemon.conf'), 'INVALID_INPUT', `${line}: names file and line`, { message: /^\/s\/larch\/daemon\.conf:2: / });
    t.match(err.message, why);
    t.match(err.data, { file: '/s/larch/daemon.conf', line: 2 }, 'data names file and line');
    t.ok(err.hint, 'a hint says the fix');
  }
});

t.test('a bad value names its key in data, and the hint shows a good one', async (t) => {
  t.throws(() => parseDaemonConfig('jitter_s = "30"', 'd.conf'), { code: 'INVALID_INPUT', data: { file: 'd.conf', line: 1, key: 'jitter_s' }, hint: /jitter_s = 60 \(no quotes\)/ });
  t.throws(() => parseDaemonConfig('jitter_s = 1\njitter_s = 2', 'd.conf'), { message: /^d\.conf:2: not valid TOML \(column 1\): .*already defined/, data: { line: 2, column: 1 } }, 'a key set twice in one file');
  t.throws(() => parseDaemonConfig('nope = 1', 'd.conf'), { code: 'INVALID_INPUT', data: { key: 'nope' }, hint: /the keys are policy, device_id, .*min_speed_time_s/ });
});

t.test('a strategy without what it needs is refused after all files are read', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'daemon.conf.d'));
  writeFileSync(join(dir, 'daemon.conf'), 'policy = "apply-and-reboot"\n');
  writeFileSync(join(dir, 'daemon.conf.d/50-reboot.conf'), '# reboots\nreboot_strategy = "periodic"\n');
  await t.rejects(readDaemonConfig(dir), { code: 'INVALID_INPUT', message: /50-reboot\.conf:2: reboot_strategy "periodic" needs reboot_windows/, data: { line: 2 } });
  writeFileSync(join(dir, 'daemon.conf.d/60-windows.conf'), 'reboot_windows = ["Sat 02:00 60m"]\n');
  t.same((await readDaemonConfig(dir)).config.rebootWindows, ['Sat 02:00 60m'], 'a later drop-in supplies the windows');
  writeFileSync(join(dir, 'daemon.conf.d/70-lock.conf'), 'reboot_strategy = "fleet_lock"\n');
  await t.rejects(readDaemonConfig(dir), { message: /70-lock\.conf:1: reboot_strategy "fleet_lock" needs fleet_lock_url/ });
  writeFileSync(join(dir, 'daemon.conf.d/80-url.conf'), 'fleet_lock_url = "http://127.0.0.1:1"\n');
  t.match((await readDaemonConfig(dir)).config, { rebootStrategy: 'fleet_lock', fleetLockGroup: 'default', fleetLockRetryS: 300, metricsListen: undefined });
});

t.test('the wait before a failed announced update is tried again', async (t) => {
  const c = { retryIntervalS: 60, retryMaxS: 3600 };
  t.same([1, 2, 3, 4, 5, 6, 7, 8].map((n) => retryDelayMs(n, c, 1)), [60, 120, 240, 480, 960, 1920, 3600, 3600].map((s) => s * 1000), 'doubling, capped at retry_max_s');
  t.equal(retryDelayMs(3, c, 0), 120_000, 'at least half the wait');
  t.equal(retryDelayMs(1, { retryIntervalS: 0, retryMaxS: 3600 }, 1), null, 'retry_interval_s 0: never');
  t.equal(retryDelayMs(5, { retryIntervalS: 600, retryMaxS: 60 }, 1), 600_000, 'a max below the interval does not shorten the first wait');
});

/**
 * The Prometheus text format (0.0.4): HELP/TYPE lines, label escaping, special values; the
 * daemon's families from a snapshot; the journal tally read incrementally.
 */
import t from 'tap';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { JournalTally, daemonMetrics } from '../../../src/agent/daemon/metrics.ts';
import { escapeLabelValue, formatMetrics } from '../../../src/agent/metrics.ts';
import { type Status, layerStatus } from '../../../src/agent/status.ts';
import { tempDir } from '../../helpers.ts';

t.test('exposition format: HELP, TYPE, samples, escaping', async (t) => {
  const text = formatMetrics([
    { name: 'x_total', type: 'counter', help: 'a help with \\ and\nnewline', samples: [{ value: 3 }] },
    { name: 'y', type: 'gauge', help: 'labels', samples: [{ labels: { a: 'q"uo\\te\nline', b: '' }, value: 1.5 }, { labels: { a: 'z' }, value: NaN }, { value: Infinity }] },
  ]);
  t.equal(text, ['# HELP x_total a help with \\\\ and\\nnewline', '# TYPE x_total counter', 'x_total 3', '# HELP y labels', '# TYPE y gauge', 'y{a="q\\"uo\\\\te\\nline",b=""} 1.5', 'y{a="z"} NaN', 'y +Inf', ''].join('\n'));
  t.equal(escapeLabelValue('a\\"b'), 'a\\\\\\"b', 'backslash first, then the quote');
  t.throws(() => formatMetrics([{ name: 'bad-name', type: 'gauge', help: '', samples: [] }]), TypeError);
  t.throws(() => formatMetrics([{ name: 'ok', type: 'gauge', help: '', samples: [{ labels: { __x: '1' }, value: 1 }] }]), TypeError);
});

const status = (): Status => ({
  sysroot: '/s', remote: 'http://r', ref: 'os/stable', following: 'origin', bootloader: 'uboot', pinned: false,
  booted: { slot: 'A', commit: 'c'.repeat(64), version: '1 "beta"', timestamp: '', subject: '', origin: { remote: 'r', ref: 'os/stable', name: null }, signed_by: [], deployed_at: '', good: true, tries_left: 3, etc_conflicts: [], agent: { version: null, path: null, in_tree: false }, kargs: null, ...layerStatus('c'.repeat(64), '1 "beta"', null) },
  pending: null, rollback: null,
  boot: { order: ['A', 'B'], last_good: 'A', rescue: false, slots: { A: { good: true, tries_left: 3, deployed: true }, B: { good: false, tries_left: 0, deployed: false } } },
  last_boot: null, last_update: null, boot_env: 'ok', boot_env_detail: null,
  deployments: [], next_boot: 'A', failed_releases: [], trust: { version: null, keys: [] }, hil_hold: false, live: null,
});

t.test('the daemon families', async (t) => {
  const tally = new JournalTally('/nonexistent');
  const text = formatMetrics(daemonMetrics({ status: status(), state: 'staged', rebootWait: 'lock', retry: null, lastCheckS: 1_800_000_000, updates: { staged: 2, downloaded: 0, 'no-update': 1, pinned: 0, error: 1 }, journal: tally, mqttConnected: true }));
  t.match(text, `larch_info{version="1 \\"beta\\"",commit="${'c'.repeat(64)}",slot="A",ref="os/stable"} 1\n`);
  t.match(text, 'larch_update_state{state="staged"} 1\n');
  t.match(text, 'larch_update_state{state="idle"} 0\n');
  t.match(text, 'larch_reboot_waiting{reason="window"} 0\nlarch_reboot_waiting{reason="lock"} 1\n', 'waiting for the lock, not for a window');
  t.match(text, 'larch_updates_total{result="staged"} 2\n');
  t.match(text, 'larch_updates_total{result="error"} 1\n');
  t.match(text, 'larch_last_check_timestamp_seconds 1800000000\n');
  t.match(text, 'larch_mqtt_connected 1\n');
  t.match(text, 'larch_boot_tries_left{slot="B"} 0\n');
  t.match(text, '# TYPE larch_rollbacks_total counter\n');
  t.equal(text.split('\n').filter((l) => l.startsWith('larch_update_state{')).length, 10, 'every state listed');
  t.match(text, 'larch_update_retry_failures 0\n', 'no retry waits');
  t.match(text, 'larch_update_retry_timestamp_seconds 0\n');
  const retrying = formatMetrics(daemonMetrics({ status: status(), state: 'error', rebootWait: null, retry: { failures: 3, atS: 1_800_000_240 }, lastCheckS: null, updates: { staged: 0, downloaded: 0, 'no-update': 0, pinned: 0, error: 3 }, journal: tally, mqttConnected: true }));
  t.match(retrying, 'larch_update_retry_failures 3\n');
  t.match(retrying, 'larch_update_retry_timestamp_seconds 1800000240\n');
});

t.test('journal tally: download bytes and rollbacks, incrementally, a torn line and a rotation', async (t) => {
  const path = join(tempDir(t), 'journal.jsonl');
  const line = (o: object) => JSON.stringify({ time: 'x', message: 'm', ...o }) + '\n';
  writeFileSync(path, line({ event: 'download', data: { bytes: 1000, via: 'delta' } }) + line({ event: 'fallback' }) + line({ event: 'check' }));
  const j = new JournalTally(path);
  await j.update();
  t.same([j.downloadedBytes, j.rollbacks], [1000, 1]);
  appendFileSync(path, line({ event: 'rollback' }) + '{"event":"download","data":{"bytes":5'); // the last line is still being written
  await j.update();
  t.same([j.downloadedBytes, j.rollbacks], [1000, 2], 'the unfinished line is not counted');
  appendFileSync(path, '00}}\n' + '{torn\n' + line({ event: 'download', data: { bytes: 1 } }));
  await j.update();
  t.same([j.downloadedBytes, j.rollbacks], [1501, 2], 'finished later: counted once; a torn line skipped');
  writeFileSync(path, line({ event: 'download', data: { bytes: 7 } }));
  await j.update();
  t.same([j.downloadedBytes, j.rollbacks], [7, 0], 'a replaced journal counts again from its start');
});

/** src/_memory-log.ts: the /proc fields a point records, and nothing written when the variable is unset. */
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { memoryPoint, statusFields } from '../../src/_memory-log.ts';
import { tempDir } from '../helpers.ts';

t.test('statusFields: VmRSS, RssAnon, RssFile in KiB; null for a field the kernel does not give', async (t) => {
  const status = 'Name:\tlarch\nVmHWM:\t  130000 kB\nVmRSS:\t  120316 kB\nRssAnon:\t   75012 kB\nRssFile:\t   45304 kB\nRssShmem:\t       0 kB\n';
  t.same(statusFields(status), { rss_kib: 120316, rss_anon_kib: 75012, rss_file_kib: 45304 });
  t.same(statusFields('Name:\tlarch\nVmRSS:\t 100 kB\n'), { rss_kib: 100, rss_anon_kib: null, rss_file_kib: null }, 'an older kernel without the split');
  t.same(statusFields(''), { rss_kib: null, rss_anon_kib: null, rss_file_kib: null }, 'no /proc');
});

t.test('memoryPoint: a JSON line per point while LARCH_MEMORY_LOG is set, nothing otherwise', async (t) => {
  const file = join(tempDir(t), 'memory.log');
  const before = process.env.LARCH_MEMORY_LOG;
  t.teardown(() => (before === undefined ? delete process.env.LARCH_MEMORY_LOG : (process.env.LARCH_MEMORY_LOG = before)));
  delete process.env.LARCH_MEMORY_LOG;
  memoryPoint('unset');
  t.notOk(existsSync(file), 'unset: no file');
  process.env.LARCH_MEMORY_LOG = file;
  memoryPoint('one');
  memoryPoint('two');
  const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  t.same(lines.map((l) => l.at), ['one', 'two'], 'appended in order');
  t.equal(lines[0].pid, process.pid, 'this process');
  t.ok(lines[0].rss_kib > 1024 && lines[0].rss_anon_kib > 0 && lines[0].rss_file_kib > 0, `from /proc/self/status (${lines[0].rss_kib} KiB)`);
  t.ok(lines[0].heap_used_kib > 0 && lines[0].array_buffers_kib >= 0, 'and the runtime\'s own figures');
  t.ok(Math.abs(lines[1].time_ms - Date.now()) < 60_000, 'the wall clock, in ms since the epoch');
});

/** provision's re-run comparison: which options differ (data.differs). Pure. */
import t from 'tap';
import { type ProvisionRequest, differingOptions } from '../../../src/agent/provision.ts';

const base: ProvisionRequest = {
  url: 'http://updates.example/os',
  ref: 'os/stable',
  bootloader: 'uboot',
  tries: 3,
  keys: ['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'],
  version: null,
  fw_env_config: null,
  device_id: 'gw-1',
  mqtt_username: null,
  mqtt_password_file: null,
  mqtt_ca: null,
  mqtt_cert: 'c1',
  mqtt_key: 'k1',
  daemon_conf: { '50-a.conf': 'h1', '60-b.conf': 'h2' },
};
const installed = { commit: 'f'.repeat(64), version: '2026.1' };

t.test('the same options, in any order, differ in nothing', async (t) => {
  t.same(differingOptions(base, installed, { ...base, keys: [...base.keys].reverse(), daemon_conf: { '60-b.conf': 'h2', '50-a.conf': 'h1' } }), []);
});

t.test('a version matches the installed commit or version; none asked matches any', async (t) => {
  for (const version of [null, '2026.1', 'f'.repeat(64)]) t.same(differingOptions({ ...base, version: '2025.9' }, installed, { ...base, version }), [], `${version}`);
  t.same(differingOptions(base, installed, { ...base, version: '2026.2' }), ['version']);
});

t.test('each differing option is named once, in a stable order', async (t) => {
  const now: ProvisionRequest = { ...base, url: 'mqtts://broker', tries: 5, keys: ['aaaaaaaaaaaaaaaa'], device_id: null, mqtt_cert: 'c2', daemon_conf: { '50-a.conf': 'h1' } };
  t.same(differingOptions(base, installed, now), ['url', 'tries', 'keys', 'device_id', 'mqtt_cert', 'daemon_conf']);
});

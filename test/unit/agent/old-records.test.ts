/** Records written before 0.2 with camelCase keys are still read; they are written back snake_case. */
import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readDeployment } from '../../../src/agent/deploy.ts';
import { Sysroot } from '../../../src/agent/sysroot.ts';
import { tempDir } from '../../helpers.ts';

t.test('an old config.json (summarySerial, passwordFile) is read, and written snake_case', async (t) => {
  const s = new Sysroot(tempDir(t));
  mkdirSync(s.larchDir, { recursive: true });
  writeFileSync(s.configPath, JSON.stringify({ larch: 1, remote: { url: 'mqtt://b', kind: 'mqtt', mqtt: { username: 'u', passwordFile: 'identity/pw' } }, ref: 'os/stable', bootloader: 'uboot', tries: 3, pinned: false, summarySerial: 42 }));
  const config = await s.readConfig();
  t.equal(config.summarySerial, 42);
  t.equal(config.remote.mqtt?.passwordFile, join(s.larchDir, 'identity/pw'), 'the old key, resolved as before');
  await s.writeConfig(config);
  const raw = JSON.parse(readFileSync(s.configPath, 'utf8'));
  t.same([raw.summary_serial, raw.summarySerial, raw.remote.mqtt.password_file, raw.remote.mqtt.passwordFile], [42, undefined, 'identity/pw', undefined], 'written back snake_case');
});

t.test('an old deployment record (signedBy, bootFiles, etcMerge with a camelCase plan) is read', async (t) => {
  const s = new Sysroot(tempDir(t));
  mkdirSync(s.deployDir('A'), { recursive: true });
  const plan = { version: 1, actions: [{ path: 'motd', contentFrom: 'theirs' }], counts: { 'take-vendor': 1 } };
  writeFileSync(s.deployRecordPath('A'), JSON.stringify({ slot: 'A', commit: 'c'.repeat(64), version: '1', signedBy: ['k1'], deployedAt: '2026-01-01T00:00:00.000Z', bootFiles: ['vmlinuz'], etcMerge: { merged: 0, conflicts: [], larchnew: [], plan } }));
  const r = await readDeployment(s, 'A');
  t.same([r?.signedBy, r?.deployedAt, r?.bootFiles], [['k1'], '2026-01-01T00:00:00.000Z', ['vmlinuz']]);
  t.same(r?.etcMerge?.plan, { version: 1, actions: [{ path: 'motd', content_from: 'theirs' }], counts: { 'take-vendor': 1 } }, 'the plan reads as new ones are written; data keys kept');
});

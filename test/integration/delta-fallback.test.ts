/**
 * A delta that cannot bring its commit never blocks the update. A device
 * whose delta is untrusted, missing (404), truncated on the server, or cannot be applied (a
 * corrupt source object in the device's repo), or of a format newer than it reads, fetches the
 * same commit object by object, stages it, and journals why (through the Bun binary).
 */
import t from 'tap';
import { lstatSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, type Test, type Vendor, startServe, vendor } from '../device-helpers.ts';
import { larch, larchOk, prng, tempDir } from '../helpers.ts';
import { decodeEnvelope, encodeEnvelope } from '../../src/delta/format.ts';
import { signDelta } from '../../src/delta/sign.ts';
import { type CborValue, decodeCanonical, encodeCanonical } from '../../src/store/cbor.ts';
import { encodeSignatures, readSecretKey } from '../../src/store/sign.ts';
import { decodeSummary, encodeSummary, signSummary } from '../../src/protocol/summary.ts';
import { createHash } from 'node:crypto';
import { startBroker } from '../mqtt-helpers.ts';

/** A device provisioned from the vendor's first release (over HTTP, or `remote` given) and booted once. */
async function device(t: Test, v: Vendor, remote = ['--repo-url', v.url]): Promise<string> {
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, ...remote, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  return dev;
}

/** The only delta of the vendor's repo (its directory). */
function deltaDir(v: Vendor): string {
  const names = readdirSync(join(v.repo, 'deltas'));
  if (names.length !== 1) throw new Error(`expected one delta, found ${names.join(', ')}`);
  return join(v.repo, 'deltas', names[0]);
}

/** Upgrades and checks that the delta was given up for the objects with `reason`, journaled, and the new version boots. */
async function expectFallback(t: Test, dev: string, to: string, reason: string): Promise<void> {
  const up = await larch(['upgrade', '--sysroot', dev, '--json']);
  t.equal(up.code, 0, `upgrade succeeds (${up.stderr.trim()})`);
  t.match(up.json, { result: 'staged', to: { commit: to }, download: { via: 'objects', fallback: { reason } } }, `the commit came object by object after the delta failed (${reason})`);
  const history = (await larchOk(['history', '--sysroot', dev, '--json'])).json as { event: string; message: string; data?: any }[];
  const entry = history.find((e) => e.data?.fallback?.reason === reason);
  t.ok(entry, `the journal says why the delta was given up (${reason})`);
  t.match(entry?.message, /object by object/, 'and that the objects were fetched instead');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { check: { healthy: true, version: '2' } }, 'the new version boots');
}

t.test('a delta signed by a key the device does not trust: objects instead, journaled', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2, { delta: false });
  // A second vendor key, trusted by the repo (a key rotation) but not yet by the device.
  const other = join(v.dir, 'other');
  await larchOk(['keygen', '--out', other]);
  await larchOk(['trust', '--repo', v.repo, `${other}.pub`]);
  await larchOk(['delta', 'generate', '--repo', v.repo, '--from', v.commits[0], '--to', v2, '--sign-key', `${other}.key`]);
  const pub = (await larchOk(['publish', '--repo', v.repo, '--sign-key', `${v.key}.key`, '--json'])).json;
  t.equal(pub.deltas.length, 1, "the delta is published (signed by a key of the repo's keyring)");
  await expectFallback(t, dev, v2, 'untrusted');
});

t.test('a delta part missing on the server (404): objects instead, journaled', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2);
  rmSync(join(deltaDir(v), 'part-0'));
  await expectFallback(t, dev, v2, 'missing');
});

t.test('a delta part truncated on the server: objects instead, journaled', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2);
  const part = join(deltaDir(v), 'part-0');
  truncateSync(part, Math.floor(statSync(part).size / 2));
  await expectFallback(t, dev, v2, 'truncated');
});

t.test('a corrupt delta source object on the device (the delta cannot be applied): objects instead', async (t) => {
  // A file the delta patches (bsdiff against its v1 content), so v2's copy is rebuilt from the device's v1 object.
  const random = prng(13);
  const table = Buffer.from(Array.from({ length: 64 * 1024 }, () => Math.floor(random() * 256)));
  const changed = Buffer.from(table);
  for (let i = 0; i < 100; i++) changed[1000 + i * 97] ^= 0x5a;
  const v = await vendor(t);
  await v.release(1, { files: { 'usr/share/larch-test/table': table } });
  const dev = await device(t, v);
  const v2 = await v.release(2, { files: { 'usr/share/larch-test/table': changed } });
  const gen = (await larchOk(['delta', 'show', '--repo', v.repo, readdirSync(join(v.repo, 'deltas'))[0], '--json'])).json;
  t.ok(gen.parts.length > 0, 'the delta exists');
  // The device's v1 object of the table: flip one byte (bit rot).
  const objects = join(dev, 'larch/repo/objects');
  const source = readdirSync(objects)
    .flatMap((d) => readdirSync(join(objects, d)).map((f) => join(objects, d, f)))
    .find((p) => p.endsWith('.file') && lstatSync(p).isFile() && lstatSync(p).size === table.length && readFileSync(p).equals(table));
  if (!source) throw new Error("the table's v1 object is not in the device's repo");
  const bytes = readFileSync(source);
  bytes[5000] ^= 0x01;
  writeFileSync(source, bytes);
  await expectFallback(t, dev, v2, 'corrupt');
});

t.test('a delta of a format newer than the device reads, signed by the vendor: objects instead (unsupported)', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = await device(t, v);
  const v2 = await v.release(2);
  // The vendor's delta, rewritten as a future format 4, signed again and listed in a summary signed
  // again: what a newer larch on the vendor's side would publish. Well-formed and trusted, not readable.
  const key = await readSecretKey(`${v.key}.key`);
  const envelopePath = join(deltaDir(v), 'envelope');
  const sb = decodeCanonical(decodeEnvelope(readFileSync(envelopePath)).superblock) as Map<string, CborValue>;
  sb.set('format', 4);
  const superblock = encodeCanonical(sb);
  const envelope = encodeEnvelope(superblock, encodeSignatures([await signDelta(superblock, key)]));
  writeFileSync(envelopePath, envelope);
  const summary = decodeSummary(readFileSync(join(v.repo, 'summary')));
  summary.serial++;
  summary.deltas[0].envelope = { size: envelope.length, sha256: createHash('sha256').update(envelope).digest('hex') };
  summary.deltas[0].bytes = envelope.length + summary.deltas[0].parts.reduce((n, p) => n + p.size, 0);
  const bytes = encodeSummary(summary);
  writeFileSync(join(v.repo, 'summary.sig'), await signSummary(bytes, [key]));
  writeFileSync(join(v.repo, 'summary'), bytes);
  await expectFallback(t, dev, v2, 'unsupported');
});

t.test('over MQTT: a delta part the responders do not have: objects instead, journaled', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const broker = await startBroker(t, tempDir(t, 'larch-mosquitto-'));
  await startServe(t, v.repo, join(v.dir, 'responder.log'), ['--mqtt', broker.url]);
  const dev = await device(t, v, ['--mqtt-url', broker.url]);
  const v2 = await v.release(2);
  rmSync(join(deltaDir(v), 'part-0'));
  await expectFallback(t, dev, v2, 'missing');
});

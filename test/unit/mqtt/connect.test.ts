/**
 * clientOptions: a TLS file that is not PEM is refused naming the file (INVALID_INPUT), where it
 * used to reach mqtt.js and end the daemon in an internal OpenSSL error.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { LarchError } from '../../../src/errors.ts';
import { clientOptions } from '../../../src/mqtt/connect.ts';
import { tempDir } from '../../helpers.ts';

t.test('a TLS file that is not PEM is refused naming the file', async (t) => {
  const dir = tempDir(t);
  const bad = join(dir, 'bad.pem');
  writeFileSync(bad, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n');
  for (const [key, what] of [['caFile', 'CA certificate'], ['certFile', 'client certificate'], ['keyFile', 'client key']] as const) {
    const err = await clientOptions({ url: 'mqtts://127.0.0.1:8883', clientId: 'x', [key]: bad }).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(err instanceof LarchError, `${key}: a LarchError`);
    t.equal((err as LarchError).code, 'INVALID_INPUT', `${key}: INVALID_INPUT`);
    t.match((err as LarchError).message, new RegExp(`${bad}: not a PEM ${what}`), `${key}: names the file and what it should be`);
  }
  const plain = await clientOptions({ url: 'mqtt://127.0.0.1:1883', clientId: 'x', caFile: bad });
  t.equal(plain.ca, undefined, 'plain mqtt:// reads no TLS file');
});

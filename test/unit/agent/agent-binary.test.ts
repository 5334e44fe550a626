/** The agent a deployment carries (src/agent/agent-binary.ts): its version, printed or read from the build's marker. */
import t from 'tap';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentVersion, parseVersionOutput, versionMarker } from '../../../src/agent/agent-binary.ts';
import { tempDir } from '../../helpers.ts';

t.test('parseVersionOutput takes V of one `larch V` line', async (t) => {
  t.equal(parseVersionOutput('larch 0.1.0\n'), '0.1.0');
  t.equal(parseVersionOutput('larch 9.1.0-a1'), '9.1.0-a1');
  t.equal(parseVersionOutput('larch 1 2\n'), null);
  t.equal(parseVersionOutput('busybox 1.36\n'), null);
  t.equal(parseVersionOutput('larch "x"\n'), null, 'a quote is no version character');
});

t.test('versionMarker finds the build marker, across chunk borders, and not the bare prefix', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'bin');
  // The scanner's own literal (prefix then a quote) comes first, the marker straddles the 1 MiB chunk border.
  const decoy = Buffer.from('const p = "@(#)larch-agent-version ";', 'latin1');
  const marker = Buffer.from('@(#)larch-agent-version 2.0.0~rc1@(#)', 'latin1');
  const pad = Buffer.alloc((1 << 20) - decoy.length - 10, 0x41);
  writeFileSync(file, Buffer.concat([decoy, pad, marker, Buffer.alloc(100)]));
  t.equal(await versionMarker(file), '2.0.0~rc1');
  writeFileSync(file, Buffer.concat([decoy, Buffer.alloc(4096)]));
  t.equal(await versionMarker(file), null, 'the prefix alone is no marker');
  t.equal(await versionMarker(join(dir, 'missing')), null);
});

t.test('agentVersion runs the binary, else reads its marker', async (t) => {
  const dir = tempDir(t);
  const script = join(dir, 'larch');
  writeFileSync(script, '#!/bin/sh\necho "larch 3.1.4"\n');
  chmodSync(script, 0o755);
  t.equal(await agentVersion(script), '3.1.4', 'what it prints');
  const foreign = join(dir, 'foreign');
  writeFileSync(foreign, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), Buffer.alloc(64), Buffer.from('@(#)larch-agent-version 5.0@(#)')]));
  chmodSync(foreign, 0o755);
  t.equal(await agentVersion(foreign), '5.0', 'cannot run here: the marker');
});

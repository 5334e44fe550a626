/** The agent an image carries (src/compose/agent.ts): an ELF executable for the definition's architecture. */
import t from 'tap';
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AGENT_TARGET, checkAgent, elfMachine } from '../../../src/compose/agent.ts';
import { parseDefinition } from '../../../src/compose/definition.ts';
import { rejectsCode, tempDir } from '../../helpers.ts';

const elf = (machine: number) => Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, machine & 0xff, machine >> 8]);

t.test('elfMachine reads e_machine of an ELF header, null for anything else', async (t) => {
  t.equal(elfMachine(elf(62)), 62);
  t.equal(elfMachine(elf(183)), 183);
  t.equal(elfMachine(new TextEncoder().encode('#!/bin/sh\necho larch 1.0\n')), null);
  t.equal(elfMachine(elf(62).slice(0, 10)), null, 'too short');
});

t.test('checkAgent: the definition names the binary relative to its directory; --agent overrides', async (t) => {
  const dir = tempDir(t);
  const def = join(dir, 'images', 'x.toml');
  const amd64 = join(dir, 'larch-amd64');
  writeFileSync(amd64, elf(62));
  chmodSync(amd64, 0o755);
  t.same(await checkAgent({ definitionPath: def, definitionAgent: '../larch-amd64', architecture: 'amd64' }), { source: amd64, target: AGENT_TARGET, field: 'agent' });
  t.equal(await checkAgent({ definitionPath: def, architecture: 'amd64' }), null, 'none named: no agent');
  t.equal((await checkAgent({ definitionPath: def, definitionAgent: 'nope', agent: amd64, architecture: 'amd64' }))?.field, '--agent');
  await rejectsCode(t, checkAgent({ definitionPath: def, definitionAgent: '../larch-amd64', architecture: 'arm64' }), 'INVALID_INPUT', 'an amd64 binary for arm64', { data: { field: 'agent', machine: 62, architecture: 'arm64' } });
  await rejectsCode(t, checkAgent({ definitionPath: def, definitionAgent: '../missing', architecture: 'amd64' }), 'NOT_FOUND', 'a missing binary');
  const plain = join(dir, 'not-exec');
  copyFileSync(amd64, plain);
  chmodSync(plain, 0o644);
  await rejectsCode(t, checkAgent({ definitionPath: def, agent: plain, architecture: 'amd64' }), 'INVALID_INPUT', 'not executable');
  const script = join(dir, 'script');
  writeFileSync(script, '#!/bin/sh\n');
  chmodSync(script, 0o755);
  await rejectsCode(t, checkAgent({ definitionPath: def, agent: script, architecture: 'amd64' }), 'INVALID_INPUT', 'not an ELF binary');
});

t.test("the definition's agent field", async (t) => {
  const base = 'ref = "os/x"\nversion = "1"\narchitecture = "amd64"\npackages = ["busybox"]\n';
  t.equal(parseDefinition(`agent = "../dist/larch"\n${base}`, 'x.toml').agent, '../dist/larch');
  t.equal(parseDefinition(base, 'x.toml').agent, undefined);
  t.throws(() => parseDefinition(`agent = 3\n${base}`, 'x.toml'), { code: 'INVALID_INPUT', data: { field: 'agent' } });
});

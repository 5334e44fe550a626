/**
 * deploy's target on the remote (resolveTarget in src/agent/update.ts) with a remote whose
 * history is made up: a prefix of two commits is refused naming both, a unique one is taken,
 * a version wins over an id prefix that is also its spelling, and a version stops the walk.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LarchError } from '../../../src/errors.ts';
import { Sysroot } from '../../../src/agent/sysroot.ts';
import { formatPublicKey, generateKey, keyId } from '../../../src/store/sign.ts';
import { resolveTarget } from '../../../src/agent/update.ts';
import type { UpdateContext } from '../../../src/agent/update.ts';

const id = (head: string) => head.padEnd(64, '0');
const HISTORY = [
  { commit: id('abcd1'), version: '5' },
  { commit: id('abcd2'), version: '4' },
  { commit: id('2026ff'), version: '3' },
  { commit: id('9999'), version: '2026' },
];

// The origin's trust: one key (the commit role's, for the commit object of a match).
const dir = mkdtempSync(join(tmpdir(), 'larch-deploy-target-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const sysroot = new Sysroot(dir);
const key = await generateKey();
mkdirSync(sysroot.keysDir, { recursive: true });
writeFileSync(join(sysroot.keysDir, `${keyId(key.publicKey)}.pub`), formatPublicKey(key.publicKey));

function ctx(walked: { until: boolean }[]): UpdateContext {
  const remote = {
    describe: () => 'http://fake',
    async history(_repo: unknown, _from: string, limit: number, until?: (h: { commit: string; version: string }) => boolean) {
      walked.push({ until: until !== undefined });
      const out = [];
      for (const h of HISTORY.slice(0, limit)) {
        out.push(h);
        if (until?.(h)) break;
      }
      return out;
    },
    async fetchCommit() {
      return { timestamp: 1234 };
    },
  };
  return { sysroot, remote: remote as never, merger: {} as never, channel: { name: 'origin', ref: 'os/stable', remote: { url: 'http://fake', kind: 'http', trust: 'own' } } };
}
const repo = { hasObject: async () => false } as never;
const head = { ...HISTORY[0]!, timestamp: 9999 };
const channel = { name: 'origin', ref: 'os/stable', remote: { url: 'http://fake', kind: 'http' as const, trust: 'own' as const } };

t.test('ambiguous, unique, version first', async (t) => {
  const walked: { until: boolean }[] = [];
  const err = await resolveTarget(ctx(walked), repo, head, channel, 'abcd').catch((e) => e);
  t.ok(err instanceof LarchError && err.code === 'USAGE', `abcd matches two: ${err.message}`);
  t.same(err.data.candidates, [{ commit: id('abcd1'), version: '5' }, { commit: id('abcd2'), version: '4' }], 'the candidates, named');
  t.match(await resolveTarget(ctx(walked), repo, head, channel, 'abcd2'), { commit: id('abcd2'), version: '4', timestamp: 1234 }, 'a unique prefix');
  t.match(await resolveTarget(ctx(walked), repo, head, channel, '2026'), { commit: id('9999'), version: '2026' }, "'2026' is a version before it is a prefix of 2026ff...");
  t.same(walked.map((w) => w.until), [false, false, false], 'a prefix walks the whole history');
  walked.length = 0;
  t.match(await resolveTarget(ctx(walked), repo, head, channel, '3'), { version: '3' });
  t.same(walked, [{ until: true }], 'a version that is not hex stops where it is found');
  const missing = await resolveTarget(ctx(walked), repo, head, channel, 'nope').catch((e) => e);
  t.match(missing, { code: 'NOT_FOUND', data: { walked: 4 } });
});

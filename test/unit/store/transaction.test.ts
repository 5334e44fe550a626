/** Transaction.writeFile refuses streams that run past their header's size, and stores nothing of them. */
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Repo } from '../../../src/store/repo.ts';
import { Transaction } from '../../../src/store/transaction.ts';
import { rejectsCode, tempDir } from '../../helpers.ts';

for (const mode of ['archive', 'bare-user'] as const) {
  t.test(`${mode}: a stream longer than its declared size is stopped`, async (t) => {
    const dir = tempDir(t);
    const repo = await Repo.init(join(dir, 'r'), mode);
    const txn = await Transaction.begin(repo);
    let produced = 0;
    // An endless stream: the write must stop right after the declared 10 bytes, not at the end.
    async function* endless() {
      for (;;) {
        produced += 65536;
        yield new Uint8Array(65536);
        if (produced > 64 * 1024 * 1024) throw new Error('read far past the declared size');
      }
    }
    await rejectsCode(t, txn.writeFile({ type: 'reg', mode: 0o644, uid: 0, gid: 0, size: 10, xattrs: [] }, { stream: endless() }, 'test entry'), 'INVALID_INPUT', 'refused as bad input', { message: /runs past its declared 10 bytes/ });
    t.ok(produced <= 2 * 65536, `stopped after ${produced} bytes`);
    await txn.commit();
    const objects = readdirSync(join(dir, 'r', 'objects')).flatMap((d) => readdirSync(join(dir, 'r', 'objects', d)));
    t.same(objects, [], 'nothing stored');
  });
}

/** src/cli/allocator.ts: which command lines run with the allocator option. */
import t from 'tap';
import { ALLOCATOR_ENV, wantsAllocatorOption } from '../../../src/cli/allocator.ts';

t.test('update commands and the daemon want the option; others, and an operator\'s own setting, do not', async (t) => {
  for (const argv of [['delta', 'apply', 'x.delta'], ['upgrade'], ['deploy', 'REV'], ['rebase', 'r:os'], ['install', 'pkg'], ['uninstall', 'pkg'], ['daemon', '--json']]) {
    t.ok(wantsAllocatorOption(argv, {}), argv.join(' '));
  }
  for (const argv of [[], ['--version'], ['status'], ['delta', 'generate'], ['delta', 'list'], ['commit'], ['serve'], ['--json', 'upgrade']]) {
    t.notOk(wantsAllocatorOption(argv, {}), `not: ${argv.join(' ') || '(nothing)'}`);
  }
  t.notOk(wantsAllocatorOption(['delta', 'apply'], { MIMALLOC_PURGE_DELAY: '100' }), 'an operator\'s MIMALLOC_PURGE_DELAY wins');
  t.notOk(wantsAllocatorOption(['upgrade'], { MIMALLOC_PURGE_DELAY: '' }), 'even an empty one');
  t.same(ALLOCATOR_ENV, { MIMALLOC_PURGE_DELAY: '30' }, 'the option set');
});

/** src/cli/runtime-options.ts: which command lines run with which runtime options. */
import t from 'tap';
import { missingRuntimeOptions, RUNTIME_ENV } from '../../../src/cli/runtime-options.ts';

t.test('update commands and the daemon want the options; others do not', async (t) => {
  for (const argv of [['delta', 'apply', 'x.delta'], ['upgrade'], ['deploy', 'REV'], ['rebase', 'r:os'], ['install', 'pkg'], ['uninstall', 'pkg'], ['daemon', '--json']]) {
    t.same(missingRuntimeOptions(argv, {}), RUNTIME_ENV, argv.join(' '));
  }
  for (const argv of [[], ['--version'], ['status'], ['delta', 'generate'], ['delta', 'list'], ['commit'], ['serve'], ['--json', 'upgrade']]) {
    t.same(missingRuntimeOptions(argv, {}), {}, `not: ${argv.join(' ') || '(nothing)'}`);
  }
  t.same(RUNTIME_ENV, { MIMALLOC_PURGE_DELAY: '30', BUN_JSC_maximumFTLCandidateBytecodeCost: '2000', BUN_JSC_forceRAMSize: '67108864' }, 'the options');
});

t.test("an option the operator set is kept; only the others are added", async (t) => {
  t.same(missingRuntimeOptions(['delta', 'apply'], { MIMALLOC_PURGE_DELAY: '100' }), { BUN_JSC_maximumFTLCandidateBytecodeCost: '2000', BUN_JSC_forceRAMSize: '67108864' }, 'their MIMALLOC_PURGE_DELAY wins');
  t.same(missingRuntimeOptions(['upgrade'], { MIMALLOC_PURGE_DELAY: '' }), { BUN_JSC_maximumFTLCandidateBytecodeCost: '2000', BUN_JSC_forceRAMSize: '67108864' }, 'even an empty one');
  t.same(missingRuntimeOptions(['upgrade'], { BUN_JSC_maximumFTLCandidateBytecodeCost: '60000' }), { MIMALLOC_PURGE_DELAY: '30', BUN_JSC_forceRAMSize: '67108864' }, 'their JSC option wins');
  t.same(missingRuntimeOptions(['upgrade'], { BUN_JSC_forceRAMSize: '1073741824' }), { MIMALLOC_PURGE_DELAY: '30', BUN_JSC_maximumFTLCandidateBytecodeCost: '2000' }, 'their heap sizing wins');
  t.same(missingRuntimeOptions(['daemon'], { MIMALLOC_PURGE_DELAY: '0', BUN_JSC_maximumFTLCandidateBytecodeCost: '60000', BUN_JSC_forceRAMSize: '0' }), {}, 'all set: nothing to add (no re-exec)');
});

/** src/cli/runtime-options.ts: which command lines run with which runtime options. */
import t from 'tap';
import { APPLY_ENV, missingRuntimeOptions, RUNTIME_ENV } from '../../../src/cli/runtime-options.ts';

const EVERY = { ...RUNTIME_ENV, ...APPLY_ENV };

t.test('update commands and the daemon want the options; others do not', async (t) => {
  for (const argv of [['delta', 'apply', 'x.delta'], ['upgrade'], ['deploy', 'REV'], ['rebase', 'r:os'], ['daemon', '--json']]) {
    t.same(missingRuntimeOptions(argv, {}), EVERY, argv.join(' '));
  }
  for (const argv of [['install', 'pkg'], ['uninstall', 'pkg']]) {
    t.same(missingRuntimeOptions(argv, {}), RUNTIME_ENV, `${argv.join(' ')}: not the collector sized for an apply`);
  }
  for (const argv of [[], ['--version'], ['status'], ['delta', 'generate'], ['delta', 'list'], ['commit'], ['serve'], ['--json', 'upgrade']]) {
    t.same(missingRuntimeOptions(argv, {}), {}, `not: ${argv.join(' ') || '(nothing)'}`);
  }
  t.same(
    EVERY,
    {
      MIMALLOC_PURGE_DELAY: '30',
      MIMALLOC_PURGE_HOLES_MIN_INTERVAL: '0',
      BUN_JSC_maximumFTLCandidateBytecodeCost: '2000',
      BUN_JSC_thresholdForJITAfterWarmUp: '5000',
      BUN_JSC_thresholdForJITSoon: '1000',
      BUN_JSC_forceRAMSize: '67108864',
    },
    'the options',
  );
  t.same(Object.keys(APPLY_ENV), ['BUN_JSC_forceRAMSize'], 'only the heap sizing is for the applying commands alone');
});

t.test("an option the operator set is kept; only the others are added", async (t) => {
  const without = (...names: string[]) => Object.fromEntries(Object.entries(EVERY).filter(([name]) => !names.includes(name)));
  t.same(missingRuntimeOptions(['delta', 'apply'], { MIMALLOC_PURGE_DELAY: '100' }), without('MIMALLOC_PURGE_DELAY'), 'their MIMALLOC_PURGE_DELAY wins');
  t.same(missingRuntimeOptions(['upgrade'], { MIMALLOC_PURGE_DELAY: '' }), without('MIMALLOC_PURGE_DELAY'), 'even an empty one');
  t.same(missingRuntimeOptions(['upgrade'], { BUN_JSC_maximumFTLCandidateBytecodeCost: '60000' }), without('BUN_JSC_maximumFTLCandidateBytecodeCost'), 'their JSC option wins');
  t.same(missingRuntimeOptions(['upgrade'], { BUN_JSC_forceRAMSize: '1073741824', MIMALLOC_PURGE_HOLES_MIN_INTERVAL: '100' }), without('BUN_JSC_forceRAMSize', 'MIMALLOC_PURGE_HOLES_MIN_INTERVAL'), 'two of theirs');
  const all = Object.fromEntries(Object.keys(EVERY).map((name) => [name, '1']));
  t.same(missingRuntimeOptions(['daemon'], all), {}, 'all set: nothing to add (no re-exec)');
  t.same(missingRuntimeOptions(['install', 'pkg'], Object.fromEntries(Object.keys(RUNTIME_ENV).map((name) => [name, '1']))), {}, 'install with all of its own set: nothing to add');
  t.ok(Object.keys(without('MIMALLOC_PURGE_DELAY')).length === Object.keys(EVERY).length - 1, 'without() leaves out what it names');
});

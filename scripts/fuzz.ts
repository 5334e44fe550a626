/**
 * npm run fuzz [-- --seconds S] [--runs N] [--target NAME]... [--seed N] [--json]
 * The long fuzz run: every target (or the named ones) for S seconds each (default: 600 seconds
 * shared by all targets) or N inputs each. A failure is saved to test/vectors/fuzz/TARGET/ (the
 * input bytes and fast-check's seed and path), which the CI test replays as a regression vector.
 * Exit status 1 when anything was found. See docs/reliability.md (fuzzing).
 */
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { CORPUS_DIR, runTarget, saveToCorpus, setInputHook, type TargetReport } from '../test/fuzz/harness.ts';
import { TARGETS, cleanupFixtures } from '../test/fuzz/targets.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    runs: { type: 'string' },
    target: { type: 'string', multiple: true },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});

const targets = values.target ? TARGETS.filter((t) => values.target!.includes(t.name)) : TARGETS;
if (values.target && targets.length !== values.target.length) {
  console.error(`unknown target; known: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const runs = values.runs === undefined ? undefined : Number(values.runs);
const totalSeconds = values.seconds === undefined ? (runs === undefined ? 600 : undefined) : Number(values.seconds);
/** One seed for the run (each target uses it), so a hang the watchdog reports can be replayed with --seed. */
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const perTargetMs = totalSeconds === undefined ? undefined : (totalSeconds * 1000) / targets.length;

// Hang watchdog: a parser stuck in a loop never returns to the harness, so a worker thread holds
// the running input (shared memory), saves it to the corpus after HANG_MS and kills the process.
const HANG_MS = Number(process.env.LARCH_FUZZ_HANG_MS ?? 60_000);
const MAX_KEPT = 4 * 1024 * 1024;
const shared = { state: new SharedArrayBuffer(3 * 8), bytes: new SharedArrayBuffer(MAX_KEPT) };
const state = new Float64Array(shared.state); // [started ms or 0, target index, input length]
const kept = new Uint8Array(shared.bytes);
const names = TARGETS.map((t) => t.name);
setInputHook((target, input) => {
  if (input === null) {
    state[0] = 0;
    return;
  }
  kept.set(input.subarray(0, MAX_KEPT));
  state[1] = names.indexOf(target);
  state[2] = Math.min(input.length, MAX_KEPT);
  state[0] = Date.now();
});
const watchdog = new Worker(
  `const { workerData: w } = require('node:worker_threads');
   const { mkdirSync, writeFileSync, writeSync } = require('node:fs');
   const { createHash } = require('node:crypto');
   const state = new Float64Array(w.state);
   setInterval(() => {
     // Read once: the main thread clears it between inputs.
     const started = state[0];
     if (started === 0 || Date.now() - started < w.hangMs) return;
     const name = w.names[state[1]];
     const input = new Uint8Array(w.bytes).slice(0, state[2]);
     if (state[0] !== started) return; // it finished while we copied
     const dir = w.corpus + name;
     mkdirSync(dir, { recursive: true });
     const sha = createHash('sha256').update(input).digest('hex').slice(0, 16);
     writeFileSync(dir + '/' + sha + '.bin', input);
     writeFileSync(dir + '/' + sha + '.json', JSON.stringify({ target: name, message: 'no answer after ' + w.hangMs + ' ms (hang)', seed: w.seed, path: null, found: new Date().toISOString() }, null, 2) + '\\n');
     writeSync(2, 'FOUND in ' + name + ': an input ran over ' + w.hangMs + ' ms; saved ' + dir + '/' + sha + '.bin\\n');
     process.kill(process.pid, 'SIGKILL');
   }, 200);`,
  { eval: true, workerData: { ...shared, hangMs: HANG_MS, names, corpus: CORPUS_DIR, seed } },
);
// Its start opens descriptors; wait for it, so they are not counted against the first target.
await once(watchdog, 'online');
watchdog.unref();

const reports: TargetReport[] = [];
let found = 0;
for (const target of targets) {
  const r = await runTarget(target, { numRuns: runs ?? 1_000_000_000, timeLimitMs: perTargetMs, seed });
  reports.push(r);
  const line = `${r.name.padEnd(22)} ${String(r.inputs).padStart(8)} inputs  ${String(r.roundTrips).padStart(6)} round trips  slowest ${r.slowestMs.toFixed(1).padStart(7)} ms (${r.slowestInput.length} B)  mean ${r.meanMs.toFixed(2)} ms  heap +${r.heapGrowthMiB.toFixed(1)} MiB  largest alloc ${r.largestAllocation} B  fds +${r.fdGrowth}`;
  if (!values.json) console.log(line);
  if (r.fdGrowth > 0) {
    found++;
    console.error(`FOUND in ${r.name}: ${r.fdGrowth} file descriptor(s) left open after the run`);
  }
  if (r.failure) {
    found++;
    const file = r.failure.input.length > 0 ? saveToCorpus(r.name, r.failure) : '(round trip: no input file; rerun with the seed)';
    console.error(`FOUND in ${r.name}: ${r.failure.message}\n  seed ${r.failure.seed} path ${r.failure.path ?? '-'}\n  saved ${file}`);
  }
}
await cleanupFixtures();
await watchdog.terminate();
if (!values.json) console.log(`seed ${seed}`);
if (values.json) console.log(JSON.stringify(reports.map((r) => ({ ...r, failure: r.failure && { ...r.failure, input: Buffer.from(r.failure.input).toString('hex') } })), null, 2));
else console.log(`${reports.reduce((n, r) => n + r.inputs, 0)} inputs over ${reports.length} targets; ${found} finding(s)`);
process.exitCode = found > 0 ? 1 : 0;

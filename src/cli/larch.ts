/**
 * Process entry of the `larch` binary (bun build --compile) and of bin/larch.js (Node). In the
 * binary it is also the entry of larch's second threads (the delta generator's and the delta
 * apply's): there it loads the module that serves the thread's role (worker-role.ts), and nothing
 * else runs. Loaded only there: the generator's code at every command's start cost 1.8 MiB of RSS
 * (src/delta/worker-role.ts).
 */
import { inBunWorker, serveWorkerRole } from '../delta/worker-role.ts';
import { runWithRuntimeOptions } from './runtime-options.ts';
import { exitIfOutputClosed, main } from './main.ts';

if (inBunWorker()) await serveWorkerRole();
else run();

function run(): void {
  // First, before anything is run or written: an update command may re-execute the binary (runtime-options.ts).
  runWithRuntimeOptions();

  process.stdout.on('error', (err) => {
    exitIfOutputClosed(err);
    throw err;
  });

  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // An empty write's callback runs once everything before it has reached the pipe: a reader
      // that went away with output still queued (one large write, as diff's) is then noticed
      // (EPIPE, exit 141) instead of being dropped at exit with status 0.
      process.stdout.write('', (err) => exitIfOutputClosed(err));
    },
    (err) => {
      process.stderr.write(`larch: internal error: ${err}\n`);
      process.exitCode = 1;
    },
  );
}

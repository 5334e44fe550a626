/** Process entry of the `larch` binary (bun build --compile) and of bin/larch.js (Node). */
import { main } from './main.ts';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`larch: internal error: ${err}\n`);
    process.exitCode = 1;
  },
);

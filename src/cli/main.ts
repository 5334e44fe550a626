/** The `larch` entry point: finds the command, parses its flags, prints errors with their code and hint. */
import { INTERNAL_HINT, LarchError } from '../errors.ts';
import { defaultApplyThreads } from '../delta/threads.ts';
import { checkFailpointEnv } from '../failpoint.ts';
import { AlreadyReported, type Command, type Io, parse } from './command.ts';
import { COMMAND_NAMES, loadCommand, loadCommands } from './commands/index.ts';
import { VERSION } from '../version.ts';

/** Exit status when the reader of stdout went away (`larch ls | head -1`): 128 + SIGPIPE, as a C tool killed by SIGPIPE. */
export const EXIT_OUTPUT_CLOSED = 141;

/**
 * The reader of stdout closed the pipe: stop quietly, as a shell tool killed by SIGPIPE does.
 * Node and Bun ignore SIGPIPE, so the write fails with EPIPE instead: synchronously under Bun,
 * as an 'error' event of process.stdout under Node (src/cli/larch.ts listens for both).
 */
export function exitIfOutputClosed(err: unknown): void {
  if ((err as NodeJS.ErrnoException)?.code === 'EPIPE') process.exit(EXIT_OUTPUT_CLOSED);
}

function writeOut(text: string): void {
  try {
    process.stdout.write(text);
  } catch (err) {
    exitIfOutputClosed(err);
    throw err;
  }
}

const io: Io = {
  out: writeOut,
  err: (t) => void process.stderr.write(t),
  isTTY: process.stdout.isTTY === true,
};

async function usage(): Promise<string> {
  const commands = await loadCommands();
  const width = Math.max(...commands.map((c) => c.name.length));
  return `larch ${VERSION} - atomic, signed, delta-based OS updates

USAGE
  larch COMMAND [OPTIONS]
  larch COMMAND --help      full help for one command

COMMANDS
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Every command takes --json where a script reads its output. Exit codes are listed in
docs/cli.md: 0 success, 1 internal error, 2 usage, and one code per kind of failure.
`;
}

/** The subcommands of a group ("delta" -> delta generate, delta apply, ...); empty for a non-group. */
function groupOf(word: string): string[] {
  return COMMAND_NAMES.filter((n) => n.startsWith(`${word} `));
}

async function groupUsage(group: string, names: string[]): Promise<string> {
  const subs = await loadCommands(names);
  const width = Math.max(...subs.map((c) => c.name.length));
  return `USAGE
  larch ${group} SUBCOMMAND [OPTIONS]
  larch ${group} SUBCOMMAND --help   full help for one subcommand

SUBCOMMANDS
${subs.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}
`;
}

export async function main(argv: string[]): Promise<number> {
  // Two-word commands ("delta generate") are looked up by their first two words.
  const twoWords = argv.length >= 2 && COMMAND_NAMES.includes(`${argv[0]} ${argv[1]}`);
  const name = twoWords ? `${argv[0]} ${argv[1]}` : argv[0];
  const rest = argv.slice(twoWords ? 2 : 1);
  if (name === undefined || name === '--help' || name === '-h' || name === 'help' || (name === '--json' && rest.some((a) => a === '--help' || a === '-h'))) {
    io.out(await usage());
    return 0;
  }
  if (name === '--json') {
    return reportError(new LarchError('USAGE', 'no command given', { hint: "run 'larch --help' for the list of commands", data: { argv } }), true);
  }
  // A group's name alone, or with --help, lists its subcommands ("larch delta").
  const group = groupOf(name);
  // A group that is also a command itself ('trust --repo R' beside 'trust create') runs it when given arguments.
  if (group.length > 0 && !twoWords && (!COMMAND_NAMES.includes(name) || rest.length === 0)) {
    const next = rest[0];
    if (next === undefined || next === '--help' || next === '-h') {
      io.out(await groupUsage(name, group));
      return 0;
    }
    if (!next.startsWith('-')) {
      return reportError(new LarchError('USAGE', `unknown command '${name} ${next}'`, { hint: `one of: ${group.join(', ')}`, data: { group: name, subcommand: next } }), rest.includes('--json'));
    }
    return reportError(new LarchError('USAGE', `'larch ${name}' needs a subcommand`, { hint: `one of: ${group.join(', ')}`, data: { group: name } }), rest.includes('--json'));
  }
  if (name === '--version' || name === 'version') {
    io.out(`larch ${VERSION}\n`);
    return 0;
  }
  const json = rest.includes('--json');
  try {
    // Once at start-up: a mistyped failpoint would otherwise never fire, and a crash test pass for nothing.
    checkFailpointEnv();
    // A bad LARCH_APPLY_THREADS fails here, not after an update's download.
    defaultApplyThreads();
    const cmd: Command | undefined = await loadCommand(name);
    if (!cmd) throw new LarchError('USAGE', `unknown command '${name}'`, { hint: "run 'larch --help' for the list of commands", data: { command: name } });
    const args = parse(cmd, rest);
    if (args.help) {
      io.out(cmd.help.trimEnd() + '\n');
      return 0;
    }
    return (await cmd.run(args, io)) ?? 0;
  } catch (err) {
    return reportError(err, json);
  }
}

function reportError(err: unknown, json: boolean): number {
  if (err instanceof AlreadyReported) return reportError(err.error, false);
  if (err instanceof LarchError) {
    if (json) io.out(JSON.stringify({ error: { code: err.code, message: err.message, hint: err.hint, data: err.data } }, null, 2) + '\n');
    io.err(`larch: ${err.message} [${err.code}]\nhint: ${err.hint}\n`);
    return err.exitCode;
  }
  const e = err as Error;
  const hint = INTERNAL_HINT;
  if (json) io.out(JSON.stringify({ error: { code: 'INTERNAL', message: e?.message ?? String(err), hint, data: {} } }, null, 2) + '\n');
  io.err(`larch: internal error: ${e?.message ?? String(err)} [INTERNAL]\nhint: ${hint}\n`);
  if (process.env.LARCH_DEBUG) io.err(`${e?.stack}\n`);
  return 1;
}


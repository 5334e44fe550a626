/** The shape of a CLI command and the helpers every command shares. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LarchError } from '../errors.ts';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface Io {
  out(text: string): void;
  err(text: string): void;
  isTTY: boolean;
}

export interface Command {
  name: string;
  summary: string;
  /** Man-page style text shown by --help (SYNOPSIS, DESCRIPTION, OPTIONS, EXAMPLES). */
  help: string;
  options: OptionSpec;
  /** True when the command takes positional arguments. */
  positionals?: boolean;
  run(args: ParsedArgs, io: Io): Promise<number | void>;
}

export interface ParsedArgs {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
  json: boolean;
  /** The options in command-line order, for a command whose options apply left to right (kargs). */
  ordered?: { name: string; value: string | undefined }[];
}

export const COMMON_OPTIONS: OptionSpec = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

export function parse(cmd: Command, argv: string[]): ParsedArgs & { help: boolean } {
  try {
    const { values, positionals, tokens } = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...cmd.options }, allowPositionals: true, strict: true, tokens: true });
    if (!cmd.positionals && positionals.length > 0) throw new Error(`unexpected argument '${positionals[0]}'`);
    const ordered = tokens.flatMap((t) => (t.kind === 'option' ? [{ name: t.name, value: t.value }] : []));
    return { values: values as ParsedArgs['values'], positionals, json: values.json === true, help: values.help === true, ordered };
  } catch (err) {
    if (err instanceof LarchError) throw err;
    throw new LarchError('USAGE', `${cmd.name}: ${(err as Error).message.replace(/\. To specify.*$/s, '')}`, { hint: `run 'larch ${cmd.name} --help'`, data: { command: cmd.name, argv } });
  }
}

/** A required string option. @throws USAGE */
export function need(args: ParsedArgs, name: string, cmd: string): string {
  const v = args.values[name];
  if (typeof v !== 'string' || v === '') throw new LarchError('USAGE', `${cmd}: --${name} is required`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd, option: name } });
  return v;
}

export function opt(args: ParsedArgs, name: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(args: ParsedArgs, name: string): string[] {
  const v = args.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** Exactly n positionals. @throws USAGE */
export function positionals(args: ParsedArgs, names: string[], cmd: string): string[] {
  if (args.positionals.length !== names.length) {
    throw new LarchError('USAGE', `${cmd}: expected ${names.map((n) => n.toUpperCase()).join(' ') || 'no arguments'}, got ${args.positionals.length} argument(s)`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd, expected: names, got: args.positionals.length } });
  }
  return args.positionals;
}

export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2) + '\n');
}

/** Parses an integer option. @throws USAGE */
export function intOption(value: string | undefined, name: string, cmd: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
    throw new LarchError('USAGE', `${cmd}: --${name} must be an integer >= ${min}, got '${value}'`, { data: { command: cmd, option: name, value, min } });
  }
  return Number(value);
}

/**
 * Wraps an error whose details the command already printed as its --json result, so that
 * stdout holds exactly one JSON document; main still prints the message on stderr and exits
 * with the error's code.
 */
export class AlreadyReported extends Error {
  constructor(readonly error: LarchError) {
    super(error.message);
  }
}

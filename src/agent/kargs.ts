/**
 * Kernel arguments of a deployment (issue 19; docs/design/issue-19-real-boards.md §3.2). Pure.
 *
 * An argument is one token of the kernel command line as the kernel splits it: `key` or
 * `key=value`, where double quotes hold spaces (`key="a b"`). A deployment keeps its final list
 * (`kargs`, in order, as written on the command line) and the vendor's list it was made from
 * (`kargs_vendor`: the board profile's defaults, then the commit's /usr/lib/larch/kargs.d/*.conf),
 * so an upgrade applies the vendor's change and keeps the local edits (bootc's rule, computeKargs).
 * `larch.slot=` is the bootloader's own and never one of these.
 */
import { LarchError } from '../errors.ts';

/** The longest line of a kargs.d file, and of one argument. */
export const MAX_KARGS_LINE_BYTES = 4096;

const SLOT_KEY = 'larch.slot';

/** The key of an argument: what comes before its first `=` (the whole of a bare flag). */
export function kargKey(arg: string): string {
  const eq = arg.indexOf('=');
  return eq < 0 ? arg : arg.slice(0, eq);
}

/** Why `arg` cannot be a kernel argument, or null. */
export function kargProblem(arg: string): string | null {
  if (arg === '') return 'an empty argument';
  if (Buffer.byteLength(arg) > MAX_KARGS_LINE_BYTES) return `longer than ${MAX_KARGS_LINE_BYTES} bytes`;
  if (/[\x00-\x1f\x7f]/.test(arg)) return 'a control character';
  let quoted = false;
  for (const c of arg) {
    if (c === '"') quoted = !quoted;
    else if (c === ' ' && !quoted) return 'a space outside double quotes';
  }
  if (quoted) return 'an unterminated double quote';
  if (kargKey(arg) === '') return 'no key before "="';
  if (kargKey(arg) === SLOT_KEY) return `${SLOT_KEY} is set by the bootloader for each slot`;
  return null;
}

/**
 * Splits a command line into arguments as the kernel does: on spaces and tabs outside double
 * quotes. @throws INVALID_INPUT (an unterminated quote, a control character, larch.slot=)
 */
export function splitCommandLine(line: string, where = 'command line'): string[] {
  const args: string[] = [];
  let current = '';
  let quoted = false;
  for (const c of line) {
    if (c === '"') quoted = !quoted;
    if ((c === ' ' || c === '\t') && !quoted) {
      if (current !== '') args.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  if (current !== '') args.push(current);
  for (const arg of args) checkKarg(arg, where);
  return args;
}

/**
 * The arguments of one /usr/lib/larch/kargs.d/*.conf file: UTF-8 text, `#` outside double
 * quotes starts a comment to the end of the line, the rest splits as a command line.
 * @throws INVALID_INPUT naming the file and the line
 */
export function parseKargsConf(text: string, file: string): string[] {
  const args: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const where = `${file}:${i + 1}`;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (Buffer.byteLength(line) > MAX_KARGS_LINE_BYTES) throw invalid(`${where}: the line is longer than ${MAX_KARGS_LINE_BYTES} bytes`, { file, line: i + 1 });
    args.push(...splitCommandLine(stripComment(line), where));
  });
  return args;
}

/** The vendor's arguments of a commit: the profile's defaults, then each kargs.d file in byte order of its name. */
export function vendorKargs(profileDefaults: readonly string[], confFiles: readonly { name: string; text: string }[]): string[] {
  const files = [...confFiles].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
  return [...profileDefaults, ...files.flatMap((f) => parseKargsConf(f.text, f.name))];
}

/**
 * A deployment's arguments after an upgrade (bootc's rule): start from the booted deployment's,
 * remove each vendor argument the new vendor list no longer has, append each one it gained, in
 * its order. Local edits (anything not in the booted vendor list) stay. Counted per occurrence,
 * so a vendor list with two `console=` keeps two.
 */
export function computeKargs(booted: readonly string[], bootedVendor: readonly string[], newVendor: readonly string[]): string[] {
  const removed = multisetMinus(bootedVendor, newVendor);
  const added = multisetMinus(newVendor, bootedVendor);
  const out: string[] = [];
  for (const arg of booted) {
    const i = removed.indexOf(arg);
    if (i >= 0) removed.splice(i, 1);
    else out.push(arg);
  }
  return [...out, ...added];
}

export type KargsEdit = { op: 'append' | 'delete' | 'replace'; arg: string };

/**
 * `larch kargs --append/--delete/--replace`, applied left to right (rpm-ostree's rules):
 * - append K[=V]: at the end (a key may repeat, as console= does);
 * - delete K=V: that exact argument; delete K: the one argument whose key is K;
 * - replace K=V: the one argument whose key is K gets value V.
 * @throws USAGE (a bare key or a replace that matches several arguments, naming them; an invalid
 *   argument), INVALID_INPUT (nothing to delete or replace, with data.karg)
 */
export function editKargs(kargs: readonly string[], edits: readonly KargsEdit[]): string[] {
  const out = [...kargs];
  for (const { op, arg } of edits) {
    const problem = kargProblem(arg);
    if (problem) throw new LarchError('USAGE', `kargs --${op} '${arg}': ${problem}`, { hint: "run 'larch kargs --help'", data: { op, karg: arg } });
    if (op === 'append') {
      out.push(arg);
      continue;
    }
    if (op === 'replace' && !arg.includes('=')) throw new LarchError('USAGE', `kargs --replace '${arg}': give the new value as KEY=VALUE`, { hint: "run 'larch kargs --help'", data: { op, karg: arg } });
    const exact = op === 'delete' && arg.includes('=');
    const matches = out.flatMap((a, i) => ((exact ? a === arg : kargKey(a) === kargKey(arg)) ? [i] : []));
    if (matches.length === 0) throw invalid(`kargs --${op} '${arg}': the deployment has no such argument (it has: ${out.join(' ') || 'none'})`, { op, karg: arg });
    if (matches.length > 1 && !exact) {
      throw new LarchError('USAGE', `kargs --${op} '${arg}': ${matches.length} arguments have the key '${kargKey(arg)}' (${matches.map((i) => out[i]).join(', ')}); name one as KEY=VALUE`, { hint: `--delete KEY=VALUE deletes one of them`, data: { op, karg: arg, matches: matches.map((i) => out[i]) } });
    }
    if (op === 'delete') out.splice(matches[0], 1);
    else out[matches[0]] = arg;
  }
  return out;
}

/** The same arguments in the same order. */
export function sameKargs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The command line as a bootloader writes it: arguments joined by single spaces. */
export function formatCommandLine(kargs: readonly string[]): string {
  return kargs.join(' ');
}

function checkKarg(arg: string, where: string): void {
  const problem = kargProblem(arg);
  if (problem) throw invalid(`${where}: '${arg}': ${problem}`, { karg: arg, where });
}

function stripComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] === '"') quoted = !quoted;
    else if (line[i] === '#' && !quoted) return line.slice(0, i);
  }
  return line;
}

function multisetMinus(a: readonly string[], b: readonly string[]): string[] {
  const left = [...b];
  const out: string[] = [];
  for (const x of a) {
    const i = left.indexOf(x);
    if (i >= 0) left.splice(i, 1);
    else out.push(x);
  }
  return out;
}

function invalid(message: string, data: Record<string, unknown>): LarchError {
  return new LarchError('INVALID_INPUT', message, { hint: 'fix the kernel argument named in the message', data });
}

/**
 * Checked fields of the TOML files larch reads (image definitions, board profiles): the document
 * parsed with its syntax errors placed by line and column, and per-field readers whose problems
 * name the field. Pure: the caller reads the file.
 */
import { parse as parseToml, TomlError } from 'smol-toml';
import { LarchError, quash } from './errors.ts';

/** A problem with one field; turned into INVALID_INPUT naming the file by withFieldErrors. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(detail);
  }
}

export const fail = (field: string, detail: string): never => {
  throw new FieldError(field, detail);
};

/**
 * Parses `text` and reads it with `read`. @throws INVALID_INPUT naming `what` and `file` (the
 * TOML's line and column, or the field), with `hint`
 */
export function readTomlFile<T>(text: string, what: string, file: string, hint: string, read: (doc: Record<string, unknown>) => T): T {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const where = `line ${err.line}, column ${err.column}`;
    throw new LarchError('INVALID_INPUT', `${what} '${file}' is not valid TOML at ${where}: ${err.message.split('\n')[0]}`, { data: { file, line: err.line, column: err.column }, cause: err });
  }
  try {
    return read(doc);
  } catch (err) {
    if (!(err instanceof FieldError)) throw err;
    throw new LarchError('INVALID_INPUT', `${what} '${file}': field '${err.field}' ${err.message}`, { data: { file, field: err.field }, hint });
  }
}

export function str(value: unknown, field: string, required: true): string;
export function str(value: unknown, field: string, required: false): string | undefined;
export function str(value: unknown, field: string, required: boolean): string | undefined {
  if (value === undefined) return required ? fail(field, 'is required') : undefined;
  if (typeof value !== 'string') return fail(field, `must be a string, got ${describe(value)}`);
  if (value === '' || /[\x00-\x1f]/.test(value)) return fail(field, 'must be a non-empty string without control characters');
  return value;
}

export function strings(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return fail(field, `must be an array of strings, got ${describe(value)}`);
  return value.map((v, i) => str(v, `${field}[${i}]`, true));
}

export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'a table' : `${typeof value} ${quash(JSON.stringify(value), 40)}`;
}

export function table(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return fail(field, `must be a table, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

export function onlyFields(obj: Record<string, unknown>, allowed: string[], prefix: string): void {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) fail(prefix ? `${prefix}.${key}` : key, `is not a known field (known: ${allowed.join(', ')})`);
  }
}

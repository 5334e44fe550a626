/**
 * JSON records on disk use snake_case keys. Versions before 0.2 wrote some records (config.json,
 * deploy/X.json, journal data) with camelCase keys: they are still read, and written snake_case.
 */

/** `signedBy` -> `signed_by`. */
export function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** The record with each of `names` (the in-memory camelCase names) stored under its snake_case key. */
export function toSnakeKeys<T extends object>(record: T, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) out[names.includes(k) ? snakeCase(k) : k] = v;
  return out;
}

/**
 * A record read from disk with each of `names` taken from its snake_case key, or from the old
 * camelCase key when the record is older; the snake_case key wins when both are there.
 */
export function fromSnakeKeys(raw: Record<string, unknown>, names: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw };
  for (const name of names) {
    const snake = snakeCase(name);
    if (snake in out) {
      out[name] = out[snake];
      delete out[snake];
    }
  }
  return out;
}

/** Every key of a free-form object (journal `data`), at every depth, in snake_case: old entries read as new ones are written. */
export function snakeKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(snakeKeysDeep);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [/^[a-z][a-zA-Z0-9]*$/.test(k) ? snakeCase(k) : k, snakeKeysDeep(v)]));
}

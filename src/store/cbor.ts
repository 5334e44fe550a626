/**
 * Canonical CBOR (RFC 8949 §4.2.1, core deterministic encoding) on top of cbor-x.
 *
 * cbor-x already writes shortest-form heads for integers below 2^32, strings, byte
 * strings, arrays and maps with a known size. What it does not do by itself, we do here:
 * integers from 2^32 up go out as 64-bit (cbor-x would write a float), map keys are sorted
 * by their encoded bytes, and floats, undefined and non-plain objects are refused, so
 * the same value always gives the same bytes on Node and on Bun.
 */
// 'cbor-x/encode' is the pure-JS entry: the default Node entry loads the native cbor-extract,
// which crashes Bun 1.4 (abort in decode, measured) and is not needed for our small objects.
import { Encoder } from 'cbor-x/encode';

/** The values an object or metadata may hold. Maps are plain objects (text keys) or Map. */
export type CborValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | CborValue[]
  | { [key: string]: CborValue }
  | Map<CborValue, CborValue>;

const codec = new Encoder({
  useRecords: false,
  variableMapSize: true,
  tagUint8Array: false,
  mapsAsObjects: false,
  pack: false,
  useFloat32: 0,
  structuredClone: false,
  bundleStrings: false,
} as ConstructorParameters<typeof Encoder>[0]);

const TWO_POW_32 = 2 ** 32;

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Returns a value cbor-x encodes deterministically: maps sorted, large integers as bigint. */
function prepare(value: CborValue, depth: number): unknown {
  if (depth > 64) throw new RangeError('CBOR value nested deeper than 64 levels');
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`CBOR value ${value} is not a safe integer; floats are not allowed`);
    return value >= TWO_POW_32 || value < -TWO_POW_32 ? BigInt(value) : value;
  }
  if (typeof value === 'bigint') {
    if (value >= -(2n ** 32n) && value < 2n ** 32n) return Number(value);
    // -2^64 is a valid CBOR integer, but cbor-x would write it as a bignum tag: keep it out.
    if (value >= 2n ** 64n || value <= -(2n ** 64n)) throw new RangeError('CBOR integer out of the range -(2^64-1)..2^64-1');
    return value;
  }
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? new Uint8Array(value.buffer, value.byteOffset, value.length) : value;
  if (Array.isArray(value)) return value.map((v) => prepare(v, depth + 1));
  const entries: [unknown, unknown][] =
    value instanceof Map
      ? [...value.entries()].map(([k, v]) => [prepare(k, depth + 1), prepare(v, depth + 1)])
      : Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null
        ? Object.entries(value).map(([k, v]) => [k, prepare(v as CborValue, depth + 1)])
        : (() => {
            throw new TypeError(`cannot encode ${Object.prototype.toString.call(value)} as canonical CBOR`);
          })();
  const keyed = entries.map(([k, v]) => ({ key: codec.encode(k) as Uint8Array, k, v }));
  keyed.sort((a, b) => compareBytes(a.key, b.key));
  for (let i = 1; i < keyed.length; i++) {
    if (compareBytes(keyed[i - 1].key, keyed[i].key) === 0) throw new TypeError('CBOR map has a duplicate key');
  }
  return new Map(keyed.map(({ k, v }) => [k, v]));
}

/** Encodes a value in canonical CBOR. @throws RangeError/TypeError for values outside the model. */
export function encodeCanonical(value: CborValue): Uint8Array {
  const bytes = codec.encode(prepare(value, 0)) as Uint8Array;
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** Turns decoded cbor-x values back into the model (bigint that fits in a number becomes a number). */
function normalize(value: unknown, depth: number): CborValue {
  if (depth > 64) throw new RangeError('CBOR value nested deeper than 64 levels');
  if (typeof value === 'bigint') return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return value;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new RangeError('CBOR float in canonical data');
    return value;
  }
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map((v) => normalize(v, depth + 1));
  if (value instanceof Map) {
    const out = new Map<CborValue, CborValue>();
    for (const [k, v] of value) out.set(normalize(k, depth + 1), normalize(v, depth + 1));
    return out;
  }
  throw new TypeError(`unexpected CBOR item ${Object.prototype.toString.call(value)}`);
}

/**
 * Decodes canonical CBOR: the bytes must be exactly one item and re-encode to themselves.
 * Returns undefined (not an exception) for anything else, so callers name the object.
 */
export function decodeCanonical(bytes: Uint8Array): CborValue | undefined {
  let value: CborValue;
  try {
    value = normalize(codec.decode(bytes), 0);
    const again = encodeCanonical(value);
    if (compareBytes(again, bytes) !== 0) return undefined;
  } catch {
    return undefined;
  }
  return value;
}

/** Reads a text key from a decoded CBOR map (Map with text keys). */
export function mapGet(map: CborValue, key: string): CborValue | undefined {
  return map instanceof Map ? map.get(key) : undefined;
}

/** Converts a decoded map with text keys into a plain object (for metadata printing). */
export function toPlain(value: CborValue): unknown {
  if (value instanceof Map) {
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, v] of value) out[typeof k === 'string' ? k : JSON.stringify(toPlain(k))] = toPlain(v);
    return out;
  }
  if (Array.isArray(value)) return value.map(toPlain);
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString('hex') };
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export { compareBytes };

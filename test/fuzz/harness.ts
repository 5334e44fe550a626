/**
 * The fuzz harness: input generators (random bytes, and valid encodings mutated by bit flips,
 * inserts, deletes, truncation and huge length fields), an allocation guard, the per-input check
 * (only the allowed error classes, bounded time, no allocation by a declared size), the runner
 * over fast-check, and the corpus of found inputs. Targets are in targets.ts.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { LarchError } from '../../src/errors.ts';

export const CORPUS_DIR = fileURLToPath(new URL('../vectors/fuzz/', import.meta.url));

/** An error class a target may end in besides LarchError (a pure decoder's own, which every caller maps to a LarchError). */
type ErrorClass = abstract new (...args: never[]) => Error;

export interface FuzzTarget {
  name: string;
  /** The function(s) the target drives, for the docs and reports. */
  drives: string;
  /** Valid encodings to mutate (test vectors, or made by the encoder). */
  seeds: () => Uint8Array[] | Promise<Uint8Array[]>;
  /** Feeds one input to the parser; returns normally or throws. Checks properties of a result itself. */
  run: (input: Uint8Array) => unknown;
  /** Error classes allowed besides LarchError. */
  alsoAllowed?: ErrorClass[];
  /** The parser must not throw at all (it returns a verdict). */
  neverThrows?: boolean;
  /** decode(encode(x)) == x over generated valid x, when the format round-trips. */
  roundTrip?: fc.IAsyncProperty<[unknown]> | fc.IProperty<[unknown]>;
  /** Upper bound of one input's time (default 1000 ms: generous, CI shares 2 cores). */
  maxMsPerInput?: number;
  /** Called once before the target runs (temp dirs, a repo). */
  setup?: () => Promise<void>;
  teardown?: () => Promise<void>;
}

// ---- inputs -----------------------------------------------------------------

const u32 = (n: number) => Uint8Array.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
const u64 = (n: bigint) => Uint8Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(56 - 8 * i)) & 0xffn));
const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
const ascii = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));

/** Length fields and numbers a hostile input declares: 2^31, 2^32-1, 2^40, in the encodings the formats use. */
export const HUGE_FIELDS: Uint8Array[] = [
  u32(0xffffffff),
  u32(0x80000000),
  u32(0x7fffffff),
  u64(2n ** 40n),
  u64(2n ** 63n),
  // CBOR heads: byte string, text string, array, map of 2^40 / 2^32-1 / 2^31 items
  cat(Uint8Array.of(0x5b), u64(2n ** 40n)),
  cat(Uint8Array.of(0x7b), u64(2n ** 40n)),
  cat(Uint8Array.of(0x9b), u64(2n ** 40n)),
  cat(Uint8Array.of(0xbb), u64(2n ** 40n)),
  cat(Uint8Array.of(0x5a), u32(0xffffffff)),
  cat(Uint8Array.of(0x9a), u32(0x80000000)),
  cat(Uint8Array.of(0xba), u32(0x80000000)),
  cat(Uint8Array.of(0x1b), u64(2n ** 64n - 1n)),
  // CBOR unsigned integers 2^40 and 2^31 (a declared length or size inside a map or array)
  cat(Uint8Array.of(0x1b), u64(2n ** 40n)),
  cat(Uint8Array.of(0x1a), u32(0x80000000)),
  // LEB128 of 2^49 - 1
  Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
  // decimal text: 2^31, 2^40, beyond 2^64, a float
  ascii('2147483648'),
  ascii('1099511627776'),
  ascii('99999999999999999999999'),
  ascii('1e308'),
  ascii('0xffffffffffff'),
];

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'huge'; at: number; field: number }
  | { op: 'duplicate'; at: number; length: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 32 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('huge' as const), at: fc.nat(), field: fc.nat(HUGE_FIELDS.length - 1) }),
  fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
);

export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.length;
  const at = n === 0 ? 0 : m.at % (n + 1);
  switch (m.op) {
    case 'flip': {
      if (n === 0) return bytes;
      const out = Uint8Array.from(bytes);
      out[m.at % n] ^= 1 << m.bit;
      return out;
    }
    case 'insert':
      return cat(bytes.subarray(0, at), m.bytes, bytes.subarray(at));
    case 'delete':
      return cat(bytes.subarray(0, at), bytes.subarray(at + m.length));
    case 'truncate':
      return bytes.subarray(0, at);
    case 'huge': {
      // Overwrite, so a length field keeps its place (and the bytes after it are still there).
      const field = HUGE_FIELDS[m.field];
      return cat(bytes.subarray(0, at), field, bytes.subarray(at + field.length));
    }
    case 'duplicate':
      return cat(bytes.subarray(0, at + m.length), bytes.subarray(at));
  }
}

/** Random bytes (1 in 5) and valid seeds under 1-8 mutations (4 in 5). */
export function inputs(seeds: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const random = fc.uint8Array({ maxLength: 512 });
  if (seeds.length === 0) return random;
  const mutated = fc
    .tuple(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: 8 }))
    .map(([i, ms]) => ms.reduce<Uint8Array>((b, m) => mutate(b, m), seeds[i]));
  return fc.oneof({ weight: 1, arbitrary: random }, { weight: 4, arbitrary: mutated }, { weight: 1, arbitrary: fc.constantFrom(...seeds) });
}

// ---- allocation guard -------------------------------------------------------

/** Largest single buffer a parser may allocate for one input: none of the inputs here comes near it legitimately. */
export const MAX_ALLOCATION_BYTES = 8 * 1024 * 1024;

let largestAllocation = 0;
const note = (n: unknown) => {
  if (typeof n === 'number' && n > largestAllocation) largestAllocation = n;
};

/**
 * Records the largest buffer asked for through Buffer.alloc*, new ArrayBuffer and new Uint8Array
 * while installed: the way to see that a declared 2^31 or 2^40 is refused before it is allocated
 * (Node would allocate up to 4 GiB, or fail with a RangeError).
 */
export function installAllocationGuard(): () => void {
  const saved = { alloc: Buffer.alloc, allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow, U8: globalThis.Uint8Array, AB: globalThis.ArrayBuffer };
  Buffer.alloc = ((size: number, ...rest: unknown[]) => (note(size), (saved.alloc as (...a: unknown[]) => Buffer)(size, ...rest))) as typeof Buffer.alloc;
  Buffer.allocUnsafe = ((size: number) => (note(size), saved.allocUnsafe(size))) as typeof Buffer.allocUnsafe;
  Buffer.allocUnsafeSlow = ((size: number) => (note(size), saved.allocUnsafeSlow(size))) as typeof Buffer.allocUnsafeSlow;
  const construct = (target: object, args: unknown[], newTarget: object) => {
    note(args[0]);
    return Reflect.construct(target as new (...a: unknown[]) => object, args, newTarget as new (...a: unknown[]) => object);
  };
  globalThis.Uint8Array = new Proxy(saved.U8, { construct }) as Uint8ArrayConstructor;
  globalThis.ArrayBuffer = new Proxy(saved.AB, { construct }) as ArrayBufferConstructor;
  return () => {
    Object.assign(Buffer, { alloc: saved.alloc, allocUnsafe: saved.allocUnsafe, allocUnsafeSlow: saved.allocUnsafeSlow });
    globalThis.Uint8Array = saved.U8;
    globalThis.ArrayBuffer = saved.AB;
  };
}

// ---- one input --------------------------------------------------------------

export interface Outcome {
  ms: number;
  /** 'ok', or the allowed error class that ended it. */
  ended: string;
  largestAllocation: number;
}

export class FuzzFinding extends Error {
  override name = 'FuzzFinding';
  constructor(
    message: string,
    readonly input: Uint8Array,
    readonly original?: unknown,
  ) {
    super(message, original === undefined ? undefined : { cause: original });
  }
}

function errorLabel(err: unknown): string {
  if (err instanceof LarchError) return `LarchError ${err.code}`;
  if (err instanceof Error) return err.name;
  return typeof err;
}

/** Told of each input before it runs and (null) after: the long run's hang watchdog (scripts/fuzz.ts) keeps it. */
let inputHook: ((target: string, input: Uint8Array | null) => void) | null = null;
export function setInputHook(hook: typeof inputHook): void {
  inputHook = hook;
}

/** Runs one input and checks it: the error class, the time, the largest allocation. @throws FuzzFinding */
export async function checkInput(target: FuzzTarget, input: Uint8Array): Promise<Outcome> {
  inputHook?.(target.name, input);
  try {
    return await checkOne(target, input);
  } finally {
    inputHook?.(target.name, null);
  }
}

async function checkOne(target: FuzzTarget, input: Uint8Array): Promise<Outcome> {
  largestAllocation = 0;
  const started = performance.now();
  let ended = 'ok';
  try {
    await target.run(input);
  } catch (err) {
    const allowed = !target.neverThrows && (err instanceof LarchError || (target.alsoAllowed ?? []).some((c) => err instanceof c));
    if (!allowed) {
      const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      throw new FuzzFinding(`${target.name}: ended in ${what.slice(0, 300)}`, input, err);
    }
    ended = errorLabel(err);
  }
  const ms = performance.now() - started;
  const limit = target.maxMsPerInput ?? 1000;
  if (ms > limit) throw new FuzzFinding(`${target.name}: one input took ${ms.toFixed(0)} ms (limit ${limit} ms)`, input);
  if (largestAllocation > MAX_ALLOCATION_BYTES) throw new FuzzFinding(`${target.name}: allocated ${largestAllocation} bytes at once (limit ${MAX_ALLOCATION_BYTES})`, input);
  return { ms, ended, largestAllocation };
}

// ---- a target's run ---------------------------------------------------------

export interface TargetReport {
  name: string;
  inputs: number;
  roundTrips: number;
  slowestMs: number;
  /** Hex of the slowest input's first 32 bytes, and its length. */
  slowestInput: { length: number; head: string };
  meanMs: number;
  /** Highest heapUsed + arrayBuffers over the run, above the level before it, in MiB. */
  heapGrowthMiB: number;
  largestAllocation: number;
  /** Open file descriptors after the run minus before it (Linux; 0 elsewhere): a parser that leaks one per refused input shows here. */
  fdGrowth: number;
  endings: Record<string, number>;
  failure: null | { message: string; input: Uint8Array; seed: number; path?: string };
}

export interface RunOptions {
  numRuns: number;
  /** Stop after this long even if numRuns are not done. */
  timeLimitMs?: number;
  seed?: number;
}

const openFds = () => {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
};

const heapNow = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

/** Fuzzes one target (and its round trip); never throws for a finding: it is in the report. */
export async function runTarget(target: FuzzTarget, opts: RunOptions): Promise<TargetReport> {
  await target.setup?.();
  const seeds = await target.seeds();
  const report: TargetReport = { name: target.name, inputs: 0, roundTrips: 0, slowestMs: 0, slowestInput: { length: 0, head: '' }, meanMs: 0, heapGrowthMiB: 0, largestAllocation: 0, fdGrowth: 0, endings: {}, failure: null };
  const fdsBefore = openFds();
  (globalThis as { gc?: () => void }).gc?.();
  const base = heapNow();
  let peak = base;
  let totalMs = 0;
  const seed = opts.seed ?? Date.now() ^ (Math.random() * 0x7fffffff);
  const restore = installAllocationGuard();
  try {
    const property = fc.asyncProperty(inputs(seeds), async (input) => {
      const o = await checkInput(target, input);
      report.inputs++;
      totalMs += o.ms;
      if (o.ms > report.slowestMs) {
        report.slowestMs = o.ms;
        report.slowestInput = { length: input.length, head: Buffer.from(input.subarray(0, 32)).toString('hex') };
      }
      report.largestAllocation = Math.max(report.largestAllocation, o.largestAllocation);
      report.endings[o.ended] = (report.endings[o.ended] ?? 0) + 1;
      if (report.inputs % 16 === 0) peak = Math.max(peak, heapNow());
    });
    const details = await fc.check(property, { numRuns: opts.numRuns, seed, interruptAfterTimeLimit: opts.timeLimitMs, markInterruptAsFailure: false, endOnFailure: opts.timeLimitMs !== undefined });
    if (details.failed) {
      const cause = details.errorInstance;
      const input = cause instanceof FuzzFinding ? cause.input : (details.counterexample?.[0] as Uint8Array);
      report.failure = { message: cause instanceof Error ? cause.message : String(cause), input, seed: details.seed, path: details.counterexamplePath ?? undefined };
    }
    if (target.roundTrip && report.failure === null) {
      const rt = await fc.check(target.roundTrip as fc.IAsyncProperty<[unknown]>, { numRuns: Math.max(50, Math.min(opts.numRuns, 2000)), seed, interruptAfterTimeLimit: opts.timeLimitMs, markInterruptAsFailure: false });
      report.roundTrips = rt.numRuns;
      if (rt.failed) {
        const cause = rt.errorInstance;
        report.failure = { message: `${target.name} round trip: ${cause instanceof Error ? cause.message : String(cause)} for ${fc.stringify(rt.counterexample)}`.slice(0, 2000), input: new Uint8Array(0), seed: rt.seed, path: rt.counterexamplePath ?? undefined };
      }
    }
  } finally {
    restore();
    await target.teardown?.();
  }
  report.meanMs = report.inputs ? totalMs / report.inputs : 0;
  // Streams close a tick or two after the parser gave up: let them, then count.
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((resolve) => setTimeout(resolve, 100));
  report.fdGrowth = openFds() - fdsBefore;
  report.heapGrowthMiB = Math.max(0, (Math.max(peak, heapNow()) - base) / 2 ** 20);
  return report;
}

// ---- corpus -----------------------------------------------------------------

/** Saves a found input as CORPUS_DIR/TARGET/SHA.bin with SHA.json (seed, path, message). Returns the .bin path. */
export function saveToCorpus(target: string, failure: NonNullable<TargetReport['failure']>): string {
  const dir = join(CORPUS_DIR, target);
  mkdirSync(dir, { recursive: true });
  const sha = createHash('sha256').update(failure.input).digest('hex').slice(0, 16);
  writeFileSync(join(dir, `${sha}.bin`), failure.input);
  writeFileSync(join(dir, `${sha}.json`), JSON.stringify({ target, message: failure.message, seed: failure.seed, path: failure.path ?? null, found: new Date().toISOString() }, null, 2) + '\n');
  return join(dir, `${sha}.bin`);
}

/** Every corpus input of a target (regression vectors). */
export function corpusInputs(target: string): { file: string; input: Uint8Array }[] {
  const dir = join(CORPUS_DIR, target);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.bin'))
    .sort()
    .map((n) => ({ file: join(dir, n), input: Uint8Array.from(readFileSync(join(dir, n))) }));
}

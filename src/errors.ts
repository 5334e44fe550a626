/** One error type for problems with the world, with stable codes, exit codes and hints. */

/** Stable error codes: scripts match on these, never on message text. */
export const ERROR_CODES = {
  USAGE: { exit: 2, hint: "run 'larch --help' or 'larch COMMAND --help'" },
  NOT_FOUND: { exit: 3, hint: 'check the name or id; `larch refs` and `larch log` list what exists' },
  INVALID_INPUT: { exit: 4, hint: 'fix the input named in the message' },
  UNSUPPORTED_FILE_TYPE: { exit: 4, hint: 'remove the file from the tree; device nodes and sockets belong to devtmpfs and running services, not to an OS tree' },
  OBJECT_CORRUPT: { exit: 5, hint: "run 'larch fsck' and restore the object from a good repo with 'larch pull-local'" },
  OBJECT_MISSING: { exit: 5, hint: "fetch the commit again with 'larch pull-local' (or pull); 'larch fsck' lists what is missing" },
  REPO_CORRUPT: { exit: 5, hint: "run 'larch fsck --repo R' for the full list" },
  HOSTILE_TREE: { exit: 5, hint: 'do not use this commit; it was built to write outside its tree' },
  DELTA_CORRUPT: { exit: 5, hint: 'download the delta again; nothing from the damaged part was stored, and applying again resumes' },
  DELTA_BASE_MISSING: { exit: 12, hint: "this delta updates another commit than the repo holds: use a delta from the repo's commit, or a from-scratch delta" },
  SIGNATURE_INVALID: { exit: 6, hint: 'check that the right public key is trusted, and that the commit came from the vendor' },
  SIGNATURE_MISSING: { exit: 6, hint: "sign the commit with 'larch commit --sign-key K' or 'larch sign'" },
  KEY_INVALID: { exit: 6, hint: "make a key pair with 'larch keygen --out NAME'" },
  LOCKED: { exit: 7, hint: 'another larch process is writing to this repo; wait for it to finish (a dead process never holds the lock)' },
  NO_SPACE: { exit: 8, hint: "free space, e.g. with 'larch prune', then run the command again; nothing was half-written" },
  IO: { exit: 9, hint: 'check the path and its permissions' },
  READ_ONLY: { exit: 9, hint: 'remount the filesystem read-write (mount -o remount,rw MOUNTPOINT), or check that --sysroot / --repo names the right place' },
  TOOL_MISSING: { exit: 10, hint: 'install the tool named in the message' },
  EXISTS: { exit: 11, hint: 'choose another destination or remove the existing one' },
  ENV_CORRUPT: { exit: 13, hint: 'the bootloader environment named in the message has no valid copy; check its fw_env.config / grubenv path, or write a whole one with `larch bootenv init --defaults FILE`' },
  ENV_FULL: { exit: 13, hint: 'the variables do not fit the environment; unset variables you no longer need' },
} as const satisfies Record<string, { exit: number; hint: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface LarchErrorOptions {
  hint?: string;
  data?: Record<string, unknown>;
  cause?: unknown;
}

/** A problem with the world (bad data, missing file, bad signature); caller mistakes throw TypeError/RangeError. */
export class LarchError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: LarchErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LarchError';
    this.code = code;
    this.hint = options.hint ?? ERROR_CODES[code].hint;
    this.data = options.data ?? {};
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
}

/** Runs fn and prefixes any LarchError's message with the step, so messages read `step: detail`. */
export async function withContext<T>(step: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw addContext(step, err);
  }
}

export function addContext(step: string, err: unknown): unknown {
  if (err instanceof LarchError) {
    const wrapped = new LarchError(err.code, `${step}: ${err.message}`, { hint: err.hint, data: err.data, cause: err.cause });
    wrapped.stack = err.stack;
    return wrapped;
  }
  return err;
}

/** Turns a Node system error into a LarchError naming the path, or returns it unchanged. */
export function fromSystemError(err: unknown, action: string, path: string): unknown {
  if (err instanceof LarchError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === undefined) return err;
  const data = { path, errno: code };
  if (code === 'ENOSPC' || code === 'EDQUOT') return new LarchError('NO_SPACE', `${action} '${path}': no space left on device`, { data, cause: err });
  if (code === 'ENOENT') return new LarchError('NOT_FOUND', `${action} '${path}': no such file or directory`, { data, cause: err });
  if (code === 'EROFS') return new LarchError('READ_ONLY', `${action}: the filesystem at '${path}' is read-only`, { data, cause: err });
  if (code === 'EEXIST') return new LarchError('EXISTS', `${action} '${path}': already exists`, { data, cause: err });
  return new LarchError('IO', `${action} '${path}': ${(err as Error).message}`, { data, cause: err });
}

/** Shortens an untrusted string before it goes into a message. */
export function quash(text: string, max = 80): string {
  const printable = text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return printable.length > max ? `${printable.slice(0, max)}…` : printable;
}

/** One error type for problems with the world, with stable codes, exit codes and hints. */

/** Stable error codes: scripts match on these, never on message text. */
export const ERROR_CODES = {
  USAGE: { exit: 2, meaning: 'bad command line', hint: "run 'larch --help' or 'larch COMMAND --help'" },
  NOT_FOUND: { exit: 3, meaning: 'no such repo, file, branch, commit or revision', hint: 'check the name or path the message gives' },
  INVALID_INPUT: { exit: 4, meaning: 'bad input data (tar, metadata JSON, branch name, file that changed while read, a header or tree larch cannot store, bare repo without root)', hint: 'fix the input named in the message' },
  UNSUPPORTED_FILE_TYPE: { exit: 4, meaning: 'a device node, socket or other type in the tree', hint: 'remove the file from the tree; device nodes and sockets belong to devtmpfs and running services, not to an OS tree' },
  OBJECT_CORRUPT: { exit: 5, meaning: 'an object does not match its id, does not decode, or is over a limit', hint: "run 'larch fsck' and restore the object from a good repo with 'larch pull-local'" },
  OBJECT_MISSING: { exit: 5, meaning: 'an object a commit needs is not in the repo', hint: "fetch the commit again with 'larch pull-local' (or pull); 'larch fsck' lists what is missing" },
  REPO_CORRUPT: { exit: 5, meaning: 'bad `config.json` or ref file; `fsck` found problems', hint: "run 'larch fsck --repo R' for the full list" },
  HOSTILE_TREE: { exit: 5, meaning: 'a tree with unsafe names or absurd depth/size', hint: 'do not use this commit; it was built to write outside its tree' },
  DELTA_CORRUPT: { exit: 5, meaning: 'a delta that is not well-formed, a part whose size or checksum is wrong, or one that leaves the tree incomplete', hint: 'download the delta again; nothing from the damaged part was stored, and applying again resumes' },
  DELTA_UNSUPPORTED: { exit: 5, meaning: 'a delta of a format newer than this larch reads', hint: "update larch; 'larch pull' without the delta fetches the objects" },
  DELTA_BASE_MISSING: { exit: 12, meaning: 'a delta\'s base commit is not in the repo', hint: "this delta updates another commit than the repo holds: use a delta from the repo's commit, or a from-scratch delta" },
  SIGNATURE_INVALID: { exit: 6, meaning: 'no valid signature by a trusted key, or a malformed `.sig`', hint: 'check that the right public key is trusted, and that the commit came from the vendor' },
  SIGNATURE_MISSING: { exit: 6, meaning: 'the commit has no signature at all', hint: "sign the commit with 'larch commit --sign-key K' or 'larch sign'" },
  KEY_INVALID: { exit: 6, meaning: 'a file is not a larch secret/public key', hint: "make a key pair with 'larch keygen --out NAME'" },
  LOCKED: { exit: 7, meaning: 'another process holds the repo lock (waited 30 s), or the device lock `S/larch/lock` (waited `LARCH_LOCK_TIMEOUT`, default 60 s)', hint: 'another larch process is writing to this repo; wait for it to finish (a dead process never holds the lock)' },
  NO_SPACE: { exit: 8, meaning: 'ENOSPC or EDQUOT', hint: "free space, e.g. with 'larch prune', then run the command again; nothing was half-written" },
  IO: { exit: 9, meaning: 'any other system error', hint: 'check the path and its permissions' },
  READ_ONLY: { exit: 9, meaning: 'EROFS: the filesystem at the path named is mounted read-only', hint: 'remount the filesystem read-write (mount -o remount,rw MOUNTPOINT), or check that --sysroot / --repo names the right place' },
  TOOL_MISSING: { exit: 10, meaning: 'a tool larch runs (`flock`, `getfattr`, `mkfifo`, `dpkg-deb`, `mkfs.ext4`, ...) is not installed; `data.tool`, `data.package` (the Debian package that provides it, named in the hint)', hint: 'install the tool named in the message' },
  EXISTS: { exit: 11, meaning: 'destination exists (key file, checkout dir, repo of another mode); a sysroot provisioned with other options (`data.differs`)', hint: 'choose another destination or remove the existing one' },
  ENV_CORRUPT: { exit: 13, meaning: 'a bootloader environment (U-Boot env, grubenv) has no valid copy', hint: 'the bootloader environment named in the message has no valid copy; check its fw_env.config / grubenv path, or write a whole one with `larch bootenv init --defaults FILE`' },
  ENV_FULL: { exit: 13, meaning: 'the variables do not fit the environment\'s size', hint: 'the variables do not fit the environment; unset variables you no longer need' },
  REFUSED: { exit: 14, meaning: 'the device\'s state forbids the action (`data.reason`: `downgrade`, `failed-here`, `booted-unconfirmed`, `target-not-good`, `only-good-slot`, `wrong-collection`, `wrong-architecture`, `incompatible`, `agent-too-old`, `below-release-floor`, `wrong-ref`, `local-commit-from-remote`, `local-commit-as-base`)', hint: 'the device\'s state forbids this now; the message says what would allow it' },
  LAYER_FAILED: { exit: 15, meaning: 'package layering could not build the layered tree (`data.reason`: `not-found` a package in no apt source, `unresolvable` dependencies apt cannot satisfy, `removes-base` a conflict that would remove a base package, `script-failed` a maintainer script failed, `network` the sources unreachable and nothing cached, `apt-failed` anything else apt said); nothing was staged', hint: 'the message gives apt\'s reason; nothing was staged and the device runs as before' },
} as const satisfies Record<string, { exit: number; meaning: string; hint: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Exit status of an internal error (a bug: anything thrown that is not a LarchError). */
export const INTERNAL_HINT = 'this is a bug in larch; please report it with the command you ran (LARCH_DEBUG=1 prints the stack)';

/** docs/cli.md's table of error codes and exit codes, made from ERROR_CODES (test/unit/cli/exit-codes.test.ts checks the doc holds it). */
export function exitCodeTable(): string {
  const rows = [
    ['0', '—', 'success', ''],
    ['1', '`INTERNAL`', 'a bug in larch (not a `LarchError`)', INTERNAL_HINT],
    ...Object.entries(ERROR_CODES)
      .sort(([, a], [, b]) => a.exit - b.exit)
      .map(([code, c]) => [String(c.exit), `\`${code}\``, c.meaning, c.hint]),
  ];
  return ['| exit | code | meaning | default hint |', '|------|------|---------|--------------|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n') + '\n';
}

export interface LarchErrorOptions {
  hint?: string;
  /** What a script needs to act on the error without parsing the message (the path, id, value, limit); keys snake_case. */
  data: Record<string, unknown>;
  cause?: unknown;
}

/** A problem with the world (bad data, missing file, bad signature); caller mistakes throw TypeError/RangeError. */
export class LarchError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: LarchErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LarchError';
    this.code = code;
    this.hint = options.hint ?? ERROR_CODES[code].hint;
    this.data = options.data;
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
  if (code === 'ENOENT') return new LarchError('NOT_FOUND', `${action} '${path}': no such file or directory`, { hint: `check the path: nothing exists at '${path}'`, data, cause: err });
  if (code === 'EADDRINUSE') return new LarchError('IO', `${action} '${path}': the address is already in use`, { hint: 'another process listens there: stop it, or choose another port (--port) or address', data, cause: err });
  if (code === 'EROFS') return new LarchError('READ_ONLY', `${action}: the filesystem at '${path}' is read-only`, { data, cause: err });
  if (code === 'EEXIST') return new LarchError('EXISTS', `${action} '${path}': already exists`, { data, cause: err });
  return new LarchError('IO', `${action} '${path}': ${(err as Error).message}`, { data, cause: err });
}

/** Shortens an untrusted string before it goes into a message. */
export function quash(text: string, max = 80): string {
  const printable = text.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return printable.length > max ? `${printable.slice(0, max)}…` : printable;
}

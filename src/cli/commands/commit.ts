/** larch commit: a directory or tar becomes a commit on a branch. */
import { readFile } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../../errors.ts';
import type { CborValue } from '../../store/cbor.ts';
import { readSecretKey } from '../../store/sign.ts';
import { createCommit } from '../../store/write-commit.ts';
import { type Command, list, need, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

/** Accepts seconds since the epoch or an ISO 8601 date. @throws USAGE */
export function parseTimestamp(text: string): number {
  const seconds = /^\d+$/.test(text) ? Number(text) : Math.floor(Date.parse(text) / 1000);
  if (Number.isNaN(seconds)) throw new LarchError('USAGE', `commit: --timestamp '${text}' is neither seconds since the epoch nor an ISO 8601 date`);
  if (seconds < 0 || !Number.isSafeInteger(seconds)) throw new LarchError('USAGE', `commit: --timestamp '${text}' is outside 1970-01-01 .. 2^53-1 seconds`);
  return seconds;
}

function toCbor(value: unknown, where: string, depth = 0): CborValue {
  if (depth > 32) throw new LarchError('INVALID_INPUT', `${where}: metadata nested deeper than 32 levels`);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new LarchError('INVALID_INPUT', `${where}: ${value} is not an integer (metadata holds no floats; use a string)`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => toCbor(v, `${where}[${i}]`, depth + 1));
  if (typeof value === 'object') return Object.fromEntries(Object.entries(value as object).map(([k, v]) => [k, toCbor(v, `${where}.${k}`, depth + 1)]));
  throw new LarchError('INVALID_INPUT', `${where}: unsupported value`);
}

export const commit: Command = {
  name: 'commit',
  summary: 'record a directory or tar archive as a new commit',
  options: {
    ...REPO_OPTION,
    branch: { type: 'string', short: 'b' },
    tree: { type: 'string' },
    tar: { type: 'string' },
    version: { type: 'string' },
    subject: { type: 'string', short: 's' },
    body: { type: 'string' },
    metadata: { type: 'string', multiple: true },
    'metadata-json': { type: 'string' },
    timestamp: { type: 'string' },
    parent: { type: 'string' },
    orphan: { type: 'boolean' },
    'sign-key': { type: 'string', multiple: true },
    'no-xattrs': { type: 'boolean' },
    owner: { type: 'string' },
  },
  help: `NAME
  larch commit - record a directory or tar archive as a new commit

SYNOPSIS
  larch commit --repo R --branch B (--tree DIR | --tar FILE) --version V
               [--subject TEXT] [--body TEXT] [--metadata KEY=VALUE]... [--metadata-json FILE]
               [--timestamp T] [--parent REV | --orphan] [--sign-key K.key]...
               [--owner UID:GID] [--no-xattrs] [--json]

DESCRIPTION
  Stores every file, symlink, FIFO and directory of the tree as content-addressed objects
  (content, mode, owner and xattrs are part of each object's id), writes a commit naming the
  root, and moves branch B to it atomically. Modification times are not recorded, so the
  same tree and metadata give the same commit id on every machine. Device nodes and sockets
  are refused with the path named.

  The commit's parent is B's current commit unless --parent or --orphan says otherwise.
  A crash or kill at any moment leaves the repo as it was before, or with the new commit
  complete; 'larch prune' removes leftover temporary files.

OPTIONS
  --repo R             repository (required)
  --branch B, -b B     branch to move (required)
  --tree DIR           commit this directory
  --tar FILE           commit this tar archive (plain or gzip; pax xattrs are kept)
  --version V          version string, e.g. 2026.11.1 (required)
  --subject TEXT       one-line description
  --body TEXT          longer description
  --metadata K=V       a string entry in the commit's free-form metadata (repeatable)
  --metadata-json F    a JSON object merged into the metadata (integers, strings, booleans,
                       arrays and objects; no floats)
  --timestamp T        commit time: seconds since the epoch or ISO 8601 (default: now)
  --parent REV         parent commit; --orphan for none
  --sign-key K.key     sign with this secret key (repeatable)
  --owner UID:GID      record every entry with this owner (e.g. 0:0 for a tree unpacked
                       without root)
  --no-xattrs          do not read extended attributes (otherwise getfattr is needed)
  --json               print {"commit", "branch", "parent", "version", "timestamp",
                       "signedBy", "objectsWritten", "objectsReused", "bytesWritten"}

EXAMPLES
  larch commit --repo repo --branch os/stable --tree rootfs --version 1.0 --sign-key vendor.key
  larch commit --repo repo -b os/stable --tar rootfs.tar.gz --version 1.1 --timestamp 2026-11-01T00:00:00Z

EXIT STATUS
  0 committed; 2 usage; 3 not found; 4 bad input or unsupported file type; 7 locked; 8 no space.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'commit');
    const tree = opt(args, 'tree');
    const tarFile = opt(args, 'tar');
    if ((tree === undefined) === (tarFile === undefined)) throw new LarchError('USAGE', 'commit: give exactly one of --tree DIR or --tar FILE');
    const metadata: Record<string, CborValue> = {};
    const jsonFile = opt(args, 'metadata-json');
    if (jsonFile) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(jsonFile, 'utf8'));
      } catch (err) {
        throw err instanceof SyntaxError ? new LarchError('INVALID_INPUT', `--metadata-json '${jsonFile}' is not JSON: ${err.message}`) : fromSystemError(err, 'read', jsonFile);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new LarchError('INVALID_INPUT', `--metadata-json '${jsonFile}' must hold a JSON object`);
      Object.assign(metadata, toCbor(parsed, jsonFile));
    }
    for (const kv of list(args, 'metadata')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new LarchError('USAGE', `commit: --metadata '${kv}' is not KEY=VALUE`);
      metadata[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    let owner: { uid: number; gid: number } | undefined;
    const ownerText = opt(args, 'owner');
    if (ownerText !== undefined) {
      const m = /^(\d+):(\d+)$/.exec(ownerText);
      if (!m) throw new LarchError('USAGE', `commit: --owner must be UID:GID, got '${ownerText}'`);
      owner = { uid: Number(m[1]), gid: Number(m[2]) };
    }
    const parentRev = opt(args, 'parent');
    if (parentRev && args.values.orphan) throw new LarchError('USAGE', 'commit: --parent and --orphan exclude each other');
    const signKeys = await Promise.all(list(args, 'sign-key').map(readSecretKey));
    const ts = opt(args, 'timestamp');
    const result = await createCommit(repo, {
      source: tree !== undefined ? { tree } : { tar: tarFile! },
      branch: need(args, 'branch', 'commit'),
      version: need(args, 'version', 'commit'),
      subject: opt(args, 'subject'),
      body: opt(args, 'body'),
      metadata,
      timestamp: ts === undefined ? undefined : parseTimestamp(ts),
      parent: args.values.orphan ? null : parentRev ? await repo.resolveRev(parentRev) : undefined,
      signKeys,
      xattrs: args.values['no-xattrs'] !== true,
      owner,
    });
    if (args.json) printJson(io, result);
    else {
      io.out(`${result.commit}\n`);
      if (io.isTTY) io.out(`branch ${result.branch} -> version ${result.version}; ${result.objectsWritten} objects written, ${result.objectsReused} reused${result.signedBy.length ? `; signed by ${result.signedBy.join(', ')}` : ''}\n`);
    }
  },
};

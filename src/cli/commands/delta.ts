/** larch delta generate / apply / list / show. */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError } from '../../errors.ts';
import { applyDelta } from '../../delta/apply.ts';
import { applyThreads } from '../../delta/threads.ts';
import { DeltaFormatError, DeltaUnsupportedError, decodeEnvelope, decodeSuperblock, deltaFileBytes } from '../../delta/format.ts';
import { generateDelta } from '../../delta/generate.ts';
import { listDeltaNames, openDeltaDir, openDeltaFile } from '../../delta/source.ts';
import { readTrustedKeys } from '../../store/keyring.ts';
import { readPublicKey, readSecretKey } from '../../store/sign.ts';
import { type Command, intOption, list, need, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, isoTimeMs, openRepo } from './_repo.ts';

export const deltaGenerate: Command = {
  name: 'delta generate',
  summary: 'make a signed static delta from one commit to another',
  options: { ...REPO_OPTION, from: { type: 'string' }, to: { type: 'string' }, 'sign-key': { type: 'string', multiple: true }, unsigned: { type: 'boolean' }, out: { type: 'string' }, quality: { type: 'string' }, 'part-size': { type: 'string' }, format: { type: 'string' } },
  help: `NAME
  larch delta generate - make a signed static delta from one commit to another

SYNOPSIS
  larch delta generate --repo R [--from A] --to B (--sign-key K.key... | --unsigned)
                       [--out FILE] [--quality Q] [--part-size BYTES] [--format 1|2|auto] [--json]

DESCRIPTION
  Writes the objects B has and A lacks into R/deltas/A-B/ (an 'envelope' and 'part-N'
  files, served as they are). Each changed file is sent as a bsdiff patch against a similar
  file of A (the same path, the same path with version numbers changed, or the same name)
  or literally, whichever compresses smaller; parts are compressed with brotli. Without
  --from the delta installs B from nothing (first installs, factory images).
  --out also writes the whole delta as one file, for offline and USB updates.
  A changed file that holds compressed streams (a .gz, the kernel's LZ4 payload) may be
  sent as a patch between its decompressed views: the device rebuilds the exact compressed
  bytes (checked here, by running the device's code, before the patch is used). The diff
  bytes of the patches, mostly zero, are sent as runs of zeros and the bytes between them.
  Such a delta is format 3; agents older than format 3 refuse it and pull the objects
  instead (--format 2 or 1 makes a delta they read).

OPTIONS
  --repo R          repository holding A and B (required)
  --from A          base commit (REV); omit for a from-scratch delta
  --to B            target commit (REV, required)
  --sign-key K.key  sign the delta (repeatable); devices refuse unsigned deltas, and
                    'publish' leaves them out of the summary
  --unsigned        make an unsigned delta on purpose (offline tests, 'delta apply
                    --allow-unsigned'); one of --sign-key and --unsigned is required
  --out FILE        also write the delta as one file
  --quality Q       brotli quality 0-11 (default 11: smallest, slowest)
  --part-size BYTES raw bytes per part (default 33554432): smaller parts resume at a finer
                    grain and cost a little size
  --format 1|2|auto auto (default): format 3, views where they are smaller and zero-run
                    coded diff bytes; 2: views, no coding (format 2 when a file goes
                    through its view, else 1), for agents that read format 2 (larch of
                    2026-12-05); 1: neither, for agents older than format 2
  --json            print {"from", "to", "bytes", "parts", "objects", "patched", "literal",
                    "signed_by", "name", "dir", "out", "format", "view_patched", "by_kind",
                    "streams", "timings_ms"} (docs/cli.md)

EXIT STATUS
  0 written; 2 (USAGE) neither --sign-key nor --unsigned, or both; 3 A or B not found;
  5 an object of A or B is corrupt.
`,
  async run(args, io) {
    // An unsigned delta is refused by every device: say so here, not at the device.
    const unsigned = args.values.unsigned === true;
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0 && !unsigned) {
      throw new LarchError('USAGE', 'delta generate: no --sign-key: devices refuse unsigned deltas (usage: delta generate (--sign-key K | --unsigned))', { hint: "pass --sign-key K.key (the key 'larch publish' signs with), or --unsigned to make an unsigned delta on purpose", data: { command: 'delta generate', option: 'sign-key' } });
    }
    if (keyFiles.length > 0 && unsigned) throw new LarchError('USAGE', 'delta generate: --sign-key and --unsigned exclude each other (usage: delta generate (--sign-key K | --unsigned))', { data: { command: 'delta generate', options: ['sign-key', 'unsigned'] } });
    const quality = intOption(opt(args, 'quality'), 'quality', 'delta generate', 0);
    if (quality !== undefined && quality > 11) throw new LarchError('USAGE', 'delta generate: --quality must be 0..11', { data: { command: 'delta generate', option: 'quality', value: quality, max: 11 } });
    const repo = await openRepo(args, 'delta generate');
    const fromRev = opt(args, 'from');
    const from = fromRev ? await repo.resolveRev(fromRev) : null;
    const to = await repo.resolveRev(need(args, 'to', 'delta generate'));
    const signKeys = await Promise.all(keyFiles.map(readSecretKey));
    const partBytes = intOption(opt(args, 'part-size'), 'part-size', 'delta generate', 4096);
    const formatArg = opt(args, 'format') ?? 'auto';
    if (formatArg !== '1' && formatArg !== '2' && formatArg !== 'auto') throw new LarchError('USAGE', `delta generate: --format must be 1, 2 or auto, not '${formatArg}'`, { hint: '--format 1 makes a delta every larch reads, 2 one that larch since format 2 reads; auto (the default) makes a format-3 delta', data: { command: 'delta generate', option: 'format', value: formatArg } });
    const r = await generateDelta(repo, { from, to, signKeys, out: opt(args, 'out'), quality, partBytes, format: formatArg === 'auto' ? 'auto' : (Number(formatArg) as 1 | 2) });
    if (args.json) printJson(io, r);
    else io.out(`${r.name}: ${r.bytes} bytes in ${r.parts} part(s), format ${r.format}; ${r.objects} objects (${r.patched} patched${r.view_patched ? `, ${r.view_patched} of them through their views` : ''}, ${r.literal} literal)${r.signed_by.length ? `; signed by ${r.signed_by.join(', ')}` : ''}\n`);
  },
};

export const deltaApply: Command = {
  name: 'delta apply',
  summary: 'apply a delta file to a repo that holds its base commit',
  options: { ...REPO_OPTION, key: { type: 'string', multiple: true }, 'allow-unsigned': { type: 'boolean' }, ref: { type: 'string' }, threads: { type: 'string' } },
  positionals: true,
  help: `NAME
  larch delta apply - apply a delta file to a repo that holds its base commit

SYNOPSIS
  larch delta apply --repo R FILE [--key K.pub]... [--allow-unsigned] [--ref BRANCH]
                    [--threads N] [--json]

DESCRIPTION
  Rebuilds the delta's target commit in R from FILE (made by 'delta generate --out') and the
  base commit R already holds. Before anything is stored, the delta's signature is checked
  against the given keys (or R's keyring, 'larch trust'), and R must hold the base commit.
  Each part's checksum is checked before it is used, and every rebuilt object against its
  id; each part is stored durably before the next, so running the command again after an
  interruption continues with the parts still missing. A delta that would leave the tree
  incomplete never stores its commit. FILE may also be a delta directory (R/deltas/NAME).

OPTIONS
  --repo R           repository (required)
  --key K.pub        trust this key for the delta's signature (repeatable)
  --allow-unsigned   apply without checking any signature (tests, trusted media only)
  --ref BRANCH       point BRANCH at the new commit when done
  --threads N        1 (default, or LARCH_APPLY_THREADS): the parts one after another;
                     2: the part with the largest source view (a kernel's) on a second
                     thread while this one applies the rest: about 30% less time on
                     a kernel update, for about 50 MiB more memory at the peak
  --json             print {"from", "to", "parts", "parts_applied", "parts_skipped",
                     "objects_written"}

EXIT STATUS
  0 applied; 5 (DELTA_CORRUPT, OBJECT_CORRUPT) a damaged or lying delta: nothing of the
  damaged part was stored; 6 unsigned or untrusted; 2 (USAGE) no --key and an empty keyring; 12 (DELTA_BASE_MISSING) R lacks the
  delta's base commit; 8 no space.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'delta apply');
    const [file] = positionals(args, ['file'], 'delta apply');
    const keyFiles = list(args, 'key');
    const trusted = keyFiles.length > 0 ? await Promise.all(keyFiles.map(readPublicKey)) : (await readTrustedKeys(repo)).map((k) => k.key);
    const isDir = await stat(file).then((s) => s.isDirectory(), () => false);
    const source = isDir ? await openDeltaDir(file) : await openDeltaFile(file);
    const progress = io.isTTY && !args.json && process.stderr.isTTY;
    const result = await applyDelta(repo, source, {
      trusted,
      allowUnsigned: args.values['allow-unsigned'] === true,
      onProgress: progress ? (e) => io.err(`\rapplied ${e.done}/${e.parts} parts${e.skipped ? ` (part ${e.part + 1} already stored)` : ''}   `) : undefined,
      ref: opt(args, 'ref'),
      threads: opt(args, 'threads') === undefined ? undefined : applyThreads(opt(args, 'threads')!, '--threads'),
    });
    if (progress) io.err('\n');
    if (args.json) printJson(io, result);
    else io.out(`${result.to}\n`);
  },
};

async function describe(envelope: Uint8Array, name: string) {
  try {
    const sb = decodeSuperblock(decodeEnvelope(envelope).superblock);
    return {
      name,
      format: sb.format,
      from: sb.from,
      to: sb.to,
      created: isoTimeMs(sb.created),
      parts: sb.parts.map((p) => ({ size: p.size, raw: p.raw, objects: p.objects.length, sha256: p.sha256, scratch: p.scratch ?? 0 })),
      bytes: deltaFileBytes(envelope.length, sb.parts),
      // The signatures are a CBOR array; an empty one is the single byte 0x80.
      signed: decodeEnvelope(envelope).signatures.length > 1,
    };
  } catch (err) {
    if (err instanceof DeltaFormatError) throw new LarchError(err instanceof DeltaUnsupportedError ? 'DELTA_UNSUPPORTED' : 'DELTA_CORRUPT', `delta ${name}: ${err.message}`, { data: { name } });
    throw err;
  }
}

export const deltaList: Command = {
  name: 'delta list',
  summary: 'list the deltas stored in a repo',
  options: { ...REPO_OPTION },
  help: `NAME
  larch delta list - list the deltas stored in a repo

SYNOPSIS
  larch delta list --repo R [--json]

DESCRIPTION
  One line per delta in R/deltas/: FROM (or 'empty') -> TO, size in bytes, number of parts.

OPTIONS
  --repo R   repository (required)
  --json     print [{"name", "from", "to", "created", "bytes", "parts": [...], "signed"}]

EXIT STATUS
  0 listed; 2 usage; 3 (NOT_FOUND) no repo; 5 (DELTA_CORRUPT) a damaged delta.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'delta list');
    const out = [];
    for (const name of await listDeltaNames(repo.path)) out.push(await describe((await openDeltaDir(join(repo.path, 'deltas', name))).envelope, name));
    if (args.json) return printJson(io, out);
    for (const d of out) io.out(`${(d.from ?? 'empty').slice(0, 12)} -> ${d.to.slice(0, 12)}  ${String(d.bytes).padStart(12)} bytes  ${d.parts.length} part(s)\n`);
  },
};

export const deltaShow: Command = {
  name: 'delta show',
  summary: 'describe one delta (in a repo, or a delta file)',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch delta show - describe one delta

SYNOPSIS
  larch delta show (--repo R NAME | FILE) [--json]

DESCRIPTION
  Prints a delta's base and target commits, creation time, total size and its parts
  (compressed and raw size, number of objects, checksum).

OPTIONS
  --repo R   look NAME up in R/deltas/
  --json     print {"name", "format", "from", "to", "created", "bytes", "parts": [{"size",
             "raw", "objects", "sha256", "scratch"}...], "signed"}

EXIT STATUS
  0 printed; 2 usage; 3 (NOT_FOUND) no repo, delta or FILE; 5 (DELTA_CORRUPT) not a delta,
  (DELTA_UNSUPPORTED) a delta of a format newer than this larch reads.
`,
  async run(args, io) {
    const [what] = positionals(args, ['delta'], 'delta show');
    const repoPath = opt(args, 'repo');
    const source = repoPath ? await openDeltaDir(join(repoPath, 'deltas', what)) : await openDeltaFile(what);
    const d = await describe(source.envelope, what);
    if (args.json) return printJson(io, d);
    io.out(`delta  ${d.name}\nformat ${d.format}\nfrom   ${d.from ?? '(none: from scratch)'}\nto     ${d.to}\ncreated ${d.created}\nbytes  ${d.bytes}\n`);
    d.parts.forEach((p, i) => io.out(`part ${i}: ${p.size} bytes (${p.raw} raw), ${p.objects} objects, sha256 ${p.sha256}\n`));
  },
};

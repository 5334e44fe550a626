/** larch bundle create: one signed file a device upgrades from with no network (docs/formats.md §8.7). */
import { LarchError } from '../../errors.ts';
import { createBundle } from '../../server/bundle.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, need, opt, printJson } from '../command.ts';
import { formatBytes } from '../progress.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { parseDuration } from '../option-values.ts';

/** An air-gapped device may read the stick weeks after it was made. */
const DEFAULT_BUNDLE_EXPIRES_IN = '90d';

export const bundleCreate: Command = {
  name: 'bundle create',
  summary: 'write one signed file a device upgrades from with no network',
  options: { ...REPO_OPTION, ref: { type: 'string' }, from: { type: 'string', multiple: true }, to: { type: 'string' }, 'sign-key': { type: 'string', multiple: true }, 'expires-in': { type: 'string' }, out: { type: 'string' } },
  help: `NAME
  larch bundle create - write one signed file a device upgrades from with no network

SYNOPSIS
  larch bundle create --repo R --ref REF [--from RELEASE]... [--to RELEASE] --sign-key K.key
                      [--expires-in DURATION] --out FILE [--json]

DESCRIPTION
  Writes FILE (by convention NAME.larchb): a summary signed for the bundle alone, naming REF
  at the target release (default its head) and the deltas to it from each --from release
  (none: one delta from nothing, for any device), R's trust documents, and the deltas'
  files. A device reads it as it reads a repo over HTTP (the same signature, expiry, delta
  and commit checks): 'larch upgrade --from-file FILE'. Deltas not in R/deltas/ yet are
  generated there (signed with --sign-key). A RELEASE is a version on REF's history or a
  revision (commit id, unique prefix). FILE is written through a temporary file and renamed.

OPTIONS
  --repo R              the vendor repository (required)
  --ref REF             the ref devices follow (required)
  --from RELEASE        a release the devices run (repeatable)
  --to RELEASE          the release to bundle (default: REF's head)
  --sign-key K.key      sign the summary (and new deltas) (required; repeatable)
  --expires-in DURATION how long devices accept the bundle's summary (default ${DEFAULT_BUNDLE_EXPIRES_IN})
  --out FILE            where to write the bundle (required)
  --json                print {"path", "ref", "commit", "version", "deltas": [{"from", "to",
                        "bytes", "generated"}], "bytes", "serial", "expires_s"}

EXIT STATUS
  0 written; 2 usage; 3 (NOT_FOUND) no such ref or release; 6 (SIGNATURE_MISSING) no key,
  (SIGNATURE_INVALID) the keys are not the summary role of R's trust document; 7 (LOCKED)
  another writer holds R; 8 (NO_SPACE).

EXAMPLES
  larch bundle create --repo /srv/larch --ref os/stable --from 2026.1 --from 2026.2 \\
      --sign-key vendor.key --out /media/usb/larch-update/2026.3.larchb
`,
  async run(args, io) {
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0) throw new LarchError('USAGE', 'bundle create: --sign-key is required (devices refuse unsigned summaries)', { hint: "make a key with 'larch keygen --out NAME'", data: { command: 'bundle create', option: 'sign-key' } });
    const repo = await openRepo(args, 'bundle create');
    const r = await createBundle(repo, {
      ref: need(args, 'ref', 'bundle create'),
      from: list(args, 'from'),
      to: opt(args, 'to'),
      signKeys: await Promise.all(keyFiles.map(readSecretKey)),
      expiresInSeconds: parseDuration(opt(args, 'expires-in') ?? DEFAULT_BUNDLE_EXPIRES_IN, '--expires-in'),
      out: need(args, 'out', 'bundle create'),
    });
    if (args.json) return printJson(io, r);
    io.out(`${r.path}: ${r.ref} version ${r.version} (${r.commit.slice(0, 12)}), ${r.deltas.length} delta(s) from ${r.deltas.map((d) => d.from?.slice(0, 12) ?? 'nothing').join(', ')}; ${formatBytes(r.bytes)}\n`);
  },
};

export const bundleCommands: Command[] = [bundleCreate];

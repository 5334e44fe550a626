/** larch publish: write the repo's signed summary so a static web server can serve it to devices. */
import { LarchError } from '../../errors.ts';
import { publish as publishSummary } from '../../server/publish.ts';
import { isoTime } from '../../protocol/summary.ts';
import { readSecretKey } from '../../store/sign.ts';
import { type Command, list, opt, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';
import { DEFAULT_EXPIRES_IN, parseDuration } from '../option-values.ts';

export const publish: Command = {
  name: 'publish',
  summary: "write the repo's signed summary (refs, deltas, expiry) for devices",
  options: { ...REPO_OPTION, 'sign-key': { type: 'string', multiple: true }, 'expires-in': { type: 'string' } },
  help: `NAME
  larch publish - write the repo's signed summary (refs, deltas, expiry) for devices

SYNOPSIS
  larch publish --repo R --sign-key K.key [--sign-key K2.key]... [--expires-in DURATION] [--json]

DESCRIPTION
  Writes R/summary and R/summary.sig, each atomically: every branch of R with its commit,
  version and timestamp, and every delta in R/deltas/ that leads to a branch's commit, with
  its envelope's and parts' sizes and SHA-256. Any static web server (or 'larch serve')
  then serves R to devices, which read the summary first.
  Devices refuse a summary past its expiry (a frozen or stale mirror) and one whose serial
  is lower than the last they saw (a rollback), so publish again before it expires, e.g.
  from cron, and after every commit or delta. The serial is max(previous + 1, now in
  seconds). Deltas that lead to no branch, with a part missing, unsigned, or not signed by a
  --sign-key (or a key of R's keyring, 'larch trust') are left out and named on stderr: a
  device would refuse them instead of fetching the commit object by object.
  The barrier releases declared with 'larch barrier add' (R/barriers.json) are listed with
  their ref, and the deltas leading to them too.

OPTIONS
  --repo R              repository to publish (archive mode, to be served) (required)
  --sign-key K.key      sign the summary (required; repeatable)
  --expires-in DURATION how long devices accept this summary: seconds, or a number with
                        s, m, h, d or w (default ${DEFAULT_EXPIRES_IN})
  --json                print {"path", "serial", "created", "expires", "refs", "deltas",
                        "skipped": [{"name", "reason", "message"}], "signed_by"}; reason is
                        one of unreadable, malformed, incomplete, no_ref, unsigned, untrusted

EXIT STATUS
  0 written; 6 (SIGNATURE_MISSING) no --sign-key; 7 (LOCKED) another writer holds R.

EXAMPLES
  larch publish --repo /srv/larch --sign-key vendor.key --expires-in 3d
`,
  async run(args, io) {
    const expiresInSeconds = parseDuration(opt(args, 'expires-in') ?? DEFAULT_EXPIRES_IN, '--expires-in');
    const keyFiles = list(args, 'sign-key');
    if (keyFiles.length === 0) throw new LarchError('USAGE', 'publish: --sign-key is required (devices refuse unsigned summaries)', { hint: "make a key with 'larch keygen --out NAME'", data: { command: 'publish', option: 'sign-key' } });
    const repo = await openRepo(args, 'publish');
    const signKeys = await Promise.all(keyFiles.map(readSecretKey));
    const r = await publishSummary(repo, { signKeys, expiresInSeconds });
    // The summary holds seconds (formats.md §11); --json names them so.
    const seconds = <T extends { timestamp: number }>({ timestamp, ...rest }: T) => ({ ...rest, timestamp_s: timestamp });
    if (args.json) return printJson(io, { ...r, refs: Object.fromEntries(Object.entries(r.refs).map(([name, ref]) => [name, { ...seconds(ref), ...(ref.barriers ? { barriers: ref.barriers.map(seconds) } : {}) }])) });
    io.out(`${r.path}: serial ${r.serial}, ${Object.keys(r.refs).length} ref(s), ${r.deltas.length} delta(s); expires ${isoTime(r.expires_s)}; signed by ${r.signed_by.join(', ')}\n`);
    for (const s of r.skipped) io.err(`larch: publish: delta ${s.name} left out (${s.reason}): ${s.message}\n`);
  },
};

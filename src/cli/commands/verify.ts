/** larch verify / sign / trust: commit signatures and the keyring. */
import { LarchError } from '../../errors.ts';
import { readTrustedKeys, trustKey } from '../../store/keyring.ts';
import { readPublicKey, readSecretKey } from '../../store/sign.ts';
import { addSignatures, verifyCommit } from '../../store/signatures.ts';
import { type Command, list, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

export const verify: Command = {
  name: 'verify',
  summary: 'check that a commit is signed by a trusted key',
  options: { ...REPO_OPTION, key: { type: 'string', multiple: true } },
  positionals: true,
  help: `NAME
  larch verify - check that a commit is signed by a trusted key

SYNOPSIS
  larch verify --repo R [--key K.pub]... REV [--json]

DESCRIPTION
  Exits 0 only when REV carries a valid ed25519 signature by one of the given public keys
  (or, with no --key, by a key in the repo's keyring, R/keys/trusted/). A signature by any
  other key, or no signature at all, exits 6; a commit changed after signing no longer matches
  its id and exits 5 (OBJECT_CORRUPT).

OPTIONS
  --repo R      repository (required)
  --key K.pub   trust this public key (repeatable)
  --json        print {"commit", "valid", "signatures": [{"key_id", "trusted", "valid"}]}

EXIT STATUS
  0 valid signature by a trusted key; 6 (SIGNATURE_INVALID / SIGNATURE_MISSING) when there is
  none; 3 when REV does not exist; 5 when the commit object is corrupt.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'verify');
    const [rev] = positionals(args, ['rev'], 'verify');
    const commit = await repo.resolveRev(rev);
    const keyFiles = list(args, 'key');
    const trusted = keyFiles.length > 0 ? await Promise.all(keyFiles.map(readPublicKey)) : (await readTrustedKeys(repo)).map((k) => k.key);
    if (trusted.length === 0) throw new LarchError('USAGE', 'verify: no trusted keys to check the signature with', { hint: "pass --key K.pub or add keys with 'larch trust'", data: { keys: 0 } });
    const result = await verifyCommit(repo, commit, trusted);
    if (!result.valid) {
      const data = { commit, signatures: result.signatures };
      if (result.signatures.length === 0) throw new LarchError('SIGNATURE_MISSING', `commit ${commit} is not signed`, { data });
      throw new LarchError('SIGNATURE_INVALID', `commit ${commit} has no valid signature by a trusted key (signed by ${result.signatures.map((s) => `${s.key_id}${s.valid ? '' : ' (bad)'}`).join(', ')})`, { data });
    }
    if (args.json) printJson(io, result);
    else io.out(`commit ${commit}: good signature by ${result.signatures.filter((s) => s.trusted && s.valid).map((s) => s.key_id).join(', ')}\n`);
  },
};

export const sign: Command = {
  name: 'sign',
  summary: 'add a signature to an existing commit',
  options: { ...REPO_OPTION, 'sign-key': { type: 'string', multiple: true } },
  positionals: true,
  help: `NAME
  larch sign - add a signature to an existing commit

SYNOPSIS
  larch sign --repo R --sign-key K.key... REV [--json]

DESCRIPTION
  Signs REV with each secret key and stores the signatures beside the commit (signing
  again with the same key replaces its signature). The commit id does not change.

OPTIONS
  --repo R           repository (required)
  --sign-key K.key   secret key (required, repeatable)
  --json             print {"commit", "signed_by"}

EXIT STATUS
  0 signed; 2 usage; 3 (NOT_FOUND) no repo or REV; 6 (KEY_INVALID) not a secret key; 7 (LOCKED) repo locked.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'sign');
    const [rev] = positionals(args, ['rev'], 'sign');
    const keys = await Promise.all(list(args, 'sign-key').map(readSecretKey));
    if (keys.length === 0) throw new LarchError('USAGE', 'sign: --sign-key is required', { data: { command: 'sign', option: 'sign-key' } });
    const commit = await repo.resolveRev(rev);
    const signedBy = await addSignatures(repo, commit, keys);
    if (args.json) printJson(io, { commit, signed_by: signedBy });
    else io.out(`commit ${commit}: signed by ${signedBy.join(', ')}\n`);
  },
};

export const trust: Command = {
  name: 'trust',
  summary: "add public keys to a repo's keyring, or list it",
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch trust - add public keys to a repo's keyring, or list it

SYNOPSIS
  larch trust --repo R [K.pub...] [--json]

DESCRIPTION
  Copies each public key into R/keys/trusted/KEYID.pub. With no key, lists the keyring.
  'larch verify' without --key trusts exactly these keys. The signed trust document that
  devices follow has its own subcommands: larch trust create, sign, rotate, show, publish,
  install (larch trust SUBCOMMAND --help).

OPTIONS
  --repo R   repository (required)
  --json     print [{"id", "path"}]

EXIT STATUS
  0 listed or added; 2 usage; 3 (NOT_FOUND) no repo or key file; 6 (KEY_INVALID) not a public key.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'trust');
    for (const p of args.positionals) await trustKey(repo, p);
    const keys = await readTrustedKeys(repo);
    if (args.json) printJson(io, keys.map((k) => ({ id: k.id, path: k.path })));
    else for (const k of keys) io.out(`${k.id}  ${k.path}\n`);
  },
};

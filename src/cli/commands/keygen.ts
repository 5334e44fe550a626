/** larch keygen: make an ed25519 key pair. */
import { generateKey, keyId, writeKeyPair } from '../../store/sign.ts';
import { type Command, need, printJson } from '../command.ts';

export const keygen: Command = {
  name: 'keygen',
  summary: 'make an ed25519 signing key pair (NAME.key, NAME.pub)',
  options: { out: { type: 'string' } },
  help: `NAME
  larch keygen - make an ed25519 signing key pair

SYNOPSIS
  larch keygen --out NAME [--json]

DESCRIPTION
  Writes NAME.key (the secret key, mode 0600) and NAME.pub (the public key that devices
  and 'larch verify' trust). Each is one line of text. Existing files are never
  overwritten. Keep NAME.key off devices and out of version control.

OPTIONS
  --out NAME   path prefix of the two files (required)
  --json       print {"secret", "public", "key_id"}

EXIT STATUS
  0 written; 11 (EXISTS) when NAME.key or NAME.pub already exists.
`,
  async run(args, io) {
    const key = await generateKey();
    const files = await writeKeyPair(need(args, 'out', 'keygen'), key);
    if (args.json) printJson(io, { ...files, key_id: keyId(key.publicKey) });
    else io.out(`Wrote ${files.secret} and ${files.public} (key id ${keyId(key.publicKey)})\n`);
  },
};

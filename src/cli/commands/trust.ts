/**
 * larch trust create / sign / rotate / show / publish / install: the signed trust document
 * (docs/formats.md §15) on the vendor's side (make, sign, rotate, publish into a repo) and on the
 * device (install by hand, show). `larch trust --repo R [K.pub]` (the repo keyring) is verify.ts's.
 */
import { readFile } from 'node:fs/promises';
import { LarchError, fromSystemError } from '../../errors.ts';
import { writeFileAtomic } from '../../_durable.ts';
import { DEFAULT_SYSROOT, Sysroot } from '../../agent/sysroot.ts';
import { withDeviceLock } from '../../agent/device-lock.ts';
import { ORIGIN, remoteNamed, scopeOf } from '../../agent/remotes.ts';
import { installTrust, readDeviceTrust, trustStatus } from '../../agent/trust-store.ts';
import { publishTrust } from '../../server/trust-repo.ts';
import { keyId, readPublicKey, readSecretKey } from '../../store/sign.ts';
import { ROLES, type Role, type SignedTrust, type TrustDocument, TrustFormatError, addTrustSignatures, createSignedTrust, decodeSignedTrust, keysWithRoles, validSigners } from '../../protocol/trust.ts';
import { type Command, type Io, type ParsedArgs, intOption, list, need, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, openRepo } from './_repo.ts';

const KEY_LIST = { type: 'string', multiple: true } as const;

async function readTrustFile(path: string): Promise<{ bytes: Uint8Array; trust: SignedTrust }> {
  const bytes = await readFile(path).catch((err) => Promise.reject(fromSystemError(err, 'read trust document', path)));
  try {
    return { bytes: Uint8Array.from(bytes), trust: decodeSignedTrust(bytes) };
  } catch (err) {
    if (!(err instanceof TrustFormatError)) throw err;
    throw new LarchError('INVALID_INPUT', `'${path}' is not a larch trust document: ${err.message}`, { hint: "make one with 'larch trust create'", data: { path } });
  }
}

function roleOf(value: string, cmd: string, option: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) throw new LarchError('USAGE', `${cmd}: --${option}: unknown role '${value}'`, { hint: `one of ${ROLES.join(', ')}`, data: { command: cmd, option, value } });
  return value as Role;
}

/** --threshold ROLE=N, repeatable. */
function thresholds(args: ParsedArgs, cmd: string): Partial<Record<Role, number>> {
  const out: Partial<Record<Role, number>> = {};
  for (const t of list(args, 'threshold')) {
    const m = /^([a-z]+)=(\d+)$/.exec(t);
    if (!m) throw new LarchError('USAGE', `${cmd}: --threshold must be ROLE=N, got '${t}'`, { hint: 'e.g. --threshold root=2', data: { command: cmd, option: 'threshold', value: t } });
    out[roleOf(m[1], cmd, 'threshold')] = intOption(m[2], 'threshold', cmd, 1)!;
  }
  return out;
}

/** A document the CLI made is checked as it is encoded: say what is wrong as a usage error. */
async function build(doc: TrustDocument, signKeys: string[], cmd: string): Promise<Uint8Array> {
  const keys = await Promise.all(signKeys.map(readSecretKey));
  try {
    return await createSignedTrust(doc, keys);
  } catch (err) {
    if (err instanceof TrustFormatError) throw new LarchError('USAGE', `${cmd}: ${err.message}`, { hint: `run 'larch ${cmd} --help'`, data: { command: cmd } });
    throw err;
  }
}

/** create and rotate: sign doc with --sign-key, write it to a new file, print what it is. */
async function writeDocument(args: ParsedArgs, io: Io, out: string, doc: TrustDocument, cmd: string): Promise<void> {
  const bytes = await build(doc, list(args, 'sign-key'), cmd);
  await writeNew(out, bytes);
  const info = { path: out, ...(await describe(decodeSignedTrust(bytes))) };
  if (args.json) printJson(io, info);
  else printDoc(io, info);
}

/** What a signed document says, for --json and the text form; signed_by: the keys whose signature verifies. */
async function describe(t: SignedTrust) {
  const signers = await validSigners(t, t.signatures.map((s) => s.key));
  const d = t.document;
  return {
    version: d.version,
    min_release: d.minRelease ?? null,
    roles: Object.fromEntries(ROLES.map((r) => [r, { keys: d.roles[r].keys.map(keyId), threshold: d.roles[r].threshold }])),
    keys: keysWithRoles(d).map((k) => ({ id: k.id, roles: k.roles })),
    signed_by: signers,
  };
}

function printDoc(io: Io, info: Awaited<ReturnType<typeof describe>>): void {
  io.out(`trust document version ${info.version}${info.min_release !== null ? `, min_release ${info.min_release}` : ''}\n`);
  for (const r of ROLES) io.out(`  ${r.padEnd(8)} threshold ${info.roles[r].threshold} of ${info.roles[r].keys.join(', ')}\n`);
  io.out(`  signed by ${info.signed_by.length > 0 ? info.signed_by.join(', ') : '(nobody yet)'}\n`);
}

const EXIT = `EXIT STATUS
  0 done; 2 usage; 3 (NOT_FOUND) a file; 4 (INVALID_INPUT) not a trust document; 6 (KEY_INVALID,
  SIGNATURE_INVALID with data.reason) a key file, or a document the chain refuses.`;

export const trustCreate: Command = {
  name: 'trust create',
  summary: 'make a trust document: the keys and threshold of each role',
  options: { out: { type: 'string' }, root: KEY_LIST, commit: KEY_LIST, summary: KEY_LIST, command: KEY_LIST, threshold: KEY_LIST, 'min-release': { type: 'string' }, version: { type: 'string' }, 'sign-key': KEY_LIST },
  help: `NAME
  larch trust create - make a trust document: the keys and threshold of each role

SYNOPSIS
  larch trust create --out T.trust --root K.pub... --commit K.pub... --summary K.pub...
                     --command K.pub... [--threshold ROLE=N]... [--min-release N]
                     [--version N] [--sign-key K.key]... [--json]

DESCRIPTION
  Writes a trust document (docs/formats.md §15): which keys may sign commits and deltas
  (commit), summaries and MQTT announcements (summary), device commands (command), and the
  next trust document (root), each role with a threshold (default 1). Signed by each
  --sign-key; add signatures later with 'larch trust sign'. Devices accept the first one
  when its root threshold signed it and a key they were provisioned with (provision --keys)
  signed it too; keep the root keys offline.

OPTIONS
  --out T.trust         where to write it (never overwritten)
  --root, --commit, --summary, --command K.pub   the role's public keys (each role needs one)
  --threshold ROLE=N    signatures by distinct keys of ROLE needed (repeatable; default 1)
  --min-release N       the vendor's floor for 'upgrade --allow-downgrade' (larch.release)
  --version N           the document's version (default 1; a repo's chain starts at 1)
  --sign-key K.key      sign it (repeatable)
  --json                print {"path", "version", "min_release", "roles", "keys", "signed_by"}

${EXIT} 11 (EXISTS) --out exists.

EXAMPLES
  larch trust create --out v1.trust --root root.pub --commit os.pub --summary os.pub \\
      --command ops.pub --sign-key root.key --sign-key os.key
`,
  async run(args, io) {
    const cmd = 'trust create';
    const out = need(args, 'out', cmd);
    const th = thresholds(args, cmd);
    const roles = {} as TrustDocument['roles'];
    for (const r of ROLES) roles[r] = { keys: await Promise.all(list(args, r).map(readPublicKey)), threshold: th[r] ?? 1 };
    const doc: TrustDocument = { version: intOption(opt(args, 'version'), 'version', cmd, 1) ?? 1, roles };
    const min = intOption(opt(args, 'min-release'), 'min-release', cmd, 0);
    if (min !== undefined) doc.minRelease = min;
    await writeDocument(args, io, out, doc, cmd);
  },
};

async function writeNew(path: string, bytes: Uint8Array): Promise<void> {
  const exists = await readFile(path).then(() => true, () => false);
  if (exists) throw new LarchError('EXISTS', `'${path}' already exists; larch trust never overwrites a trust document`, { hint: 'choose another --out', data: { path } });
  await writeFileAtomic(path, bytes);
}

export const trustSign: Command = {
  name: 'trust sign',
  summary: 'add signatures to a trust document',
  options: { 'sign-key': KEY_LIST },
  positionals: true,
  help: `NAME
  larch trust sign - add signatures to a trust document

SYNOPSIS
  larch trust sign T.trust --sign-key K.key... [--json]

DESCRIPTION
  Signs T.trust (in place) with each secret key; signing again with a key replaces its
  signature. A rotation needs the threshold of the current root keys and of the new ones.

OPTIONS
  --sign-key K.key   secret key (required, repeatable)
  --json             print {"path", "version", "min_release", "roles", "keys", "signed_by"}

${EXIT}
`,
  async run(args, io) {
    const [path] = positionals(args, ['trust'], 'trust sign');
    const keys = await Promise.all(list(args, 'sign-key').map(readSecretKey));
    if (keys.length === 0) throw new LarchError('USAGE', 'trust sign: --sign-key is required', { data: { command: 'trust sign', option: 'sign-key' } });
    const { bytes } = await readTrustFile(path);
    const signed = await addTrustSignatures(bytes, keys);
    await writeFileAtomic(path, signed);
    const t = decodeSignedTrust(signed);
    const info = { path, ...(await describe(t)) };
    if (args.json) printJson(io, info);
    else io.out(`${path}: version ${info.version} signed by ${info.signed_by.join(', ')}\n`);
  },
};

export const trustRotate: Command = {
  name: 'trust rotate',
  summary: 'make the next trust document: add, revoke keys, change thresholds',
  options: { out: { type: 'string' }, add: KEY_LIST, revoke: KEY_LIST, threshold: KEY_LIST, 'min-release': { type: 'string' }, 'sign-key': KEY_LIST },
  positionals: true,
  help: `NAME
  larch trust rotate - make the next trust document: add, revoke keys, change thresholds

SYNOPSIS
  larch trust rotate T.trust --out NEW.trust [--add ROLE=K.pub]... [--revoke KEYID|K.pub]...
                     [--threshold ROLE=N]... [--min-release N] [--sign-key K.key]... [--json]

DESCRIPTION
  Writes NEW.trust: T.trust's roles with the changes, version + 1, with no signature but
  those of --sign-key. Devices accept it only when signed by a threshold of T.trust's root
  keys AND a threshold of NEW.trust's root keys: sign it with both (here or with
  'larch trust sign'). A revoked key leaves every role: what it alone signs is refused
  from the device's next check on.

OPTIONS
  --out NEW.trust       where to write it (never overwritten)
  --add ROLE=K.pub      add a key to a role (repeatable)
  --revoke KEYID|K.pub  remove a key from every role (repeatable)
  --threshold ROLE=N    a role's new threshold (repeatable)
  --min-release N       the vendor's floor for 'upgrade --allow-downgrade'
  --sign-key K.key      sign it (repeatable)
  --json                print {"path", "version", "min_release", "roles", "keys", "signed_by"}

${EXIT} 11 (EXISTS) --out exists.

EXAMPLES
  larch trust rotate v1.trust --out v2.trust --add commit=k2.pub --revoke k1.pub \\
      --sign-key root.key
`,
  async run(args, io) {
    const cmd = 'trust rotate';
    const [path] = positionals(args, ['trust'], cmd);
    const out = need(args, 'out', cmd);
    const { trust } = await readTrustFile(path);
    const roles = Object.fromEntries(ROLES.map((r) => [r, { ...trust.document.roles[r], keys: [...trust.document.roles[r].keys] }])) as TrustDocument['roles'];
    for (const a of list(args, 'add')) {
      const m = /^([a-z]+)=(.+)$/.exec(a);
      if (!m) throw new LarchError('USAGE', `${cmd}: --add must be ROLE=K.pub, got '${a}'`, { hint: 'e.g. --add commit=k2.pub', data: { command: cmd, option: 'add', value: a } });
      const key = await readPublicKey(m[2]);
      const role = roles[roleOf(m[1], cmd, 'add')];
      if (!role.keys.some((k) => Buffer.from(k).equals(Buffer.from(key)))) role.keys.push(key);
    }
    for (const r of list(args, 'revoke')) {
      const id = /^[0-9a-f]{16}$/.test(r) ? r : keyId(await readPublicKey(r));
      const held = ROLES.some((role) => roles[role].keys.some((k) => keyId(k) === id));
      if (!held) throw new LarchError('USAGE', `${cmd}: --revoke ${r}: key ${id} is in no role of ${path}`, { hint: "'larch trust show T.trust' lists the key ids", data: { command: cmd, option: 'revoke', value: r, key_id: id } });
      for (const role of ROLES) roles[role].keys = roles[role].keys.filter((k) => keyId(k) !== id);
    }
    for (const [r, n] of Object.entries(thresholds(args, cmd))) roles[r as Role].threshold = n;
    const doc: TrustDocument = { version: trust.document.version + 1, roles };
    const min = intOption(opt(args, 'min-release'), 'min-release', cmd, 0) ?? trust.document.minRelease;
    if (min !== undefined) doc.minRelease = min;
    await writeDocument(args, io, out, doc, cmd);
  },
};

export const trustShow: Command = {
  name: 'trust show',
  summary: "show a trust document, or the device's trust",
  options: { sysroot: { type: 'string' } },
  positionals: true,
  help: `NAME
  larch trust show - show a trust document, or the device's trust

SYNOPSIS
  larch trust show T.trust [--json]
  larch trust show --sysroot S [--json]

DESCRIPTION
  Prints a trust document's version, each role's keys (key ids) and threshold, and who
  signed it; with --sysroot, the trust the device holds (S/larch/trust.cbor). A device
  without a trust document trusts the keys it was provisioned with for every role, with
  threshold 1: then version is null.

OPTIONS
  --sysroot S   the device (default ${DEFAULT_SYSROOT} when no T.trust is given)
  --json        print {"version", "min_release", "roles": {ROLE: {"keys", "threshold"}},
                "keys": [{"id", "roles"}], "signed_by"}; for a device without a trust
                document {"version": null, "keys": [{"id", "roles"}]}

${EXIT}
`,
  async run(args, io) {
    if (args.positionals.length > 0) {
      const [path] = positionals(args, ['trust'], 'trust show');
      const { trust } = await readTrustFile(path);
      const info = await describe(trust);
      if (args.json) printJson(io, info);
      else printDoc(io, info);
      return;
    }
    const sysroot = new Sysroot(opt(args, 'sysroot') ?? DEFAULT_SYSROOT);
    await sysroot.readConfig();
    const device = await readDeviceTrust(sysroot);
    if (device.bytes) {
      const t = decodeSignedTrust(device.bytes);
      const info = await describe(t);
      if (args.json) printJson(io, info);
      else printDoc(io, info);
      return;
    }
    const status = await trustStatus(sysroot);
    if (args.json) printJson(io, status);
    else io.out(`no trust document: the provisioned keys count for every role (threshold 1): ${status.keys.map((k) => k.id).join(', ')}\n`);
  },
};

export const trustPublish: Command = {
  name: 'trust publish',
  summary: "add a trust document to a repo's chain (R/trust/N.cbor)",
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch trust publish - add a trust document to a repo's chain (R/trust/N.cbor)

SYNOPSIS
  larch trust publish --repo R T.trust [--json]

DESCRIPTION
  Copies T.trust to R/trust/N.cbor, N its version, after checking it as devices will: the
  chain starts at version 1 and has no gap, and each version is signed by a threshold of
  the root keys of the one before and of its own. The next 'larch publish' names it in
  the summary (trust_version) and must be signed by its summary role; devices walk the
  chain up to it (over HTTP, MQTT or a directory) before they trust that summary.

OPTIONS
  --repo R   repository (required)
  --json     print {"version", "path", "installed"}

${EXIT} 7 (LOCKED) repo locked.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'trust publish');
    const [path] = positionals(args, ['trust'], 'trust publish');
    const { bytes } = await readTrustFile(path);
    const r = await publishTrust(repo, bytes, path);
    if (args.json) printJson(io, r);
    else io.out(r.installed ? `trust document version ${r.version} published as ${r.path}; run 'larch publish' so the summary names it\n` : `${r.path} is this document already\n`);
  },
};

export const trustInstall: Command = {
  name: 'trust install',
  summary: 'give a device a trust document by hand',
  options: { sysroot: { type: 'string' }, remote: { type: 'string' } },
  positionals: true,
  help: `NAME
  larch trust install - give a device a trust document by hand

SYNOPSIS
  larch trust install [--sysroot S] [--remote NAME] T.trust [--json]

DESCRIPTION
  Checks T.trust against the device's trust and stores it (S/larch/trust.cbor): a higher
  version than the device's, signed by a threshold of the device's current root keys and
  a threshold of its own root keys. A device with no trust document yet accepts one signed
  by its own root threshold and by at least one key it was provisioned with (S/larch/keys):
  the provisioned keys vouch for the first. The same document again changes nothing.
  With --remote NAME, the trust of that remote instead (one added with its own --keys:
  S/larch/remotes/NAME/trust.cbor, vouched for by S/larch/remotes/NAME/keys).

OPTIONS
  --sysroot S   the device (default ${DEFAULT_SYSROOT})
  --remote NAME a remote with trust of its own (larch remote list; default origin)
  --json        print {"installed", "version", "previous"}

${EXIT} 3 (NOT_FOUND) not provisioned, no such remote; 14 (REFUSED) the remote shares the
  origin's trust; 7 (LOCKED) another larch holds the device.
`,
  async run(args, io) {
    const [path] = positionals(args, ['trust'], 'trust install');
    const sysroot = new Sysroot(opt(args, 'sysroot') ?? DEFAULT_SYSROOT);
    const config = await sysroot.readConfig();
    const name = opt(args, 'remote') ?? ORIGIN;
    const entry = remoteNamed(config, name);
    if (name !== ORIGIN && entry.trust !== 'own') throw new LarchError('REFUSED', `remote '${name}' has no trust of its own: it shares the origin's (it was added without --keys)`, { hint: 'install the document without --remote', data: { reason: 'shared-trust', remote: name } });
    const { bytes } = await readTrustFile(path);
    const r = await withDeviceLock(sysroot, 'larch trust install', () => installTrust(sysroot, bytes, path, scopeOf(sysroot, name, entry)));
    if (args.json) printJson(io, r);
    else io.out(r.installed ? `trust document version ${r.version} installed (was ${r.previous ?? 'none'})\n` : `trust document version ${r.version} is installed already\n`);
  },
};

export const trustCommands: Command[] = [trustCreate, trustSign, trustRotate, trustShow, trustPublish, trustInstall];

/**
 * MQTT topics and messages (docs/formats.md §13): the signed retained announcement of a ref's
 * newest commit, the signed command to one device, and the unsigned JSON a device publishes
 * (status, journal, command result). Pure: bytes and values in and out; the clock is passed in.
 *
 *   larch/v1/announce/REF            retained, QoS 1, signed envelope, body type "announce"
 *   larch/v1/device/ID/status        retained, QoS 1, JSON status; last will {"online": false}
 *   larch/v1/device/ID/journal       QoS 1, one JSON journal entry per message, in order
 *   larch/v1/device/ID/cmd           QoS 1, signed envelope, body type "command"
 *   larch/v1/device/ID/cmd/result    QoS 1, JSON result of each command (refusals too)
 *
 * Signed envelope (UTF-8 JSON text):
 *   {"body": TEXT, "sigs": [{"alg": "ed25519", "key": BASE64(32), "sig": BASE64(64)}, ...]}
 * TEXT is the body, itself JSON text, signed as the exact bytes sent (no re-serialisation, so
 * no canonical JSON is needed). Signed message: the ASCII domain ("larch-announce-v1:" or
 * "larch-command-v1:") ‖ SHA-256(UTF-8 bytes of TEXT), as the summary's (§10.1); the domain
 * keeps a command signature from being valid as an announcement, a summary or a commit one.
 */
import * as ed from '@noble/ed25519';
import { quash } from '../errors.ts';
import { sha256 } from '../_hash.ts';
import { type SecretKey, type Signature, keyId, verifyAnySignature } from '../store/sign.ts';

export const TOPIC_ROOT = 'larch/v1';
export const MESSAGE_FORMAT = 1;
/** Largest signed message a device reads (an announcement or a command is a few hundred bytes). */
export const MAX_SIGNED_BYTES = 64 * 1024;
/** A command may be valid for at most this long (bounds the nonce log: see NonceLog). */
export const MAX_COMMAND_WINDOW_S = 24 * 3600;
/** Clock skew tolerated between the operator's clock and the device's. */
export const DEFAULT_CLOCK_SKEW_S = 300;

export type SignedKind = 'announce' | 'command';
const DOMAINS: Record<SignedKind, string> = { announce: 'larch-announce-v1:', command: 'larch-command-v1:' };

export const COMMANDS = ['check', 'upgrade', 'rollback', 'reboot', 'cleanup', 'deploy', 'rebase', 'pin', 'unpin', 'cancel', 'install', 'uninstall'] as const;
export type CommandName = (typeof COMMANDS)[number];

const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const REF_RE = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;
const HEX64_RE = /^[0-9a-f]{64}$/;

/** A device id is one topic level: letters, digits, . _ - (1-128, not starting with . _ -). */
export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_RE.test(id);
}

export function announceTopic(ref: string): string {
  if (!REF_RE.test(ref) || ref.includes('..')) throw new RangeError(`'${quash(ref)}' is not a ref name that can be a topic`);
  return `${TOPIC_ROOT}/announce/${ref}`;
}

function deviceTopic(id: string, leaf: string): string {
  if (!isValidDeviceId(id)) throw new RangeError(`'${quash(id)}' is not a valid device id (letters, digits, . _ -; at most 128)`);
  return `${TOPIC_ROOT}/device/${id}/${leaf}`;
}
export const statusTopic = (id: string) => deviceTopic(id, 'status');
export const journalTopic = (id: string) => deviceTopic(id, 'journal');
export const commandTopic = (id: string) => deviceTopic(id, 'cmd');
export const commandResultTopic = (id: string) => deviceTopic(id, 'cmd/result');

/** The message a signature of `kind` signs: the domain, then SHA-256 of the body bytes. */
export function signingMessage(kind: SignedKind, bodyBytes: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(DOMAINS[kind], 'ascii'), Buffer.from(sha256(bodyBytes), 'hex')]);
}

/** Signs body text with every key and returns the envelope's bytes. */
export async function encodeSigned(kind: SignedKind, bodyText: string, keys: SecretKey[]): Promise<Uint8Array> {
  const message = signingMessage(kind, Buffer.from(bodyText, 'utf8'));
  const sigs = [];
  for (const k of keys) {
    const sig = await ed.signAsync(message, k.seed);
    sigs.push({ alg: 'ed25519', key: Buffer.from(k.publicKey).toString('base64'), sig: Buffer.from(sig).toString('base64') });
  }
  return Buffer.from(JSON.stringify({ body: bodyText, sigs }), 'utf8');
}

export type OpenResult =
  | { ok: true; body: unknown; bodyText: string; signedBy: string[] }
  | { ok: false; reason: 'too-large' | 'malformed' | 'unsigned' | 'untrusted' | 'invalid'; body?: unknown; keys?: string[] };

/**
 * Checks an envelope's signatures before its body is parsed. `ok` only when a trusted key's
 * signature verifies over this kind's message; `untrusted` when no entry is by a trusted key,
 * `invalid` when a trusted key's entry does not verify (tampered, or signed as another kind).
 * A refused message's body is parsed only for the report (`body`), never acted on.
 */
export async function openSigned(kind: SignedKind, payload: Uint8Array, trusted: Uint8Array[]): Promise<OpenResult> {
  if (payload.length > MAX_SIGNED_BYTES) return { ok: false, reason: 'too-large' };
  let env: unknown;
  try {
    env = JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (!isObject(env) || typeof env.body !== 'string') return { ok: false, reason: 'malformed' };
  const bodyText = env.body;
  const peek = () => {
    try {
      return JSON.parse(bodyText) as unknown;
    } catch {
      return undefined;
    }
  };
  if (env.sigs === undefined || (Array.isArray(env.sigs) && env.sigs.length === 0)) return { ok: false, reason: 'unsigned', body: peek() };
  const sigs = decodeSigs(env.sigs);
  if (!sigs) return { ok: false, reason: 'malformed', body: peek() };
  const trustedHex = new Set(trusted.map((k) => Buffer.from(k).toString('hex')));
  const byTrusted = sigs.filter((s) => trustedHex.has(Buffer.from(s.key).toString('hex')));
  if (byTrusted.length === 0) return { ok: false, reason: 'untrusted', body: peek(), keys: sigs.map((s) => keyId(s.key)) };
  const message = signingMessage(kind, Buffer.from(bodyText, 'utf8'));
  const signedBy: string[] = [];
  for (const s of byTrusted) if (await verifyAnySignature(message, [s], trusted)) signedBy.push(keyId(s.key));
  if (signedBy.length === 0) return { ok: false, reason: 'invalid', body: peek(), keys: byTrusted.map((s) => keyId(s.key)) };
  const body = peek();
  if (body === undefined) return { ok: false, reason: 'malformed' };
  return { ok: true, body, bodyText, signedBy };
}

function decodeSigs(v: unknown): Signature[] | null {
  if (!Array.isArray(v)) return null;
  const out: Signature[] = [];
  for (const item of v) {
    if (!isObject(item) || typeof item.alg !== 'string') return null;
    if (item.alg !== 'ed25519') continue; // a later version's algorithm: skipped, as in .sig files (§4)
    if (typeof item.key !== 'string' || typeof item.sig !== 'string') return null;
    const key = Buffer.from(item.key, 'base64');
    const sig = Buffer.from(item.sig, 'base64');
    if (key.length !== 32 || sig.length !== 64 || key.toString('base64') !== item.key || sig.toString('base64') !== item.sig) return null;
    out.push({ key: Uint8Array.from(key), sig: Uint8Array.from(sig) });
  }
  return out;
}

export class MessageFormatError extends Error {
  override name = 'MessageFormatError';
}
const fail = (m: string): never => {
  throw new MessageFormatError(m);
};
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const uint = (v: unknown, what: string): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : fail(`${what} is not an unsigned integer`));
const text = (v: unknown, what: string, max = 256): string => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : fail(`${what} is not a text of 1-${max} characters`));
function onlyKeys(o: Record<string, unknown>, allowed: string[], what: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${what} has an unknown key '${quash(k, 40)}'`);
}

/** An announcement: the ref's newest commit and how much of the fleet should take it now. */
export interface Announcement {
  ref: string;
  commit: string;
  version: string;
  /** The commit's timestamp, seconds since the epoch. */
  timestamp: number;
  /** Serial of the summary the announcement was made from: devices fetch one at least this new. */
  summarySerial: number;
  /** 0-100: devices whose rollout position (rolloutPosition) is below it act. */
  rollout: number;
  /** When the announcement was made, seconds since the epoch: a newer one replaces an older one. */
  created: number;
}

/** The body text of an announcement, keys in a fixed order. */
export function formatAnnouncement(a: Announcement): string {
  if (!(a.rollout >= 0 && a.rollout <= 100)) throw new RangeError(`rollout must be 0..100, got ${a.rollout}`);
  return JSON.stringify({ type: 'announce', format: MESSAGE_FORMAT, ref: a.ref, commit: a.commit, version: a.version, timestamp: a.timestamp, summary_serial: a.summarySerial, rollout: a.rollout, created: a.created });
}

/** @throws MessageFormatError */
export function parseAnnouncement(body: unknown): Announcement {
  if (!isObject(body)) fail('announcement is not a JSON object');
  const o = body as Record<string, unknown>;
  if (o.type !== 'announce') fail(`message type '${quash(String(o.type), 20)}' is not 'announce'`);
  if (o.format !== MESSAGE_FORMAT) fail(`announcement format ${quash(String(o.format), 20)} is not ${MESSAGE_FORMAT}`);
  onlyKeys(o, ['type', 'format', 'ref', 'commit', 'version', 'timestamp', 'summary_serial', 'rollout', 'created'], 'announcement');
  const ref = text(o.ref, 'ref', 255);
  if (!REF_RE.test(ref)) fail(`ref '${quash(ref)}' is not a valid ref name`);
  const commit = text(o.commit, 'commit', 64);
  if (!HEX64_RE.test(commit)) fail('commit is not 64 lowercase hex digits');
  const rollout = o.rollout;
  if (typeof rollout !== 'number' || !(rollout >= 0 && rollout <= 100)) fail('rollout is not a number from 0 to 100');
  return { ref, commit, version: text(o.version, 'version'), timestamp: uint(o.timestamp, 'timestamp'), summarySerial: uint(o.summary_serial, 'summary_serial'), rollout: rollout as number, created: uint(o.created, 'created') };
}

/**
 * The arguments of the commands that take some (formats.md §13.3), signed with the rest:
 * deploy {version, allow_downgrade?, retry_failed?}, rebase {ref, remote?}, install and
 * uninstall {packages}. The others take none.
 */
export type CommandArgs =
  | { version: string; allow_downgrade?: boolean; retry_failed?: boolean }
  | { ref: string; remote?: string }
  | { packages: string[] };

/** A signed command to one device. */
export interface DeviceCommand {
  cmd: CommandName;
  device: string;
  /** Random, 16-64 of [A-Za-z0-9_-]; a device runs a nonce at most once. */
  nonce: string;
  /** Seconds since the epoch. */
  issued: number;
  expires: number;
  /** Only for the commands that take arguments (COMMAND_ARGS); absent otherwise. */
  args?: CommandArgs;
}

/** A Debian package name (Debian Policy 5.6.7), as install and uninstall take them. */
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]+$/;
/** A remote name (agent/remotes.ts). */
const REMOTE_RE = /^[a-z0-9][a-z0-9_-]{0,31}$/;
const MAX_PACKAGES = 64;

/** The argument keys each command takes: required and optional. A command not listed takes none. */
export const COMMAND_ARGS: Partial<Record<CommandName, { required: string[]; optional: string[] }>> = {
  deploy: { required: ['version'], optional: ['allow_downgrade', 'retry_failed'] },
  rebase: { required: ['ref'], optional: ['remote'] },
  install: { required: ['packages'], optional: [] },
  uninstall: { required: ['packages'], optional: [] },
};

export function formatCommand(c: DeviceCommand): string {
  // A command without arguments is byte for byte what agents before `args` sign and read.
  return JSON.stringify({ type: 'command', format: MESSAGE_FORMAT, cmd: c.cmd, device: c.device, nonce: c.nonce, issued: c.issued, expires: c.expires, ...(c.args ? { args: c.args } : {}) });
}

/**
 * The arguments of cmd, checked: every required key, no unknown one, each value of its kind.
 * @throws MessageFormatError
 */
export function parseCommandArgs(cmd: CommandName, v: unknown): CommandArgs | undefined {
  const spec = COMMAND_ARGS[cmd];
  if (!spec) {
    if (v !== undefined) fail(`command '${cmd}' takes no arguments`);
    return undefined;
  }
  if (!isObject(v)) fail(`command '${cmd}' needs its arguments (args: {${spec.required.join(', ')}})`);
  const o = v as Record<string, unknown>;
  onlyKeys(o, [...spec.required, ...spec.optional], `${cmd} arguments`);
  for (const k of spec.required) if (o[k] === undefined) fail(`command '${cmd}': args.${k} is missing`);
  const bool = (k: string) => (o[k] === undefined || typeof o[k] === 'boolean' ? (o[k] as boolean | undefined) : fail(`args.${k} is not a boolean`));
  if (cmd === 'deploy') {
    const version = text(o.version, 'args.version', 128);
    const out: CommandArgs = { version };
    if (o.allow_downgrade !== undefined) out.allow_downgrade = bool('allow_downgrade');
    if (o.retry_failed !== undefined) out.retry_failed = bool('retry_failed');
    return out;
  }
  if (cmd === 'rebase') {
    const ref = text(o.ref, 'args.ref', 255);
    if (!REF_RE.test(ref) || ref.includes('..')) fail(`args.ref '${quash(ref)}' is not a valid ref name`);
    if (o.remote === undefined) return { ref };
    const remote = text(o.remote, 'args.remote', 32);
    if (!REMOTE_RE.test(remote)) fail(`args.remote '${quash(remote)}' is not a remote name`);
    return { ref, remote };
  }
  const packages = o.packages;
  if (!Array.isArray(packages) || packages.length === 0 || packages.length > MAX_PACKAGES) fail(`args.packages is not a list of 1-${MAX_PACKAGES} package names`);
  for (const p of packages as unknown[]) if (typeof p !== 'string' || p.length > 128 || !PACKAGE_RE.test(p)) fail(`args.packages: '${quash(String(p))}' is not a Debian package name`);
  return { packages: [...(packages as string[])] };
}

/** @throws MessageFormatError */
export function parseCommand(body: unknown): DeviceCommand {
  if (!isObject(body)) fail('command is not a JSON object');
  const o = body as Record<string, unknown>;
  if (o.type !== 'command') fail(`message type '${quash(String(o.type), 20)}' is not 'command'`);
  if (o.format !== MESSAGE_FORMAT) fail(`command format ${quash(String(o.format), 20)} is not ${MESSAGE_FORMAT}`);
  onlyKeys(o, ['type', 'format', 'cmd', 'device', 'nonce', 'issued', 'expires', 'args'], 'command');
  const cmd = text(o.cmd, 'cmd', 32);
  if (!(COMMANDS as readonly string[]).includes(cmd)) fail(`unknown command '${quash(cmd, 32)}' (known: ${COMMANDS.join(', ')})`);
  const device = text(o.device, 'device', 128);
  if (!isValidDeviceId(device)) fail('device is not a valid device id');
  const nonce = text(o.nonce, 'nonce', 64);
  if (!NONCE_RE.test(nonce)) fail('nonce is not 16-64 of [A-Za-z0-9_-]');
  const args = parseCommandArgs(cmd as CommandName, o.args);
  return { cmd: cmd as CommandName, device, nonce, issued: uint(o.issued, 'issued'), expires: uint(o.expires, 'expires'), ...(args ? { args } : {}) };
}

export type Freshness = 'fresh' | 'stale' | 'not-yet-valid' | 'window-too-long';

/**
 * Whether a command may run at `now` (the device's clock, seconds): issued no later than
 * now + skew, not expired (now < expires), and valid for at most MAX_COMMAND_WINDOW_S, so that a
 * device need remember a nonce only until its command expires.
 */
export function commandFreshness(c: Pick<DeviceCommand, 'issued' | 'expires'>, now: number, skewS = DEFAULT_CLOCK_SKEW_S): Freshness {
  if (c.expires <= c.issued || c.expires - c.issued > MAX_COMMAND_WINDOW_S) return 'window-too-long';
  if (c.issued > now + skewS) return 'not-yet-valid';
  if (now >= c.expires) return 'stale';
  return 'fresh';
}

/** What a device answers on cmd/result for each command it receives, run or refused. */
export interface CommandResult {
  format: 1;
  device: string;
  /** The command's nonce and name; null when the message was too broken to say. */
  nonce: string | null;
  cmd: string | null;
  result: 'ok' | 'refused' | 'error';
  /** refused: unsigned, untrusted, invalid, malformed, too-large, wrong-device, stale, not-yet-valid, window-too-long, replayed, threshold. */
  reason?: string;
  /** error: the LarchError code. */
  code?: string;
  message: string;
  output?: unknown;
  time: string;
}

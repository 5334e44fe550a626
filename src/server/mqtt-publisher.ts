/**
 * The vendor side of MQTT: signed retained announcements of each ref's newest commit, made from
 * the repo's published summary (so an announcement never names a commit devices cannot fetch),
 * and signed commands to one device. docs/formats.md §13, docs/fleet.md.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { LarchError, fromSystemError, quash } from '../errors.ts';
import type { Repo } from '../store/repo.ts';
import type { SecretKey } from '../store/sign.ts';
import { type MqttSettings, connectOnce, endClient, publishAcked } from '../mqtt/connect.ts';
import { type Announcement, type CommandArgs, type CommandName, type CommandResult, type DeviceCommand, announceTopic, commandResultTopic, commandTopic, encodeSigned, formatAnnouncement, formatCommand } from '../mqtt/format.ts';
import { type RefRollout, type RolloutState, readRolloutState, updateRolloutState } from './rollout-state.ts';
import { type RolloutChoices, announcedRollout, applyChoices, hasChoices, isManaged, noteRelease } from './rollout-rules.ts';
import { decodeSummary } from '../protocol/summary.ts';

export interface AnnounceOptions {
  signKeys: SecretKey[];
  mqtt: Omit<MqttSettings, 'clientId'> & { clientId?: string };
  /** Only these refs (default: every ref in the summary). */
  refs?: string[];
  /**
   * The operator's choices for the refs (a rollout 0-100, a plan over time, a halt rule, a
   * resume), recorded in R/rollout.json before they are announced. Absent: each ref is announced
   * with its recorded rollout (100 when none was ever set).
   */
  choices?: RolloutChoices | ((ref: string, recorded: RefRollout | undefined) => RolloutChoices);
  /** Seconds since the epoch (default now). */
  now?: number;
}

/**
 * Publishes one signed, retained announcement (QoS 1, acknowledged by the broker) per ref of the
 * repo's published summary. @throws NOT_FOUND (no summary, unknown ref), IO (broker)
 */
export async function announce(repo: Repo, opts: AnnounceOptions): Promise<{ announcements: (Announcement & { topic: string })[]; state: RolloutState }> {
  const path = join(repo.path, 'summary');
  const bytes = await readFile(path).catch((err) => Promise.reject(fromSystemError(err, 'read summary', path)));
  let summary;
  try {
    summary = decodeSummary(bytes);
  } catch (err) {
    throw new LarchError('INVALID_INPUT', `${path}: not a larch summary: ${(err as Error).message}`, { hint: "run 'larch publish' again", data: { path } });
  }
  const refs = opts.refs && opts.refs.length > 0 ? opts.refs : Object.keys(summary.refs).sort();
  const created = opts.now ?? Math.floor(Date.now() / 1000);
  for (const ref of refs) {
    if (!summary.refs[ref]) throw new LarchError('NOT_FOUND', `ref '${quash(ref)}' is not in the published summary of ${repo.path}`, { hint: "run 'larch publish' after committing, then announce", data: { ref, path: repo.path } });
  }
  // Written before anything is announced: a crash in between re-announces this, never a wider rollout.
  const choicesFor = (ref: string, recorded: RefRollout | undefined) => (typeof opts.choices === 'function' ? opts.choices(ref, recorded) : (opts.choices ?? {}));
  let rollouts: RolloutState = await readRolloutState(repo);
  const given = typeof opts.choices === 'function' || hasChoices(opts.choices ?? {});
  if (given || refs.some((ref) => isManaged(rollouts[ref]))) {
    const now = new Date(created * 1000);
    rollouts = (
      await updateRolloutState(repo, (state) => {
        for (const ref of refs) {
          const choices = choicesFor(ref, state[ref]);
          const r = hasChoices(choices) ? applyChoices(ref, state[ref], choices, now) : state[ref];
          // A ref with a plan or a halt rule follows its releases: a new head is a new release in flight.
          if (r && isManaged(r)) state[ref] = noteRelease(r, { commit: summary.refs[ref]!.commit, version: summary.refs[ref]!.version }, now);
          else if (r) state[ref] = r;
        }
      })
    ).state;
  }
  const list = refs.map((ref) => {
    const r = summary.refs[ref]!;
    return { ref, commit: r.commit, version: r.version, timestamp: r.timestamp, summarySerial: summary.serial, rollout: announcedRollout(rollouts[ref], r.commit), created, topic: announceTopic(ref) };
  });
  const client = await connectOnce({ clientId: `larch-announce-${randomBytes(6).toString('hex')}`, ...opts.mqtt });
  try {
    for (const a of list) await publishAcked(client, a.topic, await encodeSigned('announce', formatAnnouncement(a), opts.signKeys), { qos: 1, retain: true });
  } finally {
    await endClient(client);
  }
  return { announcements: list, state: rollouts };
}

export interface SendCommandOptions {
  signKeys: SecretKey[];
  mqtt: Omit<MqttSettings, 'clientId'> & { clientId?: string };
  device: string;
  cmd: CommandName;
  /** The command's arguments (deploy, rebase, install, uninstall), checked by the caller with parseCommandArgs. */
  args?: CommandArgs;
  /** Default: 32 random url-safe characters. */
  nonce?: string;
  /** Seconds since the epoch (default now). */
  issued?: number;
  expiresInS?: number;
  /** Wait this long for the device's result (0: publish only). */
  waitMs?: number;
}

/**
 * Sends one signed command (QoS 1, not retained: a device that is away gets it from its
 * persistent session when it comes back, if the command has not expired by then) and waits
 * for the device's answer on cmd/result with the same nonce.
 * @throws IO (broker; no answer within waitMs)
 */
export async function sendCommand(opts: SendCommandOptions): Promise<{ command: DeviceCommand; result: CommandResult | null }> {
  const issued = opts.issued ?? Math.floor(Date.now() / 1000);
  const command: DeviceCommand = { cmd: opts.cmd, device: opts.device, nonce: opts.nonce ?? randomBytes(24).toString('base64url'), issued, expires: issued + (opts.expiresInS ?? 300), ...(opts.args ? { args: opts.args } : {}) };
  const payload = await encodeSigned('command', formatCommand(command), opts.signKeys);
  const client = await connectOnce({ clientId: `larch-command-${randomBytes(6).toString('hex')}`, ...opts.mqtt });
  try {
    const waitMs = opts.waitMs ?? 0;
    const answer = waitMs > 0 ? waitForResult(client, opts.device, command.nonce, waitMs) : null;
    if (answer) await subscribe(client, commandResultTopic(opts.device));
    await publishAcked(client, commandTopic(opts.device), payload, { qos: 1 });
    return { command, result: answer ? await answer : null };
  } finally {
    await endClient(client);
  }
}

function subscribe(client: MqttClient, topic: string): Promise<void> {
  return new Promise((resolve, reject) => client.subscribe(topic, { qos: 1 }, (err) => (err ? reject(new LarchError('IO', `subscribe to ${topic}: ${err.message}`, { data: { topic } })) : resolve())));
}

function waitForResult(client: MqttClient, device: string, nonce: string, waitMs: number): Promise<CommandResult> {
  const topic = commandResultTopic(device);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage);
      reject(new LarchError('IO', `no answer from device '${quash(device)}' within ${waitMs} ms`, { hint: 'the device may be offline: it runs the command when it reconnects, if the command has not expired', data: { device, nonce } }));
    }, waitMs);
    const onMessage = (t: string, payload: Buffer) => {
      if (t !== topic) return;
      try {
        const r = JSON.parse(payload.toString('utf8')) as CommandResult;
        if (r.nonce !== nonce) return;
        clearTimeout(timer);
        client.off('message', onMessage);
        resolve(r);
      } catch {
        // not a result we can read: keep waiting
      }
    };
    client.on('message', onMessage);
  });
}

/**
 * `larch daemon`: the device's long-running agent. Keeps a persistent MQTT session, publishes
 * the device's status (retained, with a last will) and its journal (QoS 1, in order, resent
 * after a restart), acts on signed announcements through the update policy and the phased
 * rollout, and runs signed, fresh, never-replayed commands. The update itself is the same
 * check/upgrade/rollback as the CLI verbs (src/agent/update.ts), over the device's remote
 * (HTTP, or chunks through the broker).
 * One piece of work runs at a time (announcements and commands queue), so the daemon never
 * races itself on the sysroot. With apply-and-reboot, the reboot waits for a window or a
 * FleetLock slot by reboot_strategy (reboot-plan.ts). Optional Prometheus /metrics
 * (daemon-metrics.ts). docs/fleet.md, docs/formats.md §13, §14.
 */
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { LarchError } from '../errors.ts';
import { writeFileAtomic } from '../store/_durable.ts';
import { connectPersistent, publishAcked } from '../mqtt/connect.ts';
import { type Announcement, type CommandResult, announceTopic, commandFreshness, commandResultTopic, commandTopic, journalTopic, openSigned, parseAnnouncement, parseCommand, statusTopic } from '../mqtt/format.ts';
import { NonceLog } from '../mqtt/nonce-log.ts';
import { inRollout, rolloutPosition } from '../mqtt/rollout.ts';
import type { EtcMerger } from './deploy.ts';
import { bootedSlot } from './boot.ts';
import { describeFailure } from './failed-releases.ts';
import { type JournalEvent, appendJournal } from './journal.ts';
import { type MetricsSnapshot, type UpdateResult, type UpdateState, JournalTally, daemonMetrics } from './daemon-metrics.ts';
import { formatMetrics } from './metrics.ts';
import { type MetricsServer, startMetricsServer } from './metrics-server.ts';
import { type DaemonConfig, policyAction, retryDelayMs } from './policy.ts';
import { type RebootWait, RebootPlanner } from './reboot-plan.ts';
import { type Status, readStatus } from './status.ts';
import type { Sysroot } from './sysroot.ts';
import { type Remote, type UpdateContext, check, cleanup, finalize, rollback, trustedKeys, upgrade } from './update.ts';
import { withDeviceLock } from './device-lock.ts';

// Journal events the daemon adds; journal.ts's JournalEvent union does not list them yet (readers accept any event).
const EVENT_ANNOUNCE: JournalEvent = 'announce';
const EVENT_COMMAND: JournalEvent = 'command';
const EVENT_REBOOT: JournalEvent = 'reboot';
/** Largest journal slice read at once. */
const JOURNAL_READ_BYTES = 64 * 1024;
/** Progress reports are published at most this often. */
const PROGRESS_INTERVAL_MS = 1000;
/**
 * Refused commands journaled per minute at most: anyone who can publish to the broker can send
 * refusals (unsigned, replayed), and each journal entry is an fsync'd write to flash. The rest
 * are counted and the count goes into the next refusal journaled.
 */
const REFUSALS_JOURNALED_PER_MINUTE = 10;

export type { UpdateState } from './daemon-metrics.ts';

export interface DaemonDeps {
  sysroot: Sysroot;
  config: DaemonConfig;
  deviceId: string;
  remote: Remote;
  merger: EtcMerger;
  /** A line for the daemon's own log (stderr). */
  log(line: string): void;
  /** Reboots the device, or (test sysroots) records that it would. */
  reboot(reason: string): Promise<void>;
  random?: () => number;
  /** The clock for reboot windows (tests move it). */
  now?: () => Date;
}

interface UpdateView {
  state: UpdateState;
  announced: { ref: string; commit: string; version: string; rollout: number; created: number; selected: boolean; position: number } | null;
  progress: { done: number; total: number | null } | null;
  /** Staged and waiting to reboot: for a reboot window or a FleetLock slot. */
  reboot_wait: 'window' | 'lock' | null;
  /** window: when the next window opens (ISO); lock: null. */
  reboot_at: string | null;
  /** lock: refused attempts so far and the last refusal. */
  lock: { attempts: number; reason: string | null } | null;
  /** The announced update failed: when it is tried again, and how many attempts failed so far. */
  retry: { at: string; failures: number } | null;
}

/** An announcement, a periodic check's result or a command the daemon did not act on, and why (a short kebab-case reason). */
export interface Skip {
  reason: string;
  message: string;
  time: string;
}

/** The retained status message (docs/formats.md §13.4). */
export function statusMessage(s: Status, d: { device: string; seq: number; started: string; policy: string; update: UpdateView; lastError: { code: string; message: string; time: string } | null; lastSkip?: Skip | null }, online = true): Record<string, unknown> {
  const dep = (x: Status['booted']) => (x ? { slot: x.slot, version: x.version, commit: x.commit, good: x.good, tries_left: x.tries_left } : null);
  const booted = s.booted;
  return {
    format: 1,
    online,
    device: d.device,
    seq: d.seq,
    time: new Date().toISOString(),
    started: d.started,
    version: booted?.version ?? null,
    commit: booted?.commit ?? null,
    slot: booted?.slot ?? null,
    ref: s.ref,
    boot: { state: s.boot.rescue ? 'rescue' : booted ? (booted.good ? 'good' : 'unconfirmed') : 'unknown', order: s.boot.order, last_good: s.boot.last_good, rescue: s.boot.rescue },
    pending: dep(s.pending),
    rollback: dep(s.rollback),
    pinned: s.pinned,
    policy: d.policy,
    update: d.update,
    last_boot: s.last_boot ? { time: s.last_boot.time, slot: s.last_boot.slot, healthy: s.last_boot.healthy, fell_back: s.last_boot.fell_back, outcome: s.last_boot.outcome } : null,
    last_update: s.last_update,
    last_error: d.lastError ?? (s.last_update?.error ? { ...s.last_update.error, time: s.last_update.time } : null),
    last_skip: d.lastSkip ?? null,
    failed_releases: s.failed_releases.map((f) => ({ commit: f.commit, version: f.version, time: f.time, reason: f.reason, failed_checks: f.failed_checks })),
  };
}

export class Daemon {
  private client: MqttClient | null = null;
  private nonces!: NonceLog;
  private trusted: Uint8Array[] = [];
  private ref = '';
  private readonly started = new Date().toISOString();
  private seq = 0;
  private update: UpdateView = { state: 'idle', announced: null, progress: null, reboot_wait: null, reboot_at: null, lock: null, retry: null };
  private planner!: RebootPlanner;
  private metrics: MetricsServer | null = null;
  private journalTally!: JournalTally;
  private lastCheckS: number | null = null;
  private updates: Record<UpdateResult, number> = { staged: 0, downloaded: 0, 'no-update': 0, pinned: 0, error: 0 };
  private lastError: { code: string; message: string; time: string } | null = null;
  private lastSkip: Skip | null = null;
  private work: Promise<void> = Promise.resolve();
  /** Aborts the running piece of work's exchange with the remote (preempt); null when the queue is idle. */
  private transfer: AbortController | null = null;
  private periodicCheckPending = false;
  private statusChain: Promise<void> = Promise.resolve();
  private statusQueued = false;
  private lastProgressMs = 0;
  private newestAnnouncement: Announcement | null = null;
  private handled = new Set<string>();
  /** Failed attempts at the newest announcement, and the timer that tries it again. */
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private timers: ReturnType<typeof setInterval>[] = [];
  private journalOffset = 0;
  private journalSeq = 0;
  private journalBusy = false;
  private stopped = false;

  constructor(private readonly d: DaemonDeps) {}

  private get cursorPath(): string {
    return join(this.d.sysroot.larchDir, 'mqtt', 'journal-cursor.json');
  }

  async start(): Promise<void> {
    const { sysroot, config, deviceId } = this.d;
    const device = await sysroot.readConfig();
    this.ref = device.ref;
    this.trusted = await trustedKeys(sysroot);
    this.nonces = await NonceLog.open(join(sysroot.larchDir, 'mqtt', 'nonces.json'));
    const cursor = JSON.parse(await readFile(this.cursorPath, 'utf8').catch(() => '{}')) as { offset?: number; seq?: number };
    this.journalOffset = cursor.offset ?? 0;
    this.journalSeq = cursor.seq ?? 0;
    // The connect publishes the status and sends the journal: the first poll need not do it again.
    this.lastJournalSize = await stat(sysroot.journalPath).then((st) => st.size, () => 0);
    this.journalTally = new JournalTally(sysroot.journalPath);
    this.planner = new RebootPlanner({
      config,
      deviceId,
      now: this.d.now ?? (() => new Date()),
      log: this.d.log,
      random: this.d.random,
      onWait: (w) => this.onRebootWait(w),
      go: (why, data) => this.rebootNow(why, data),
      bootedGood: async () => (await readStatus(sysroot)).booted?.good === true,
      staged: async () => (await readStatus(sysroot)).pending !== null,
    });
    if (config.metricsListen) {
      this.metrics = await startMetricsServer(config.metricsListen, () => this.metricsText(), this.d.log);
      this.d.log(`metrics: http://${config.metricsListen}/metrics`);
    }
    if (config.mqttUrl) {
      const will = new TextEncoder().encode(JSON.stringify({ format: 1, online: false, device: deviceId }));
      this.client = await connectPersistent(
        { url: config.mqttUrl, clientId: `larch-${deviceId}`, clean: false, sessionExpiryS: config.sessionExpiryS, keepaliveS: config.keepaliveS, username: config.mqttUsername, passwordFile: config.mqttPasswordFile, caFile: config.mqttCaFile, certFile: config.mqttCertFile, keyFile: config.mqttKeyFile, will: { topic: statusTopic(deviceId), payload: will, retain: true, qos: 1 } },
        this.d.log,
      );
      this.client.on('connect', (ack) => {
        this.d.log(`mqtt: connected to ${config.mqttUrl}${ack.sessionPresent ? ' (session resumed)' : ''}`);
        // Subscribing again is harmless with a resumed session and needed without one.
        this.client!.subscribe({ [announceTopic(this.ref)]: { qos: 1 }, [commandTopic(deviceId)]: { qos: 1 } }, (err) => err && this.d.log(`mqtt: subscribe: ${err.message}`));
        this.queueStatus();
        void this.pumpJournal();
      });
      this.client.on('message', (topic, payload) => this.onMessage(topic, payload));
    }
    this.timers.push(setInterval(() => void this.pollJournal(), Math.max(50, config.pollIntervalMs)));
    if (config.statusIntervalS > 0) this.timers.push(setInterval(() => this.queueStatus(), config.statusIntervalS * 1000));
    if (config.checkIntervalS > 0) this.timers.push(setInterval(() => this.enqueuePeriodicCheck(), config.checkIntervalS * 1000));
    this.d.log(`daemon: device ${deviceId}, ref ${this.ref}, policy ${config.policy}${config.policy === 'apply-and-reboot' ? ` (reboot_strategy ${config.rebootStrategy})` : ''}, rollout position ${rolloutPosition(deviceId).toFixed(2)}${config.wariness !== undefined ? ` (wariness ${config.wariness})` : ''}`);
    this.planner.start();
    // Staged before this run (the daemon restarted while waiting for a window or a lock): go on waiting.
    const pending = (await readStatus(sysroot)).pending;
    if (pending && policyAction(config.policy) === 'stage-and-reboot') {
      this.setUpdate({ state: 'staged' });
      this.planner.request(`version ${pending.version} is staged`);
    }
  }

  /** Publishes a last status with online false (a clean stop sends no last will) and disconnects. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.planner?.stop();
    await this.metrics?.close();
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      const s = await readStatus(this.d.sysroot).catch(() => null);
      const body = s ? statusMessage(s, this.statusContext(), false) : { format: 1, online: false, device: this.d.deviceId };
      await Promise.race([publishAcked(client, statusTopic(this.d.deviceId), Buffer.from(JSON.stringify(body)), { qos: 1, retain: true }), sleep(2000)]).catch(() => {});
    }
    await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
  }

  private statusContext() {
    return { device: this.d.deviceId, seq: ++this.seq, started: this.started, policy: this.d.config.policy, update: this.update, lastError: this.lastError, lastSkip: this.lastSkip };
  }

  /** Coalesces: at most one status build waits behind the one being published. */
  private queueStatus(): void {
    if (this.statusQueued || this.stopped) return;
    this.statusQueued = true;
    this.statusChain = this.statusChain.then(async () => {
      this.statusQueued = false;
      const client = this.client;
      if (!client?.connected) return;
      try {
        // The update state first, the deployments after: a report that says 'staged' then always
        // shows the pending deployment (staging writes it before it sets the state).
        const context = this.statusContext();
        const s = await readStatus(this.d.sysroot);
        await publishAcked(client, statusTopic(this.d.deviceId), Buffer.from(JSON.stringify(statusMessage(s, context))), { qos: 1, retain: true });
      } catch (err) {
        // Not published: the newest state must still reach the broker, so build it again soon.
        this.d.log(`status: ${(err as Error).message}; trying again in 1 s`);
        setTimeout(() => this.queueStatus(), 1000).unref();
      }
    });
  }

  private setUpdate(patch: Partial<UpdateView>): void {
    this.update = { ...this.update, ...patch };
    this.queueStatus();
  }

  private enqueue(job: () => Promise<void>): void {
    this.work = this.work
      .then(async () => {
        this.transfer = new AbortController();
        try {
          await job();
        } finally {
          this.transfer = null;
        }
      })
      .catch((err) => this.d.log(`daemon: ${(err as Error).stack ?? err}`));
  }

  /**
   * One periodic check at a time: while one waits or runs (behind a slow transfer), the timer adds
   * no more, so a command queued meanwhile is not left behind a pile of them.
   */
  private enqueuePeriodicCheck(): void {
    if (this.periodicCheckPending) return;
    this.periodicCheckPending = true;
    this.enqueue(async () => {
      try {
        await this.runPolicy(null);
      } finally {
        this.periodicCheckPending = false;
      }
    });
  }

  /** The signal that ends the exchange with the remote the running piece of work is in (remoteFor's cancel). */
  transferSignal(): AbortSignal | undefined {
    return this.transfer?.signal;
  }

  /**
   * A rollback must not wait behind a slow transfer (a server trickling bytes keeps a check or a
   * download going until its deadline): a signed, fresh, unused rollback command for this device
   * ends the exchange with the remote the queue is busy with (the download resumes at the next
   * check), so the command, queued as every command, runs next. Status publishing never waits
   * for the queue.
   */
  private async preempt(payload: Buffer): Promise<void> {
    if (!this.transfer) return;
    const opened = await openSigned('command', payload, this.trusted);
    if (!opened.ok) return;
    let c;
    try {
      c = parseCommand(opened.body);
    } catch {
      return;
    }
    if (c.cmd !== 'rollback' || c.device !== this.d.deviceId || this.nonces.has(c.nonce)) return;
    if (commandFreshness(c, Math.floor(Date.now() / 1000), this.d.config.clockSkewS) !== 'fresh') return;
    this.d.log(`command 'rollback' (nonce ${c.nonce}): ending the transfer in progress`);
    this.transfer?.abort(
      new LarchError('IO', `cancelled: command 'rollback' (nonce ${c.nonce}) arrived during the exchange with the server`, {
        hint: 'a download resumes where it stopped at the next check or upgrade',
        data: { reason: 'cancelled', nonce: c.nonce },
      }),
    );
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === commandTopic(this.d.deviceId)) void this.preempt(payload).catch((err) => this.d.log(`command: ${(err as Error).message}`));
    if (topic === commandTopic(this.d.deviceId)) this.enqueue(() => this.handleCommand(payload));
    else if (topic === announceTopic(this.ref)) this.enqueue(() => this.handleAnnouncement(payload));
  }

  // ---- announcements and the policy ----

  private async handleAnnouncement(payload: Buffer): Promise<void> {
    if (payload.length === 0) return; // a cleared retained message
    const opened = await openSigned('announce', payload, this.trusted);
    if (!opened.ok) {
      this.d.log(`announce: refused (${opened.reason})`);
      return this.skip(EVENT_ANNOUNCE, opened.reason, `refused an announcement on ${announceTopic(this.ref)}: ${opened.reason}`);
    }
    let a: Announcement;
    try {
      a = parseAnnouncement(opened.body);
    } catch (err) {
      return this.skip(EVENT_ANNOUNCE, 'malformed', `refused a malformed announcement: ${(err as Error).message}`);
    }
    const about = { commit: a.commit, version: a.version, created: a.created };
    if (a.ref !== this.ref) return this.skip(EVENT_ANNOUNCE, 'other-ref', `ignored an announcement of version ${a.version} for ${a.ref}: this device follows ${this.ref}`, about);
    if (this.newestAnnouncement && a.created < this.newestAnnouncement.created) {
      return this.skip(EVENT_ANNOUNCE, 'older', `ignored an announcement of version ${a.version} made ${new Date(a.created * 1000).toISOString()}: one made later (version ${this.newestAnnouncement.version}) replaces it`, about);
    }
    const key = announcementKey(a);
    if (this.handled.has(key)) return this.skip(EVENT_ANNOUNCE, 'already-handled', `ignored the announcement of version ${a.version} again: it was acted on already (a resent retained message)`, about);
    if (!this.newestAnnouncement || announcementKey(this.newestAnnouncement) !== key) this.clearRetry();
    this.newestAnnouncement = a;
    const position = this.d.config.wariness !== undefined ? this.d.config.wariness * 100 : rolloutPosition(this.d.deviceId);
    const selected = inRollout(this.d.deviceId, a.rollout, this.d.config.wariness);
    this.setUpdate({ announced: { ref: a.ref, commit: a.commit, version: a.version, rollout: a.rollout, created: a.created, selected, position } });
    const status = await readStatus(this.d.sysroot);
    if (status.booted?.commit === a.commit || status.pending?.commit === a.commit) {
      this.handled.add(key);
      const staged = status.pending?.commit === a.commit;
      this.setUpdate({ state: staged ? 'staged' : 'up-to-date' });
      return this.skip(EVENT_ANNOUNCE, staged ? 'already-staged' : 'up-to-date', `version ${a.version} announced for ${a.ref}: it is ${staged ? 'staged already' : 'booted already'}`, about);
    }
    if (!selected) {
      this.setUpdate({ state: 'waiting-rollout' });
      this.handled.add(key);
      return this.skip(EVENT_ANNOUNCE, 'outside-rollout', `version ${a.version} announced for ${a.ref} at rollout ${a.rollout}%: this device (position ${position.toFixed(2)}) waits`, { ...about, rollout: a.rollout, position, selected });
    }
    await this.journal(EVENT_ANNOUNCE, `version ${a.version} announced for ${a.ref} at rollout ${a.rollout}%: this device (position ${position.toFixed(2)}) takes it`, { commit: a.commit, rollout: a.rollout, position, selected });
    const jitterMs = Math.floor((this.d.random ?? Math.random)() * this.d.config.jitterS * 1000);
    if (jitterMs > 0) await sleep(jitterMs);
    if (this.stopped) return;
    await this.actOn(a);
  }

  /** Runs the policy for an announcement; a failure (not a stale announcement) is tried again later. */
  private async actOn(a: Announcement): Promise<void> {
    if (await this.runPolicy(a)) {
      this.handled.add(announcementKey(a));
      this.clearRetry();
    } else if (this.update.state === 'error') {
      this.scheduleRetry(a);
    }
  }

  /**
   * A download cut short, a busy or unreachable server, a full disk: an announced update that
   * failed is tried again after retry_interval_s, doubling up to retry_max_s, each wait between
   * half and all of that (a fleet that failed together does not come back together). A newer
   * announcement replaces it.
   */
  private scheduleRetry(a: Announcement): void {
    this.failures++;
    const ms = retryDelayMs(this.failures, this.d.config, (this.d.random ?? Math.random)());
    if (ms === null || this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.enqueue(async () => {
        if (this.stopped || this.newestAnnouncement !== a || this.handled.has(announcementKey(a))) return;
        this.d.log(`announce: trying version ${a.version} again (attempt ${this.failures + 1})`);
        this.setUpdate({ retry: null });
        await this.actOn(a);
      });
    }, ms);
    this.setUpdate({ retry: { at: new Date(Date.now() + ms).toISOString(), failures: this.failures } });
    this.d.log(`announce: version ${a.version} failed (attempt ${this.failures}); trying again in ${(ms / 1000).toFixed(0)} s`);
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.failures = 0;
    if (this.update.retry) this.setUpdate({ retry: null });
  }

  /** Runs the policy for an announcement (or a periodic check: a = null). True when it completed. */
  private async runPolicy(a: Announcement | null): Promise<boolean> {
    const action = policyAction(this.d.config.policy);
    const event = a ? EVENT_ANNOUNCE : 'check';
    const what = a ? `the announced version ${a.version}` : 'the periodic check';
    if (action === 'report') {
      this.setUpdate({ state: a ? 'available' : this.update.state });
      if (a) await this.skip(event, 'policy-none', `${what}: reported only (policy none)`, { commit: a.commit });
      return true;
    }
    if ((await bootedSlot(this.d.sysroot)) === null) {
      // Writing "the other slot" needs to know which one runs now: never guessed.
      this.setUpdate({ state: 'idle' });
      await this.skip(event, 'not-booted', `${what}: not acted on, this device has not booted through larch yet (no larch.slot= on the kernel command line); boot-check at the next boot makes it so`);
      return true;
    }
    const ctx = this.context();
    try {
      this.setUpdate({ state: 'checking', progress: null });
      const c = await check(ctx);
      this.lastCheckS = Math.floor(Date.now() / 1000);
      if (!c.available || !c.update) {
        this.setUpdate({ state: 'up-to-date' });
        return true;
      }
      if (a && c.update.commit !== a.commit) {
        // The summary, not the announcement, says what the ref's head is: an announcement of another commit is stale (or early).
        this.d.log(`announce: version ${a.version} is not the head of ${a.ref} on ${ctx.remote.describe()} (head is ${c.update.version}); waiting for the next announcement`);
        this.setUpdate({ state: 'available' });
        await this.skip(event, 'not-head', `${what}: not acted on, the head of ${a.ref} on ${ctx.remote.describe()} is version ${c.update.version}; waiting for the next announcement`, { commit: a.commit, head: c.update.commit });
        return false;
      }
      if (c.update.failed_here && (action === 'stage' || action === 'stage-and-reboot' || action === 'download')) {
        // Staging it again would loop: update, fail, fall back. Only deploy --retry-failed tries it.
        this.setUpdate({ state: 'idle' });
        await this.skip(event, 'failed-here', `${what}: not staging version ${c.update.version}: ${describeFailure(c.update.failed_here)}`, { commit: c.update.commit, version: c.update.version, time: c.update.failed_here.time, failed_checks: c.update.failed_here.failed_checks });
        return true;
      }
      const pending = (await readStatus(this.d.sysroot)).pending;
      if (pending?.commit === c.update.commit) {
        this.setUpdate({ state: 'staged' });
        if (action === 'stage-and-reboot') this.planner.request(`version ${pending.version} is staged`);
        return true;
      }
      if (action === 'check') {
        this.setUpdate({ state: 'available' });
        return true;
      }
      this.setUpdate({ state: 'downloading' });
      const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, 'daemon upgrade', () => upgrade(ctx, { downloadOnly: action === 'download' })));
      this.setUpdate({ state: r.result === 'staged' ? 'staged' : r.result === 'downloaded' ? 'downloaded' : r.result === 'no-update' ? 'up-to-date' : 'idle', progress: null });
      if (r.result === 'pinned') await this.skip(event, 'pinned', `${what}: not acted on, the device is pinned (larch unpin to resume)`, { commit: c.update.commit });
      // The reboot runs later in the queue (or waits for a window or a lock beside it).
      if (r.result === 'staged' && action === 'stage-and-reboot') this.planner.request(`version ${r.to?.version} staged by policy apply-and-reboot`);
      return true;
    } catch (err) {
      this.recordError(err);
      this.setUpdate({ state: 'error', progress: null });
      return false;
    }
  }

  /** Counts the upgrade's result for larch_updates_total. */
  private async countUpgrade<T extends { result: string }>(p: Promise<T>): Promise<T> {
    try {
      const r = await p;
      if (r.result in this.updates) this.updates[r.result as UpdateResult]++;
      return r;
    } catch (err) {
      this.updates.error++;
      throw err;
    }
  }

  // ---- the reboot (reboot-plan.ts decides when) ----

  private onRebootWait(w: RebootWait | null): void {
    if (!w) return this.setUpdate({ reboot_wait: null, reboot_at: null, lock: null });
    if (w.kind === 'window') this.setUpdate({ state: 'staged', reboot_wait: 'window', reboot_at: w.at.toISOString(), lock: null });
    else this.setUpdate({ state: 'staged', reboot_wait: 'lock', reboot_at: null, lock: { attempts: w.attempts, reason: w.reason } });
  }

  /** Runs in the work queue: journal, finalize /etc, reboot. False when nothing is staged any more. */
  private rebootNow(why: string, data: Record<string, unknown>): Promise<boolean> {
    return new Promise((resolve) => {
      this.enqueue(async () => {
        try {
          const pending = (await readStatus(this.d.sysroot)).pending;
          if (!pending || this.stopped) {
            this.d.log(`reboot: not rebooting (${this.stopped ? 'stopping' : 'nothing is staged any more'}): ${why}`);
            return resolve(false);
          }
          await this.journal(EVENT_REBOOT, `rebooting into version ${pending.version} (slot ${pending.slot}): ${why}`, { version: pending.version, commit: pending.commit, slot: pending.slot, ...data });
          await withDeviceLock(this.d.sysroot, 'daemon finalize', () => finalize(this.context()));
          this.setUpdate({ state: 'rebooting' });
          await this.d.reboot(`version ${pending.version} staged by policy apply-and-reboot; ${why}`);
          resolve(true);
        } catch (err) {
          this.recordError(err);
          this.setUpdate({ state: 'error' });
          resolve(false);
        }
      });
    });
  }

  // ---- metrics ----

  private async metricsText(): Promise<string> {
    await this.journalTally.update();
    const snap: MetricsSnapshot = {
      status: await readStatus(this.d.sysroot),
      state: this.update.state,
      rebootWait: this.update.reboot_wait,
      retry: this.update.retry ? { failures: this.update.retry.failures, atS: Math.floor(Date.parse(this.update.retry.at) / 1000) } : null,
      lastCheckS: this.lastCheckS,
      updates: this.updates,
      journal: this.journalTally,
      mqttConnected: this.client ? this.client.connected : null,
    };
    return formatMetrics(daemonMetrics(snap));
  }

  private context(): UpdateContext {
    return {
      sysroot: this.d.sysroot,
      remote: this.d.remote,
      merger: this.d.merger,
      progress: (done, total) => {
        this.update = { ...this.update, progress: { done, total } };
        const now = Date.now();
        if (now - this.lastProgressMs >= PROGRESS_INTERVAL_MS) {
          this.lastProgressMs = now;
          this.queueStatus();
        }
      },
    };
  }

  private recordError(err: unknown): void {
    const code = err instanceof LarchError ? err.code : 'INTERNAL';
    this.lastError = { code, message: (err as Error).message, time: new Date().toISOString() };
    this.d.log(`daemon: ${code}: ${(err as Error).message}`);
  }

  // ---- commands ----

  private async handleCommand(payload: Buffer): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    const opened = await openSigned('command', payload, this.trusted);
    const peek = (opened.ok ? opened.body : opened.body) as { nonce?: unknown; cmd?: unknown } | undefined;
    const nonce = typeof peek?.nonce === 'string' ? peek.nonce.slice(0, 64) : null;
    const name = typeof peek?.cmd === 'string' ? peek.cmd.slice(0, 32) : null;
    const refuse = (reason: string, message: string, data: Record<string, unknown> = {}) => this.report({ nonce, cmd: name, result: 'refused', reason, message }, data);
    if (!opened.ok) return refuse(opened.reason, `refused command${name ? ` '${name}'` : ''}: ${describeRefusal(opened.reason)}`, opened.keys ? { keys: opened.keys } : {});
    let c;
    try {
      c = parseCommand(opened.body);
    } catch (err) {
      return refuse('malformed', `refused a malformed command: ${(err as Error).message}`);
    }
    if (c.device !== this.d.deviceId) return refuse('wrong-device', `refused command '${c.cmd}': it is for device '${c.device}'`);
    const fresh = commandFreshness(c, now, this.d.config.clockSkewS);
    if (fresh !== 'fresh') return refuse(fresh, `refused command '${c.cmd}': ${fresh === 'stale' ? `expired at ${new Date(c.expires * 1000).toISOString()}` : fresh === 'not-yet-valid' ? `issued in the future (${new Date(c.issued * 1000).toISOString()}); check the clocks` : 'valid for longer than allowed'}`, { issued: c.issued, expires: c.expires, now });
    if (this.nonces.has(c.nonce)) return refuse('replayed', `refused command '${c.cmd}': nonce ${c.nonce} was already used (a replay)`);
    // Recorded before the command runs: a crash mid-command must not let the same message run again.
    await this.nonces.add(c.nonce, c.expires, now);
    const ctx = this.context();
    try {
      let output: unknown;
      if (c.cmd === 'check') {
        this.setUpdate({ state: 'checking' });
        output = await check(ctx);
        this.lastCheckS = Math.floor(Date.now() / 1000);
        this.setUpdate({ state: (output as { available: boolean }).available ? 'available' : 'up-to-date' });
      } else if (c.cmd === 'upgrade') {
        this.setUpdate({ state: 'downloading' });
        const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, "command 'upgrade'", () => upgrade(ctx)));
        output = { result: r.result, from: r.from, to: r.to, download: r.download, etc_conflicts: r.etc_conflicts };
        this.setUpdate({ state: r.result === 'staged' ? 'staged' : 'up-to-date', progress: null });
      } else if (c.cmd === 'rollback') {
        output = await withDeviceLock(this.d.sysroot, "command 'rollback'", () => rollback(this.d.sysroot));
      } else if (c.cmd === 'cleanup') {
        output = await withDeviceLock(this.d.sysroot, "command 'cleanup'", () => cleanup(this.d.sysroot));
      } else {
        output = { result: 'rebooting' };
      }
      await this.report({ nonce: c.nonce, cmd: c.cmd, result: 'ok', message: `ran command '${c.cmd}' (signed by ${opened.signedBy.join(', ')})`, output }, { signedBy: opened.signedBy });
      if (c.cmd === 'reboot') {
        await withDeviceLock(this.d.sysroot, "command 'reboot'", () => finalize(ctx)).catch(() => {});
        await this.d.reboot(`command reboot (nonce ${c.nonce})`);
      }
    } catch (err) {
      const e = err instanceof LarchError ? err : null;
      if (e?.data.reason === 'failed-here') {
        // Not an error of the device: a refusal, as upgrade's (deploy --retry-failed on the device tries it).
        this.setUpdate({ state: 'idle', progress: null });
        return this.report({ nonce: c.nonce, cmd: c.cmd, result: 'refused', reason: 'failed-here', message: `refused command '${c.cmd}': ${e.message}` }, { commit: e.data.commit, version: e.data.version, time: e.data.time, failed_checks: e.data.failed_checks });
      }
      this.recordError(err);
      if (c.cmd !== 'rollback' && c.cmd !== 'cleanup') this.setUpdate({ state: 'error', progress: null });
      await this.report({ nonce: c.nonce, cmd: c.cmd, result: 'error', code: e?.code ?? 'INTERNAL', message: `command '${c.cmd}' failed: ${(err as Error).message}` }, {});
    }
  }

  private refusals = { windowStart: 0, journaled: 0, suppressed: 0 };

  /** Whether this refusal is journaled (REFUSALS_JOURNALED_PER_MINUTE); adds the count of those that were not. */
  private journalRefusal(data: Record<string, unknown>): boolean {
    const now = Date.now();
    if (now - this.refusals.windowStart >= 60_000) this.refusals = { ...this.refusals, windowStart: now, journaled: 0 };
    if (this.refusals.journaled >= REFUSALS_JOURNALED_PER_MINUTE) {
      this.refusals.suppressed++;
      return false;
    }
    this.refusals.journaled++;
    if (this.refusals.suppressed > 0) data.suppressed = this.refusals.suppressed;
    this.refusals.suppressed = 0;
    return true;
  }

  private async report(r: Omit<CommandResult, 'format' | 'device' | 'time'>, data: Record<string, unknown>): Promise<void> {
    const full: CommandResult = { format: 1, device: this.d.deviceId, ...r, time: new Date().toISOString() };
    if (r.result === 'refused' && r.reason) {
      this.lastSkip = { reason: r.reason, message: r.message, time: full.time };
      this.queueStatus();
    }
    if (r.result !== 'ok') this.d.log(`command: ${r.message}`);
    if (r.result !== 'refused' || this.journalRefusal(data)) await this.journal(EVENT_COMMAND, r.message, { nonce: r.nonce, cmd: r.cmd, result: r.result, ...(r.reason ? { reason: r.reason } : {}), ...(r.code ? { code: r.code } : {}), ...data });
    if (this.client) await publishAcked(this.client, commandResultTopic(this.d.deviceId), Buffer.from(JSON.stringify(full)), { qos: 1 }).catch((err) => this.d.log(`command result: ${(err as Error).message}`));
  }

  /**
   * Something not acted on: one journal line with its reason, and the status's last_skip. The
   * same decision again (each periodic check of a release that failed here) updates last_skip's
   * time without another line.
   */
  private async skip(event: JournalEvent, reason: string, message: string, data: Record<string, unknown> = {}): Promise<void> {
    const again = this.lastSkip?.reason === reason && this.lastSkip.message === message;
    this.lastSkip = { reason, message, time: new Date().toISOString() };
    this.queueStatus();
    if (again) return;
    this.d.log(`skip (${reason}): ${message}`);
    await this.journal(event, message, { reason, ...data });
  }

  private async journal(event: JournalEvent, message: string, data: Record<string, unknown>): Promise<void> {
    await appendJournal(this.d.sysroot.journalPath, { event, message, data }).catch((err) => this.d.log(`journal: ${(err as Error).message}`));
    void this.pollJournal();
  }

  // ---- the journal, published in order ----

  private lastJournalSize = -1;

  /** Looks at the journal's size: growth means something happened (publish the status) and entries to send. */
  private async pollJournal(): Promise<void> {
    const size = await stat(this.d.sysroot.journalPath).then((s) => s.size, () => 0);
    if (size === this.lastJournalSize) return;
    this.lastJournalSize = size;
    this.queueStatus();
    void this.pumpJournal();
  }

  /**
   * Sends every complete journal line past the cursor, one at a time, each acknowledged (QoS 1)
   * before the next and before the cursor moves: in order, at least once. The cursor
   * (S/larch/mqtt/journal-cursor.json) survives restarts; `seq` (the entry's index) lets a
   * consumer drop the duplicate a crash between ack and cursor write can cause.
   */
  private async pumpJournal(): Promise<void> {
    const client = this.client;
    if (!client || this.journalBusy || this.stopped) return;
    this.journalBusy = true;
    try {
      for (;;) {
        if (!client.connected) return;
        const path = this.d.sysroot.journalPath;
        const size = await stat(path).then((s) => s.size, () => 0);
        // The journal was rotated (journal.jsonl -> journal.1.jsonl at 256 KiB): go on from the
        // new file's start; seq keeps counting, so a consumer's duplicate check by seq still holds.
        if (size < this.journalOffset) this.journalOffset = 0;
        if (size === this.journalOffset) return;
        const fh = await open(path, 'r');
        let chunk: Buffer;
        try {
          const buf = Buffer.alloc(Math.min(JOURNAL_READ_BYTES, size - this.journalOffset));
          const { bytesRead } = await fh.read(buf, 0, buf.length, this.journalOffset);
          chunk = buf.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
        const end = chunk.lastIndexOf(0x0a);
        if (end < 0) {
          if (chunk.length < JOURNAL_READ_BYTES) return; // a line still being written
          this.journalOffset += chunk.length; // a line longer than we read at once: skip it
          continue;
        }
        let pos = 0;
        while (pos <= end) {
          const nl = chunk.indexOf(0x0a, pos);
          const line = chunk.subarray(pos, nl).toString('utf8');
          const lineBytes = nl + 1 - pos;
          pos = nl + 1;
          let entry: Record<string, unknown> | null = null;
          try {
            entry = JSON.parse(line) as Record<string, unknown>;
          } catch {
            entry = null; // a torn line from a power cut: not an entry
          }
          if (entry) {
            await publishAcked(client, journalTopic(this.d.deviceId), Buffer.from(JSON.stringify({ seq: this.journalSeq, device: this.d.deviceId, ...entry })), { qos: 1 });
            this.journalSeq++;
          }
          this.journalOffset += lineBytes;
        }
        await mkdir(dirname(this.cursorPath), { recursive: true });
        await writeFileAtomic(this.cursorPath, JSON.stringify({ offset: this.journalOffset, seq: this.journalSeq }) + '\n');
      }
    } catch (err) {
      this.d.log(`journal publish: ${(err as Error).message}`);
    } finally {
      this.journalBusy = false;
    }
  }
}

function describeRefusal(reason: string): string {
  return (
    {
      unsigned: 'it is not signed',
      untrusted: 'it is not signed by a trusted key',
      invalid: 'its signature does not verify (tampered, or signed as another kind of message)',
      malformed: 'it is not a signed larch message',
      'too-large': 'it is larger than any command',
    } as Record<string, string>
  )[reason] ?? reason;
}

function announcementKey(a: Announcement): string {
  return `${a.commit}@${a.created}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

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
 * (metrics.ts). The other jobs have a file each here: the MQTT session (session.ts), the status
 * message (status-message.ts, pure), the journal publisher (journal-publisher.ts), the signed
 * commands' checks (commands.ts), the retry of a failed update (retry.ts).
 * docs/fleet.md, docs/formats.md §13, §14.
 */
import { join } from 'node:path';
import { cancelSignal, isCancelled } from '../../cancellation.ts';
import { LarchError } from '../../errors.ts';
import { type Announcement, type CommandResult, announceTopic, parseAnnouncement, openSigned } from '../../mqtt/format.ts';
import { NonceLog } from '../../mqtt/nonce-log.ts';
import { inRollout, rolloutPosition } from '../../mqtt/rollout.ts';
import type { EtcMerger } from '../deploy.ts';
import { bootedSlot } from '../boot.ts';
import { describeFailure } from '../failed-releases.ts';
import { type JournalEvent, appendJournal } from '../journal.ts';
import { formatMetrics } from '../metrics.ts';
import { type MetricsServer, startMetricsServer } from '../metrics-server.ts';
import { type DaemonConfig, policyAction } from '../policy.ts';
import { type RebootWait, RebootPlanner } from '../reboot-plan.ts';
import { readStatus } from '../status.ts';
import type { Reboot } from '../reboot.ts';
import type { Sysroot } from '../sysroot.ts';
import type { Remote } from '../remote/remote.ts';
import { type UpdateContext, check, cleanup, finalize, rollback, setPinned, upgrade } from '../update.ts';
import { readDeviceTrust, roleKeys } from '../trust-store.ts';
import { type RemoteEntry, followedChannel, rebaseResult, remoteNamed, scopeOf } from '../remotes.ts';
import { type SentCancel, IDLE, sendCancel, settleCancel } from '../cancel.ts';
import { changeLayering } from '../layering/layer.ts';
import { walkTrustChain } from '../trust-sync.ts';
import { withDeviceLock } from '../device-lock.ts';
import { type CommandCheck, RefusalLimiter, preemptingCommand, vetCommand } from './commands.ts';
import { JournalPublisher } from './journal-publisher.ts';
import { type MetricsSnapshot, type UpdateResult, JournalTally, daemonMetrics } from './metrics.ts';
import { RetrySchedule } from './retry.ts';
import { DaemonSession } from './session.ts';
import { type DaemonView, type Skip, type UpdateView, IDLE_UPDATE, isStale, offlineMessage, statusMessage } from './status-message.ts';

// The journal events the daemon itself writes (journal.ts's JournalEvent lists every event).
const EVENT_ANNOUNCE: JournalEvent = 'announce';
const EVENT_COMMAND: JournalEvent = 'command';
const EVENT_REBOOT: JournalEvent = 'reboot';
/** Progress reports are published at most this often. */
const PROGRESS_INTERVAL_MS = 1000;

export type { UpdateState } from './metrics.ts';

export interface DaemonDeps {
  sysroot: Sysroot;
  config: DaemonConfig;
  deviceId: string;
  remote: Remote;
  /** The Remote of a named remote of config.json, with the followed one's limits (the rebase command). */
  remoteFor(entry: RemoteEntry): Remote;
  merger: EtcMerger;
  /** A line for the daemon's own log (stderr). */
  log(line: string): void;
  /** Reboots the device, or (test sysroots) records that it would: rebootFor (agent/reboot.ts). */
  reboot: Reboot;
  random?: () => number;
  /** The clock for reboot windows (tests move it). */
  now?: () => Date;
}

export class Daemon {
  private session: DaemonSession | null = null;
  private journalPublisher!: JournalPublisher;
  private nonces!: NonceLog;
  private ref = '';
  private readonly started = new Date().toISOString();
  private seq = 0;
  private update: UpdateView = IDLE_UPDATE;
  private planner!: RebootPlanner;
  private metrics: MetricsServer | null = null;
  private journalTally!: JournalTally;
  private lastCheckS: number | null = null;
  private updates: Record<UpdateResult, number> = { staged: 0, downloaded: 0, 'no-update': 0, pinned: 0, error: 0 };
  private lastError: { code: string; message: string; time: string } | null = null;
  private lastSkip: Skip | null = null;
  /** The head older than the booted release last journaled (head-older): the periodic checks that find it again add no line. */
  private headOlderCommit: string | null = null;
  /** The release `larch cancel` stopped: periodic checks leave it alone until an announcement, a newer release or an upgrade command. */
  private cancelledCommit: string | null = null;
  /** The request a cancel command sent to the job it preempted, settled when the command's turn comes. */
  private sentCancel: SentCancel | null = null;
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
  private retry: RetrySchedule;
  private readonly refusals = new RefusalLimiter();
  private timers: ReturnType<typeof setInterval>[] = [];
  private checkTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;

  constructor(private readonly d: DaemonDeps) {
    this.retry = new RetrySchedule(d.config, () => (d.random ?? Math.random)());
  }

  async start(): Promise<void> {
    const { sysroot, config, deviceId } = this.d;
    const device = await sysroot.readConfig();
    this.ref = device.ref;
    // Fails early on a device with no key at all; each message reads the trust afresh (a revocation counts at once).
    await roleKeys(sysroot, 'command');
    this.nonces = await NonceLog.open(join(sysroot.larchDir, 'mqtt', 'nonces.json'));
    this.journalPublisher = new JournalPublisher({ journalPath: sysroot.journalPath, larchDir: sysroot.larchDir, deviceId, client: () => this.session?.client ?? null, onGrowth: () => this.queueStatus(), log: this.d.log });
    // The connect publishes the status and sends the journal: the first poll need not do it again.
    await this.journalPublisher.open();
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
      this.session = await DaemonSession.open(config, deviceId, this.ref, {
        onConnect: () => {
          this.queueStatus();
          void this.journalPublisher.pump();
        },
        onCommand: (payload) => {
          void this.preempt(payload).catch((err) => this.d.log(`command: ${(err as Error).message}`));
          this.enqueue(() => this.handleCommand(payload));
        },
        onAnnouncement: (payload) => this.enqueue(() => this.handleAnnouncement(payload)),
        log: this.d.log,
      });
    }
    this.timers.push(setInterval(() => void this.journalPublisher.poll(), Math.max(50, config.pollIntervalMs)));
    if (config.statusIntervalS > 0) this.timers.push(setInterval(() => this.queueStatus(), config.statusIntervalS * 1000));
    // The summary, not the broker, is the authority: check it soon after start (within jitter_s)
    // and then every check_interval_s, so a retained bogus or replayed announcement cannot keep
    // the device from the release its remote offers (docs/fleet.md).
    if (config.checkIntervalS > 0) this.scheduleCheck(this.random() * config.jitterS * 1000);
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
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.retry.clear();
    this.journalPublisher?.stop();
    this.planner?.stop();
    await this.metrics?.close();
    await this.session?.close(async () => {
      const s = await readStatus(this.d.sysroot).catch(() => null);
      return s ? statusMessage(s, this.statusContext(), new Date(), false) : offlineMessage(this.d.deviceId);
    });
  }

  private statusContext(): DaemonView {
    const lastCheck = { time: this.lastCheckS === null ? null : new Date(this.lastCheckS * 1000).toISOString(), stale: isStale(this.lastCheckS, Date.parse(this.started) / 1000, this.d.config.checkIntervalS, Date.now() / 1000) };
    return { device: this.d.deviceId, seq: ++this.seq, started: this.started, policy: this.d.config.policy, update: this.update, lastError: this.lastError, lastSkip: this.lastSkip, lastCheck };
  }

  private random(): number {
    return (this.d.random ?? Math.random)();
  }

  /** The next periodic check in `ms`, then every check_interval_s give or take 10% (a fleet started together spreads out). */
  private scheduleCheck(ms: number): void {
    if (this.stopped) return;
    this.checkTimer = setTimeout(() => {
      this.enqueuePeriodicCheck();
      this.scheduleCheck(this.d.config.checkIntervalS * 1000 * (0.9 + 0.2 * this.random()));
    }, ms);
  }

  /** Coalesces: at most one status build waits behind the one being published. */
  private queueStatus(): void {
    if (this.statusQueued || this.stopped) return;
    this.statusQueued = true;
    this.statusChain = this.statusChain.then(async () => {
      this.statusQueued = false;
      const session = this.session;
      if (!session?.connected) return;
      try {
        // The update state first, the deployments after: a report that says 'staged' then always
        // shows the pending deployment (staging writes it before it sets the state).
        const context = this.statusContext();
        const s = await readStatus(this.d.sysroot);
        await session.publishStatus(statusMessage(s, context, new Date()));
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

  /** The signal that ends the exchange with the remote the running piece of work is in (remoteFor's cancel): a command's, or larch cancel's. */
  transferSignal(): AbortSignal | undefined {
    const signals = [this.transfer?.signal, cancelSignal()].filter((s) => s !== undefined);
    return signals.length > 1 ? AbortSignal.any(signals) : signals[0];
  }

  /**
   * A rollback or a cancel must not wait behind a slow transfer (a server trickling bytes keeps a
   * check or a download going until its deadline): a signed, fresh, unused rollback command for
   * this device ends the exchange with the remote the queue is busy with (the download resumes at
   * the next check), so the command, queued as every command, runs next. A cancel stops the job
   * holding the device lock as `larch cancel` does (cancel.ts); its answer is settled in its turn.
   * Status publishing never waits for the queue.
   */
  private async preempt(payload: Buffer): Promise<void> {
    if (!this.transfer) return;
    const c = await preemptingCommand(payload, await this.commandCheck());
    if (!c) return;
    if (c.cmd === 'cancel') {
      this.d.log(`command 'cancel' (nonce ${c.nonce}): stopping the job in progress`);
      this.sentCancel = await sendCancel(this.d.sysroot);
      return;
    }
    this.d.log(`command 'rollback' (nonce ${c.nonce}): ending the transfer in progress`);
    this.transfer?.abort(
      new LarchError('IO', `cancelled: command 'rollback' (nonce ${c.nonce}) arrived during the exchange with the server`, {
        hint: 'a download resumes where it stopped at the next check or upgrade',
        data: { reason: 'cancelled', nonce: c.nonce },
      }),
    );
  }

  private async commandCheck(): Promise<CommandCheck> {
    const role = await roleKeys(this.d.sysroot, 'command');
    return { trusted: role.keys, threshold: role.threshold, deviceId: this.d.deviceId, clockSkewS: this.d.config.clockSkewS, used: (nonce) => this.nonces.has(nonce), nowS: Math.floor(Date.now() / 1000) };
  }

  // ---- announcements and the policy ----

  private async handleAnnouncement(payload: Buffer): Promise<void> {
    if (payload.length === 0) return; // a cleared retained message
    // Under the trust of the remote the device follows (its own, or the origin's).
    const channel = followedChannel(await this.d.sysroot.readConfig());
    const scope = scopeOf(this.d.sysroot, channel.name, channel.remote);
    let role = await roleKeys(this.d.sysroot, 'summary', scope);
    let opened = await openSigned('announce', payload, role.keys);
    if (!opened.ok && opened.reason === 'untrusted') {
      // Signed by a key this device does not trust yet: a newer trust document on the remote may name it.
      const before = (await readDeviceTrust(this.d.sysroot, scope)).version;
      const after = await walkTrustChain(this.d.remote, this.d.sysroot, undefined, scope).catch((err) => (this.d.log(`announce: trust chain: ${(err as Error).message}`), null));
      if (after && after.version !== before) {
        role = await roleKeys(this.d.sysroot, 'summary', scope);
        opened = await openSigned('announce', payload, role.keys);
      }
    }
    if (opened.ok && new Set(opened.signedBy).size < role.threshold) opened = { ok: false, reason: 'untrusted', body: opened.body, keys: opened.signedBy };
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
    if (this.stopped) return;
    const r = this.retry.fail(() => {
      this.enqueue(async () => {
        if (this.stopped || this.newestAnnouncement !== a || this.handled.has(announcementKey(a))) return;
        this.d.log(`announce: trying version ${a.version} again (attempt ${this.retry.failures + 1})`);
        this.setUpdate({ retry: null });
        await this.actOn(a);
      });
    }, Date.now());
    if (!r) return;
    this.setUpdate({ retry: { at: r.at.toISOString(), failures: r.failures } });
    this.d.log(`announce: version ${a.version} failed (attempt ${r.failures}); trying again in ${(r.ms / 1000).toFixed(0)} s`);
  }

  private clearRetry(): void {
    this.retry.clear();
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
    let offered: { commit: string; version: string } | null = null;
    try {
      this.setUpdate({ state: 'checking', progress: null });
      const c = await check(ctx);
      this.lastCheckS = Math.floor(Date.now() / 1000);
      // A head that moves back again later (after a newer one) is a new decision, journaled again.
      if (!c.update?.older) this.headOlderCommit = null;
      if (!c.available || !c.update) {
        this.setUpdate({ state: 'up-to-date' });
        return true;
      }
      if (c.update.older) {
        // The vendor moved the head back (a held rollout): upgrade would refuse it as a downgrade,
        // and this device, healthy on a newer release, is up to date. Not an error, nor retried.
        this.setUpdate({ state: 'up-to-date' });
        const first = this.headOlderCommit !== c.update.commit;
        this.headOlderCommit = c.update.commit;
        await this.skip(event, 'head-older', `${what}: the head of ${this.ref}, version ${c.update.version}, is older than the booted version ${c.booted.version} (a held rollout): staying on ${c.booted.version}`, { commit: c.update.commit, version: c.update.version, booted_version: c.booted.version }, { journal: first });
        return true;
      }
      // An announcement (a new decision of the vendor's) lifts a cancel; a periodic check does not.
      if (a) this.cancelledCommit = null;
      else if (c.update.commit === this.cancelledCommit) {
        this.setUpdate({ state: 'available' });
        await this.skip(event, 'cancelled', `${what}: not acting on version ${c.update.version}: larch cancel stopped it; an announcement, a newer release or an upgrade command starts it again`, { commit: c.update.commit });
        return true;
      }
      if (!a && this.outsideRollout(c.update.commit)) {
        // The newest announcement of this commit left this device out: the periodic check waits too.
        this.setUpdate({ state: 'waiting-rollout' });
        await this.skip(event, 'outside-rollout', `${what}: version ${c.update.version} is announced at rollout ${this.newestAnnouncement!.rollout}%: this device waits for a wider rollout`, { commit: c.update.commit });
        return true;
      }
      // A barrier release is offered instead of the announced head: going through it is the way there.
      if (a && c.update.commit !== a.commit && !c.update.barrier) {
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
      offered = c.update;
      const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, 'daemon upgrade', () => upgrade(ctx, { downloadOnly: action === 'download' })));
      this.setUpdate({ state: r.result === 'staged' ? 'staged' : r.result === 'downloaded' ? 'downloaded' : r.result === 'no-update' ? 'up-to-date' : 'idle', progress: null });
      if (r.result === 'pinned') await this.skip(event, 'pinned', `${what}: not acted on, the device is pinned (larch unpin to resume)`, { commit: c.update.commit });
      // The reboot runs later in the queue (or waits for a window or a lock beside it).
      if (r.result === 'staged' && action === 'stage-and-reboot') this.planner.request(`version ${r.to?.version} staged by policy apply-and-reboot`);
      return true;
    } catch (err) {
      if (isCancelled(err) && err.data.nonce === undefined && offered) {
        // larch cancel (a rollback command's preemption carries its nonce and is retried): the operator's choice, not a failure.
        this.cancelledCommit = offered.commit;
        this.setUpdate({ state: 'available', progress: null });
        await this.skip(event, 'cancelled', `${what}: version ${offered.version} was cancelled by larch cancel during the ${err.data.phase}; the device is as it was`, { commit: offered.commit, phase: err.data.phase });
        return true;
      }
      if (err instanceof LarchError && err.data.reason === 'agent-too-old') {
        // Not a failure to retry: this agent cannot install it (compat.ts); a barrier or a newer agent can.
        this.setUpdate({ state: 'idle', progress: null });
        await this.skip(event, 'agent-too-old', `${what}: ${err.message}`, { required: err.data.required, agent: err.data.agent, barrier: err.data.barrier });
        return true;
      }
      this.recordError(err);
      this.setUpdate({ state: 'error', progress: null });
      return false;
    }
  }

  /**
   * The rebase command: as `larch rebase [REMOTE:]REF` on a remote the device has (remotes are
   * added on the device); the daemon's MQTT session keeps the ref it listens to until restarted.
   */
  private async rebase(ctx: UpdateContext, ref: string, remote: string | undefined): Promise<unknown> {
    const config = await this.d.sysroot.readConfig();
    const followed = followedChannel(config);
    const name = remote ?? followed.name;
    const entry = remoteNamed(config, name);
    this.setUpdate({ state: 'downloading' });
    const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, "command 'rebase'", () => upgrade({ ...ctx, remote: this.d.remoteFor(entry), channel: { name, ref, remote: entry } })));
    const already = name === followed.name && ref === followed.ref;
    const result = rebaseResult(r.result, already);
    this.setUpdate({ state: r.result === 'staged' ? 'staged' : 'up-to-date', progress: null });
    return { result, from: r.from, to: r.to, download: r.download, etc_conflicts: r.etc_conflicts, following: { remote: name, ref } };
  }

  /** Whether the newest announcement names this commit and leaves this device out of its rollout. */
  private outsideRollout(commit: string): boolean {
    const a = this.newestAnnouncement;
    return a !== null && a.commit === commit && !inRollout(this.d.deviceId, a.rollout, this.d.config.wariness);
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
          // `why` is the planner's whole reason (what was staged, and the strategy that let it go).
          await this.d.reboot(why);
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
      mqttConnected: this.session ? this.session.connected : null,
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
    const v = await vetCommand(payload, await this.commandCheck());
    if (!v.ok) return this.report({ nonce: v.nonce, cmd: v.cmd, result: 'refused', reason: v.reason, message: v.message }, v.data);
    const c = v.command;
    const now = Math.floor(Date.now() / 1000);
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
        this.cancelledCommit = null;
        this.setUpdate({ state: 'downloading' });
        const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, "command 'upgrade'", () => upgrade(ctx)));
        output = { result: r.result, from: r.from, to: r.to, download: r.download, etc_conflicts: r.etc_conflicts };
        this.setUpdate({ state: r.result === 'staged' ? 'staged' : 'up-to-date', progress: null });
      } else if (c.cmd === 'rollback') {
        output = await withDeviceLock(this.d.sysroot, "command 'rollback'", () => rollback(this.d.sysroot));
      } else if (c.cmd === 'cleanup') {
        output = await withDeviceLock(this.d.sysroot, "command 'cleanup'", () => cleanup(this.d.sysroot));
      } else if (c.cmd === 'deploy' && c.args && 'version' in c.args) {
        this.setUpdate({ state: 'downloading' });
        const { version, allow_downgrade, retry_failed } = c.args;
        const r = await this.countUpgrade(withDeviceLock(this.d.sysroot, "command 'deploy'", () => upgrade(ctx, { target: version, allowDowngrade: allow_downgrade, retryFailed: retry_failed })));
        output = { result: r.result, from: r.from, to: r.to, download: r.download, etc_conflicts: r.etc_conflicts, newest: r.newest ?? null };
        this.setUpdate({ state: r.result === 'staged' ? 'staged' : 'up-to-date', progress: null });
      } else if (c.cmd === 'rebase' && c.args && 'ref' in c.args) {
        output = await this.rebase(ctx, c.args.ref, c.args.remote);
      } else if (c.cmd === 'pin' || c.cmd === 'unpin') {
        await withDeviceLock(this.d.sysroot, `command '${c.cmd}'`, () => setPinned(this.d.sysroot, c.cmd === 'pin'));
        output = { pinned: c.cmd === 'pin' };
      } else if (c.cmd === 'cancel') {
        const sent = this.sentCancel;
        this.sentCancel = null;
        output = sent ? await settleCancel(this.d.sysroot, sent) : IDLE;
      } else if ((c.cmd === 'install' || c.cmd === 'uninstall') && c.args && 'packages' in c.args) {
        const names = c.args.packages;
        this.setUpdate({ state: 'downloading' });
        const r = await withDeviceLock(this.d.sysroot, `command '${c.cmd}'`, () => changeLayering(ctx, { verb: c.cmd as 'install' | 'uninstall', names, files: [] }));
        output = { result: r.result, from: r.from, to: r.to };
        this.setUpdate({ state: r.result === 'staged' ? 'staged' : 'idle', progress: null });
      } else {
        output = { result: 'rebooting' };
      }
      await this.report({ nonce: c.nonce, cmd: c.cmd, result: 'ok', message: `ran command '${c.cmd}' (signed by ${v.signedBy.join(', ')})`, output }, { signedBy: v.signedBy });
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

  private async report(r: Omit<CommandResult, 'format' | 'device' | 'time'>, data: Record<string, unknown>): Promise<void> {
    const full: CommandResult = { format: 1, device: this.d.deviceId, ...r, time: new Date().toISOString() };
    if (r.result === 'refused' && r.reason) {
      this.lastSkip = { reason: r.reason, message: r.message, time: full.time };
      this.queueStatus();
    }
    if (r.result !== 'ok') this.d.log(`command: ${r.message}`);
    if (r.result !== 'refused' || this.refusals.admit(data, Date.now())) await this.journal(EVENT_COMMAND, r.message, { nonce: r.nonce, cmd: r.cmd, result: r.result, ...(r.reason ? { reason: r.reason } : {}), ...(r.code ? { code: r.code } : {}), ...data });
    if (this.session) await this.session.publishCommandResult(full).catch((err) => this.d.log(`command result: ${(err as Error).message}`));
  }

  /**
   * Something not acted on: one journal line with its reason, and the status's last_skip. The
   * same decision again (each periodic check of a release that failed here) updates last_skip's
   * time without another line, as does opts.journal false (the caller knows the decision is
   * journaled already, with another message: head-older's announcement and periodic checks).
   */
  private async skip(event: JournalEvent, reason: string, message: string, data: Record<string, unknown> = {}, opts: { journal?: boolean } = {}): Promise<void> {
    const again = (this.lastSkip?.reason === reason && this.lastSkip.message === message) || opts.journal === false;
    this.lastSkip = { reason, message, time: new Date().toISOString() };
    this.queueStatus();
    if (again) return;
    this.d.log(`skip (${reason}): ${message}`);
    await this.journal(event, message, { reason, ...data });
  }

  private async journal(event: JournalEvent, message: string, data: Record<string, unknown>): Promise<void> {
    await appendJournal(this.d.sysroot.journalPath, { event, message, data }).catch((err) => this.d.log(`journal: ${(err as Error).message}`));
    void this.journalPublisher.poll();
  }
}

function announcementKey(a: Announcement): string {
  return `${a.commit}@${a.created}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

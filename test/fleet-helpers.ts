/**
 * A fleet of simulated devices in this one process: copies of one provisioned sysroot, each run by
 * an in-process agent (src/agent/daemon/daemon.ts, the code `larch daemon` runs) against one
 * broker and one vendor remote.
 *
 * With policy apply-and-reboot the devices really reboot, as far as a sysroot can: the agent's
 * reboot hook stops that agent (as systemd stops `larch daemon` at shutdown: a last retained
 * status with online false), boots the sysroot as `larch sim-boot --sysroot DIR` does (the
 * bootloader step on the device's env file, then boot-check: the booted slot's health checks with
 * LARCH_SYSROOT=DIR), again for as long as boot-check asks for another reboot (an unhealthy
 * unconfirmed slot spends its tries, then the bootloader falls back to the good slot), and then
 * starts a new agent on the same sysroot with the same id and configuration (a new MQTT
 * connection, which publishes the new status). With policy apply (or any other) the hook does
 * nothing, as fleet.test.ts wants.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type SimBootResult, simBoot } from '../src/agent/boot-check.ts';
import { Daemon } from '../src/agent/daemon/daemon.ts';
import { mergerFor } from '../src/agent/etc/merger.ts';
import { type DaemonConfig, DEFAULT_DAEMON_CONFIG } from '../src/agent/policy.ts';
import { httpFetcher } from '../src/agent/remote/http-fetch.ts';
import { remoteOver } from '../src/agent/remote/remote.ts';
import { Sysroot } from '../src/agent/sysroot.ts';
import { MAX_TRIES } from '../src/bootcount/state.ts';
import { REF, type Test } from './device-helpers.ts';
import { larchOk, tempDir } from './helpers.ts';

/** One boot of a reboot: what sim-boot's bootloader step chose and what boot-check decided. */
export interface FleetBoot {
  slot: 'A' | 'B';
  version: string | null;
  healthy: boolean;
  /** boot-check's outcome: confirmed, already-good, retry, unhealthy-stay, both-bad. */
  outcome: SimBootResult['check']['outcome'];
  fell_back: boolean;
  rescue: boolean;
  failed_checks: string[];
  /** How long this sim-boot took (a confirmed boot also runs cleanup: the longest). */
  ms: number;
}

/** What one reboot did: from the agent's request to the new agent started. */
export interface FleetReboot {
  reason: string;
  /** The sim-boots it took (1 for a healthy boot; tries + 1 for a fallback), the last one settled. */
  boots: FleetBoot[];
  /** ms since the epoch: the hook was called; the old agent stopped; the last sim-boot ended; the new agent started (0: not yet). */
  requestedAt: number;
  stoppedAt: number;
  bootedAt: number;
  doneAt: number;
  /** An error of the stop, a sim-boot or the start (the helper logs it, and still starts the agent when it can). */
  error?: string;
}

export interface FleetDevice {
  id: string;
  /** Its sysroot. */
  dir: string;
  /** The agent running now (a new one after each reboot). */
  daemon(): Daemon;
  /** Reboots completed (each is one or more sim-boots, then a new agent); reboots[i].boots has each sim-boot. */
  boots: number;
  reboots: FleetReboot[];
  /** The reboot under way, if any: resolves when its new agent has started (or it gave up). */
  rebooting: Promise<void> | null;
}

export interface Fleet {
  /** The temp dir holding the prototype (proto/) and the devices (one dir per id). */
  root: string;
  proto: string;
  devices: FleetDevice[];
  device(id: string): FleetDevice;
  /** Every agent's log lines as `ID: line`; the helper's own lines are `ID: fleet: ...`. */
  logs: string[];
  /** Errors of reboots (`ID: message`): a test may assert there are none. */
  errors: string[];
  /** Waits for reboots under way and stops every agent (no more reboots after it). Idempotent; also a teardown. */
  stop(): Promise<void>;
}

export interface FleetOptions {
  ids: string[];
  /** The vendor's remote (`larch serve` URL). */
  repoUrl: string;
  /** The vendor's public key file (KEY.pub). */
  keyPub: string;
  mqttUrl: string;
  policy: 'apply' | 'apply-and-reboot';
  /** Defaults as fleet.test.ts: jitter 2 s, poll 1000 ms, retry 5 s. */
  jitterS?: number;
  pollIntervalMs?: number;
  retryIntervalS?: number;
  /** More daemon settings (checkIntervalS, statusIntervalS, rebootStrategy, ...). */
  config?: Partial<DaemonConfig>;
  /** A provisioned and booted sysroot to copy (provisionPrototype); default: one is made in root. */
  proto?: string;
  /** Where the device dirs go; default a new temp dir (removed at the end of the test). */
  root?: string;
  /** Called for each device after its copy is made, before its agent starts (e.g. a marker file in its sysroot). */
  prepare?: (id: string, dir: string) => void | Promise<void>;
}

/** `larch provision --bootloader uboot` then `larch sim-boot` at root/proto: slot A booted and good. */
export async function provisionPrototype(root: string, opts: { repoUrl: string; keyPub: string }): Promise<string> {
  const proto = join(root, 'proto');
  await larchOk(['provision', '--sysroot', proto, '--repo-url', opts.repoUrl, '--ref', REF, '--keys', opts.keyPub, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', proto]);
  return proto;
}

/**
 * Copies the sysroot `proto` to `dir` for a device of its own. fw_env.config names its env file by
 * absolute path: each copy gets its own env, not proto's (200 devices writing one env was caught by
 * the read-back check, as it should be).
 */
export function copyDevice(proto: string, dir: string): void {
  cpSync(proto, dir, { recursive: true, verbatimSymlinks: true });
  const envConfig = join(dir, 'boot/fw_env.config');
  writeFileSync(envConfig, readFileSync(envConfig, 'utf8').replaceAll(`${proto}/`, `${dir}/`));
}

/** More sim-boots than this for one reboot is a bug (a slot has at most MAX_TRIES tries, then the fallback boot). */
const MAX_BOOTS_PER_REBOOT = 2 * MAX_TRIES + 2;

/**
 * Provisions (or takes) a prototype, copies it per id into root/ID, calls prepare, and starts an
 * agent per device, one after the other (each start awaited). Stopped at the test's end.
 */
export async function startFleet(t: Test, opts: FleetOptions): Promise<Fleet> {
  const root = opts.root ?? tempDir(t);
  const proto = opts.proto ?? (await provisionPrototype(root, opts));
  const config: DaemonConfig = { ...DEFAULT_DAEMON_CONFIG, policy: opts.policy, mqttUrl: opts.mqttUrl, jitterS: opts.jitterS ?? 2, pollIntervalMs: opts.pollIntervalMs ?? 1000, retryIntervalS: opts.retryIntervalS ?? 5, ...opts.config };
  const logs: string[] = [];
  const errors: string[] = [];
  const devices: FleetDevice[] = [];
  /** Each device's agent running now. */
  const current = new Map<string, Daemon>();
  let stopping = false;

  const newDaemon = (dev: FleetDevice): Daemon =>
    new Daemon({
      sysroot: new Sysroot(dev.dir),
      config,
      deviceId: dev.id,
      remote: remoteOver(httpFetcher(opts.repoUrl)),
      remoteFor: () => remoteOver(httpFetcher(opts.repoUrl)),
      merger: mergerFor(),
      log: (line) => logs.push(`${dev.id}: ${line}`),
      reboot: opts.policy === 'apply-and-reboot' ? async (reason) => requestReboot(dev, reason) : async () => {},
    });

  /**
   * The agent's reboot hook: returns at once, as `systemctl reboot` does. The reboot runs outside
   * the agent's work queue (the hook is called from a job in it, and the reboot waits for that
   * queue to drain: awaiting it here would wait for itself).
   */
  const requestReboot = (dev: FleetDevice, reason: string): void => {
    if (stopping) return void logs.push(`${dev.id}: fleet: reboot requested while the fleet stops: not rebooting (${reason})`);
    if (dev.rebooting) return void logs.push(`${dev.id}: fleet: reboot requested during a reboot: ignored (${reason})`);
    const r: FleetReboot = { reason, boots: [], requestedAt: Date.now(), stoppedAt: 0, bootedAt: 0, doneAt: 0 };
    dev.reboots.push(r);
    logs.push(`${dev.id}: fleet: reboot requested: ${reason}`);
    const done = new Promise<void>((resolve) => setImmediate(resolve)).then(() => reboot(dev, r));
    dev.rebooting = done.finally(() => {
      dev.rebooting = null;
    });
  };

  const reboot = async (dev: FleetDevice, r: FleetReboot): Promise<void> => {
    const fail = (what: string, err: unknown) => {
      const msg = `${what}: ${(err as Error)?.stack ?? err}`;
      r.error = r.error ? `${r.error}; ${msg}` : msg;
      errors.push(`${dev.id}: ${msg}`);
      logs.push(`${dev.id}: fleet: ${msg}`);
    };
    const old = current.get(dev.id)!;
    try {
      await old.stop();
      // The machine going down ends whatever the old agent was doing; in-process it has to finish
      // first: the device lock is re-entrant within a process (device-lock.ts), so a job of the old
      // agent would not keep boot-check out. After stop() nothing new is queued.
      await drained(old);
    } catch (err) {
      fail('stopping the agent', err);
    }
    r.stoppedAt = Date.now();
    const sysroot = new Sysroot(dev.dir);
    try {
      for (let n = 1; ; n++) {
        const start = Date.now();
        const s = await simBoot(sysroot);
        const b: FleetBoot = { slot: s.slot, version: s.check.version, healthy: s.check.healthy, outcome: s.check.outcome, fell_back: s.check.fell_back, rescue: s.rescue, failed_checks: s.check.failed_checks, ms: Date.now() - start };
        r.boots.push(b);
        logs.push(`${dev.id}: fleet: boot ${n}: slot ${b.slot} (version ${b.version})${b.rescue ? ' in rescue' : ''}: ${b.healthy ? 'healthy' : `unhealthy (${b.failed_checks.join(', ')})`}, ${b.outcome}${b.fell_back ? `, fell back from slot ${s.check.from}` : ''}${s.check.reboot ? ': rebooting again' : ''} (${b.ms} ms)`);
        if (!s.check.reboot) break;
        if (n >= MAX_BOOTS_PER_REBOOT) throw new Error(`boot-check still asks for a reboot after ${n} boots`);
        if (stopping) {
          logs.push(`${dev.id}: fleet: the fleet stops: not booting again after boot ${n}`);
          break;
        }
      }
    } catch (err) {
      fail('sim-boot', err);
    }
    r.bootedAt = Date.now();
    dev.boots++;
    if (stopping) {
      r.doneAt = Date.now();
      return void logs.push(`${dev.id}: fleet: the fleet stops: no new agent after the reboot`);
    }
    const d = newDaemon(dev);
    current.set(dev.id, d);
    try {
      await d.start();
    } catch (err) {
      fail('starting the agent', err);
    }
    r.doneAt = Date.now();
    logs.push(`${dev.id}: fleet: reboot done in ${r.doneAt - r.requestedAt} ms (${r.boots.length} boot${r.boots.length === 1 ? '' : 's'}); new agent started`);
  };

  let stopped: Promise<void> | null = null;
  const fleet: Fleet = {
    root,
    proto,
    devices,
    device: (id) => {
      const dev = devices.find((d) => d.id === id);
      if (!dev) throw new Error(`no device ${id} in the fleet`);
      return dev;
    },
    logs,
    errors,
    stop() {
      stopped ??= (async () => {
        stopping = true;
        // A reboot under way finishes (without a new agent); its agent was stopped already.
        await Promise.all(devices.map((d) => d.rebooting));
        // A job still running (a check, a download) writes into the sysroot: done before it is removed.
        await Promise.all([...current.values()].map(async (d) => {
          await d.stop();
          await drained(d);
        }));
      })();
      return stopped;
    },
  };
  // Teardowns run last-registered first: the agents stop before root is removed (and a start
  // that fails half-way still stops the agents started).
  t.teardown(() => fleet.stop());
  for (const id of opts.ids) {
    const dir = join(root, id);
    copyDevice(proto, dir);
    await opts.prepare?.(id, dir);
    const dev: FleetDevice = { id, dir, daemon: () => current.get(id)!, boots: 0, reboots: [], rebooting: null };
    devices.push(dev);
    const d = newDaemon(dev);
    current.set(id, d);
    await d.start();
  }
  return fleet;
}

/**
 * Resolves when the agent's work queue is idle. The queue is private to Daemon (`work`, a promise
 * chain each job extends): read here, for the tests only.
 */
async function drained(d: Daemon): Promise<void> {
  const q = d as unknown as { work: Promise<void> };
  for (let last: Promise<void> | null = null; q.work !== last; ) {
    last = q.work;
    await last;
  }
}

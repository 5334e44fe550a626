/**
 * What runs at every boot (`larch boot-check`) and its in-process stand-in for a reboot
 * (`larch sim-boot`): learn which slot booted, run the health checks of that deployment, then
 * mark it good, or spend another try by rebooting, or report a fallback / both-bad rescue. The
 * decision itself is planBootCheck() in src/bootcount/state.ts; this module does the I/O.
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LarchError } from '../errors.ts';
import { failpoint } from '../failpoint.ts';
import { type HealthReport, runHealthChecks } from '../bootcount/health.ts';
import { type BootCheckPlan, type BootState, type Slot, applyAll, bootloaderChoose, next, other, planBootCheck } from '../bootcount/state.ts';
import { writeFileAtomic } from '../_durable.ts';
import { type BootEnvHealth, type LastBoot, bootedSlot, changeBootState, lastBootPath, readBootState, readJsonFile, readLkgMarker, realBootedSlot, writeLastBoot } from './boot.ts';
import type { Sysroot } from './sysroot.ts';
import { type DeploymentRecord, encodeDeploymentRecord, finalizeMarkerPath, readDeployment, recoverEtcSwap } from './deploy.ts';
import { readSlotKargs } from './deployment-kargs.ts';
import { failedReleasesPath, kargsOf, rememberBootFailure, rememberFailure } from './failed-store.ts';
import { cleanup } from './update.ts';
import { appendJournal } from './journal.ts';
import { followDeployment } from './following.ts';
import { VERSION } from '../version.ts';
import { execFile } from 'node:child_process';
import { isAgentFile, treeAgentPath } from './agent-binary.ts';
import { withDeviceLock } from './device-lock.ts';
import { endLive } from './live/state.ts';
import { recordGoodRelease } from './release-floor.ts';

export interface BootCheckOptions {
  /** Treat the health checks as failed (sim-boot --unhealthy: a stand-in for a broken tree). */
  forceUnhealthy?: boolean;
  /** Per-check timeout. */
  timeoutMs?: number;
}

export interface BootCheckResult extends LastBoot {
  health: HealthReport | null;
  /** The boot env as this boot-check found it: ok, repaired (rewritten), or corrupt (a board env larch may not rewrite: nothing recorded). */
  boot_env: BootEnvHealth;
  /** The version of the agent that ran this boot-check (V of `larch V`). */
  agent_version: string;
}

/** @throws NOT_FOUND when no larch.slot= says which slot booted */
export async function bootCheck(sysroot: Sysroot, opts: BootCheckOptions = {}): Promise<BootCheckResult> {
  const config = await sysroot.readConfig();
  const slot = await bootedSlot(sysroot);
  if (!slot) {
    throw new LarchError('NOT_FOUND', 'cannot tell which slot booted: the kernel command line has no larch.slot=A|B', {
      hint: 'boot through the larch boot script (board/uboot/boot.cmd or board/grub/grub.cfg), which adds larch.slot=; in a test sysroot run larch sim-boot',
      data: { sysroot: sysroot.path, kernel_arg: 'larch.slot' },
    });
  }
  const swap = await recoverEtcSwap(sysroot, slot);
  let record = await readDeployment(sysroot, slot);
  const journal = (entry: Parameters<typeof appendJournal>[1]) => appendJournal(sysroot.journalPath, { slot, commit: record?.commit, version: record?.version, ...entry });
  if (record) record = await checkFinalized(sysroot, record, swap, journal);

  let health: HealthReport | null = null;
  let failed: string[] = [];
  if (!record) failed = [`slot ${slot} holds no deployment`];
  else if (opts.forceUnhealthy) failed = ['forced unhealthy (sim-boot --unhealthy)'];
  else {
    health = await runHealthChecks({ root: sysroot.deployDir(slot), timeoutMs: opts.timeoutMs, env: { ...process.env, LARCH_SLOT: slot, LARCH_SYSROOT: sysroot.path } });
    failed = health.required.filter((c) => !c.passed).map((c) => c.name);
    for (const c of [...health.required, ...health.wanted]) {
      await journal({ event: 'health', message: `${c.kind} health check ${c.name} ${c.passed ? 'passed' : 'FAILED'}`, data: { check: c.name, kind: c.kind, passed: c.passed, exit_code: c.exit_code } });
    }
  }
  const healthy = failed.length === 0;

  let plan: BootCheckPlan | null = null;
  let triesLeft = 0;
  // A damaged env is repaired here when larch owns it; a damaged board env cannot take the
  // result: decide on what the bootloader does with it (the safe default) and say so.
  const { env, state: bootloaderView } = await readBootState(sysroot, config);
  if (env.health === 'corrupt') {
    plan = planBootCheck(bootloaderView, slot, healthy);
    triesLeft = bootloaderView.slots[slot].triesLeft;
    await journal({ event: 'error', message: `boot-check cannot record its result: ${env.message}`, data: { boot_env: 'corrupt', hint: env.hint } });
  } else {
    await changeBootState(sysroot, config, (state) => {
      plan = planBootCheck(state, slot, healthy);
      // `systemd-bless-boot good` blesses the booted entry (its name) but leaves the rescue
      // entry, larch's last known good slot, where it was: catch up, as a mark-good would.
      if (config.bootloader === 'systemd-boot' && plan.outcome === 'already-good' && state.lastGood !== slot) plan = { ...plan, events: [...plan.events, { type: 'marked-good', slot }] };
      triesLeft = state.slots[slot].triesLeft;
      return plan.events.length > 0 ? applyAll(state, plan.events) : null;
    });
    failpoint('boot-check::after-bootenv-write');
  }
  const p = plan! as BootCheckPlan;
  // A release that spent its last try, or that the bootloader left, is never staged again by itself.
  await rememberBootFailure(sysroot, { slot, commit: record?.commit ?? null, version: record?.version ?? null, kargs: record?.kargs, retry: p.outcome === 'retry', triesLeft, failed, fellBackFrom: p.report.fellBack ? p.report.from : null, previousBoot: await readJsonFile<LastBoot>(lastBootPath(sysroot)).catch(() => null) }).catch((err) =>
    journal({ event: 'error', message: `could not remember the failed release in ${failedReleasesPath(sysroot)}: ${(err as Error).message}` }).catch(() => {}),
  );
  if (p.report.fellBack) {
    await journal({ event: 'fallback', message: `the bootloader fell back from slot ${p.report.from} to slot ${slot}: slot ${p.report.from} used up its tries without being marked good`, data: { from: p.report.from, to: slot } });
    // A rebase that fell back: the device follows the channel it runs again.
    if (record) await followDeployment(sysroot, record, `fell back to slot ${slot}`).catch((err) => journal({ event: 'error', message: `could not follow the channel of slot ${slot} again: ${(err as Error).message}` }));
  }
  const messages: Record<BootCheckPlan['outcome'], string> = {
    confirmed: `slot ${slot} is healthy and now marked good`,
    'already-good': `slot ${slot} is healthy (already marked good)`,
    retry: `slot ${slot} is unhealthy (${failed.join(', ')}): rebooting to spend another try or fall back`,
    'unhealthy-stay': `slot ${slot} is unhealthy (${failed.join(', ')}) but it is the good slot with no update pending: staying, not rebooting`,
    'both-bad': `no slot is bootable and slot ${slot} (last known good) is unhealthy (${failed.join(', ')}): staying in rescue, not rebooting`,
  };
  const event = p.outcome === 'confirmed' ? 'mark-good' : p.outcome === 'both-bad' ? 'rescue' : 'boot';
  await journal({ event, message: messages[p.outcome], data: { outcome: p.outcome, healthy, failed, agent_version: VERSION } });
  // A slot good now raises the release floor to its release (release-floor.ts); never a reason for the boot check to fail.
  if ((p.outcome === 'confirmed' || p.outcome === 'already-good') && env.health !== 'corrupt') {
    await recordGoodRelease(sysroot, config, slot).catch((err) => journal({ event: 'error', message: `could not raise the release floor: ${(err as Error).message}`, data: { code: err instanceof LarchError ? err.code : 'INTERNAL' } }));
  }

  const result: BootCheckResult = {
    time: new Date().toISOString(),
    slot,
    commit: record?.commit ?? null,
    version: record?.version ?? null,
    fell_back: p.report.fellBack,
    from: p.report.from,
    rescue: p.report.rescue,
    healthy,
    outcome: p.outcome,
    reboot: p.reboot,
    failed_checks: failed,
    health,
    boot_env: env.health,
    agent_version: VERSION,
  };
  const { health: _omit, boot_env: _env, ...lastBoot } = result;
  // The env already says what happened; a full filesystem must not make a confirmed boot fail.
  await writeLastBoot(sysroot, lastBoot).catch((err) => {
    if (!(err instanceof LarchError && err.code === 'NO_SPACE')) throw err;
    process.stderr.write(`larch: warning: ${err.message}: last boot not recorded\n`);
  });
  failpoint('boot-check::after-last-boot-write');
  // A confirmed slot makes the objects only older deployments used garbage: free them now, so
  // a device does not fill up over releases. Never a reason for the boot check to fail.
  if (p.outcome === 'confirmed') {
    await cleanup(sysroot).catch((err) => journal({ event: 'error', message: `cleanup after mark-good failed: ${(err as Error).message}`, data: { code: err instanceof LarchError ? err.code : 'INTERNAL' } }));
  }
  return result;
}

/**
 * A finalize of this slot that started and did not complete (S/larch/deploy/X.finalizing left
 * behind): completed when its new /etc was whole (the swap took .etc.new), else reported in the
 * journal and the deployment record (status), since /etc edits made after the upgrade may be
 * missing here; the other slot's /etc still has them.
 */
async function checkFinalized(sysroot: Sysroot, record: DeploymentRecord, swap: 'new' | 'old' | null, journal: (e: Parameters<typeof appendJournal>[1]) => Promise<unknown>): Promise<DeploymentRecord> {
  const marker = finalizeMarkerPath(sysroot, record.slot);
  const started = await readFile(marker, 'utf8').then((t) => JSON.parse(t) as { started: string; from_slot: Slot }, () => null);
  if (!started) return record;
  const dir = sysroot.deployDir(record.slot);
  await rm(join(dir, '.etc.new'), { recursive: true, force: true });
  await rm(join(dir, '.etc.old'), { recursive: true, force: true });
  let updated = record;
  if (swap === 'new') {
    await journal({ event: 'finalize', message: `the /etc merge of slot ${record.slot} at shutdown (finalize, started ${started.started}) was cut between its renames; completed now: its /etc has the edits made after the upgrade`, data: { interrupted: true, completed: true } });
  } else {
    updated = { ...record, finalizeInterrupted: { started: started.started, detected: new Date().toISOString(), from_slot: started.from_slot } };
    await writeFileAtomic(sysroot.deployRecordPath(record.slot), encodeDeploymentRecord(updated));
    await journal({
      event: 'finalize',
      message: `the /etc merge of slot ${record.slot} at shutdown (finalize, started ${started.started}) did not complete: /etc edits made on slot ${started.from_slot} after the upgrade may be missing here; they are still in ${join(sysroot.deployDir(started.from_slot), 'etc')}`,
      data: { interrupted: true, completed: false, from_slot: started.from_slot },
    });
  }
  await rm(marker, { force: true });
  return updated;
}

export interface SimBootResult {
  slot: Slot;
  rescue: boolean;
  /** Whether the simulated bootloader wrote the env (spent a try, or set rescue). */
  wrote: boolean;
  /** The booted deployment's own agent that ran boot-check; null: this process ran it. */
  agent_path: string | null;
  check: BootCheckResult;
}

/**
 * A simulated reboot: the bootloader's step (bootloaderChoose, what board/ scripts do) on the
 * sysroot's real env file, the chosen slot recorded as the kernel command line, then boot-check,
 * run as a booted device runs it: by the booted deployment's own agent (its /usr/bin/larch) when
 * it carries one, else in this process. An env with no valid copy reads as the scripts read it:
 * the safe default (the LKG marker's slot), no write; boot-check then repairs it. Refused on a
 * real root (/, /sysroot) and on a system booted through larch (larch.slot= on /proc/cmdline):
 * there the env is the device's own. Holds the device lock, but not while the deployment's agent
 * runs (it takes the lock itself).
 * @throws USAGE on a real root
 */
export async function simBoot(sysroot: Sysroot, opts: BootCheckOptions = {}): Promise<SimBootResult> {
  const real = await realBootedSlot();
  if (sysroot.realDevice || real) {
    throw new LarchError('USAGE', `sim-boot refuses ${real ? `a system booted through larch (larch.slot=${real} on /proc/cmdline)` : `the real root '${sysroot.path}'`}: it rewrites the boot env as a reboot would`, {
      data: { sysroot: sysroot.path, booted: real },
      hint: 'run it on a test sysroot (a directory made with larch provision --sysroot DIR); on a device, reboot',
    });
  }
  const locked = <T>(fn: () => Promise<T>) => withDeviceLock(sysroot, 'larch sim-boot', fn);
  const step = await locked(async () => {
    // A reboot ends what apply-live mounted.
    await endLive(sysroot);
    const c = await bootloaderStep(sysroot);
    // --unhealthy stands in for a broken tree: this process fakes the failing checks.
    const agent = opts.forceUnhealthy ? null : await ownAgent(sysroot, c.slot);
    return { c, agent, check: agent ? null : await bootCheck(sysroot, opts) };
  });
  const { c, agent } = step;
  let check = step.check;
  let ran: string | null = null;
  if (!check && agent) {
    check = await agentBootCheck(agent, sysroot, opts);
    if (check) ran = agent;
    else {
      await appendJournal(sysroot.journalPath, { event: 'error', slot: c.slot, message: `sim-boot: the agent of slot ${c.slot} (${agent}) cannot run on this machine: boot-check runs in the agent running sim-boot (larch ${VERSION})`, data: { agent_path: agent } });
      check = await locked(() => bootCheck(sysroot, opts));
    }
  }
  return { slot: c.slot, rescue: c.rescue, wrote: c.wrote, agent_path: ran, check: check! };
}

/** The bootloader's choice on the env file, recorded as the kernel command line. */
async function bootloaderStep(sysroot: Sysroot): Promise<ReturnType<typeof bootloaderChoose>> {
  const config = await sysroot.readConfig();
  if (config.bootloader === 'systemd-boot') return firmwareStep(sysroot);
  const store = await sysroot.envStore(config.bootloader);
  const lkgMarker = await readLkgMarker(sysroot, config.bootloader);
  let choice: ReturnType<typeof bootloaderChoose> | null = null;
  try {
    await store.update((vars) => {
      choice = bootloaderChoose(vars, { lkgMarker });
      if (!choice.wrote) return;
      vars.clear();
      for (const [k, v] of choice.newVars) vars.set(k, v);
    });
  } catch (err) {
    if (!(err instanceof LarchError && (err.code === 'ENV_CORRUPT' || (config.bootloader === 'grub' && err.code === 'NOT_FOUND')))) throw err;
    // No valid copy: the scripts boot the safe default and never write.
    choice = bootloaderChoose(new Map(), { lkgMarker });
  }
  const c = choice! as ReturnType<typeof bootloaderChoose>;
  await mkdir(dirname(sysroot.simCmdlinePath), { recursive: true });
  // The arguments the boot script passes: the slot's file (a torn one fails the boot, as there), else its own larch_bootargs, which a simulation has none of.
  const kargs = (await readSlotKargs(sysroot, config.bootloader, c.slot)) ?? [];
  await writeFileAtomic(sysroot.simCmdlinePath, `${[...kargs, `larch.slot=${c.slot}`].join(' ')}${c.rescue ? ' larch.rescue=1' : ''}\n`);
  failpoint('sim-boot::after-bootloader');
  await appendJournal(sysroot.journalPath, { event: 'boot', slot: c.slot, message: `bootloader booted slot ${c.slot}${c.rescue ? ' in rescue (no slot had tries left or was good)' : ''}${c.wrote ? ' and recorded the try' : ''}`, data: { rescue: c.rescue, wrote: c.wrote } });
  return c;
}

/**
 * systemd-boot's step (bls.ts blsChoose): the first entry in its order boots, a counted one is
 * renamed one try down on the ESP, and the entry's options line is the command line (larch.slot=,
 * and larch.rescue=1 on the rescue entry). Nothing to boot (no readable entry of larch's): refused,
 * as the firmware would stop at its menu.
 */
async function firmwareStep(sysroot: Sysroot): Promise<ReturnType<typeof bootloaderChoose>> {
  const store = sysroot.blsStore();
  const c = await store.firmwareBoot();
  if (!c) throw new LarchError('ENV_CORRUPT', `sim-boot: ${store.describe()} holds no entry of larch's that systemd-boot can boot`, { data: { path: sysroot.envPath('systemd-boot') }, hint: 'provision the sysroot again (larch provision --force --bootloader systemd-boot)' });
  await mkdir(dirname(sysroot.simCmdlinePath), { recursive: true });
  await writeFileAtomic(sysroot.simCmdlinePath, `${c.cmdline}\n`);
  failpoint('sim-boot::after-bootloader');
  await appendJournal(sysroot.journalPath, { event: 'boot', slot: c.slot, message: `systemd-boot booted ${c.name} (slot ${c.slot})${c.rescue ? ' in rescue (no slot had tries left or was good)' : ''}${c.wrote ? ' and counted the try' : ''}`, data: { rescue: c.rescue, wrote: c.wrote, entry: c.name } });
  return { slot: c.slot, rescue: c.rescue, wrote: c.wrote, newVars: await store.read() };
}

/** The booted deployment's own agent (S/larch/deploy/X/usr/bin/larch), or null when it carries none. */
async function ownAgent(sysroot: Sysroot, slot: Slot): Promise<string | null> {
  const record = await readDeployment(sysroot, slot);
  const path = treeAgentPath(sysroot.deployDir(slot));
  return record && record.agent !== null && (await isAgentFile(path)) ? path : null;
}

/**
 * `AGENT boot-check --json --no-reboot` on the sysroot, as the booted device would run it; its
 * result, or null when the binary cannot run on this machine (another architecture).
 * @throws the agent's own error (its code, message, hint and data)
 */
function agentBootCheck(agent: string, sysroot: Sysroot, opts: BootCheckOptions): Promise<BootCheckResult | null> {
  const args = ['boot-check', '--sysroot', sysroot.path, '--json', '--no-reboot', ...(opts.timeoutMs === undefined ? [] : ['--timeout', String(Math.ceil(opts.timeoutMs / 1000))])];
  return new Promise((resolve, reject) => {
    execFile(agent, args, { encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      if (code === 'ENOEXEC' || code === 'EACCES' || code === 'ENOENT') return resolve(null);
      let out: { error?: { code: string; message: string; hint: string; data: Record<string, unknown> } } & Partial<BootCheckResult>;
      try {
        out = JSON.parse(stdout);
      } catch {
        return reject(new LarchError('IO', `sim-boot: the agent of the booted deployment (${agent}) failed: ${stderr.trim() || err?.message || 'no output'}`, { data: { agent_path: agent } }));
      }
      if (out.error) return reject(new LarchError(out.error.code as ConstructorParameters<typeof LarchError>[0], out.error.message, { hint: out.error.hint, data: { ...out.error.data, agent_path: agent } }));
      resolve(out as BootCheckResult);
    });
  });
}

/** `larch mark-good` / `mark-bad` by hand (default: the booted slot). */
export async function markSlot(sysroot: Sysroot, good: boolean, slotArg?: Slot, opts: { force?: boolean } = {}): Promise<{ slot: Slot }> {
  const config = await sysroot.readConfig();
  const booted = await bootedSlot(sysroot);
  const slot = slotArg ?? booted;
  if (!slot) throw new LarchError('USAGE', 'cannot tell which slot booted; name it with --slot A|B', { data: { option: 'slot' } });
  const record = await readDeployment(sysroot, slot);
  if (good && !record) throw new LarchError('NOT_FOUND', `slot ${slot} holds no deployment; nothing to mark good`, { data: { slot } });
  await changeBootState(sysroot, config, (state) => {
    if (!good && !opts.force && isOnlyGood(state, slot, booted)) {
      throw new LarchError('REFUSED', `slot ${slot}${record ? ` (version ${record.version})` : ''} is the only slot known to boot: marking it bad could leave the device with nothing to boot`, {
        hint: `pass --force if you mean it; to get rid of a bad update instead, mark that slot bad (--slot ${other(slot)}) or 'larch deploy' another version first`,
        data: { reason: 'only-good-slot', slot },
      });
    }
    return next(state, good ? { type: 'marked-good', slot } : { type: 'marked-bad', slot });
  });
  // The commit lets a damaged env be reconstructed (reconstruct() in boot.ts): this deployment was confirmed.
  await appendJournal(sysroot.journalPath, { event: good ? 'mark-good' : 'mark-bad', slot, commit: record?.commit, version: record?.version, message: `slot ${slot} marked ${good ? 'good' : 'bad'} by hand` });
  if (good) await recordGoodRelease(sysroot, config, slot);
  // A release marked bad is not staged again by itself (failed-releases.ts).
  if (!good && record) {
    const last = await readJsonFile<LastBoot>(lastBootPath(sysroot)).catch(() => null);
    const checks = last && last.commit === record.commit && !last.healthy ? last.failed_checks : [];
    await rememberFailure(sysroot, { commit: record.commit, version: record.version, time: new Date().toISOString(), reason: 'marked-bad', failed_checks: checks, slot, ...kargsOf(record.kargs) });
  }
  return { slot };
}

/** Marking `slot` bad leaves no slot known to boot: the other is not good and this one is good, booted or the last known good. */
function isOnlyGood(state: BootState, slot: Slot, booted: Slot | null): boolean {
  if (state.slots[other(slot)].good) return false;
  return state.slots[slot].good || slot === booted || slot === state.lastGood;
}

/**
 * Named failpoints (`module::step`, as rpm-ostree names them): places between durable writes
 * where `LARCH_FAILPOINT=NAME` (or `NAME:N`, its Nth hit) ends the process as a power cut or
 * `kill -9` would: SIGKILL to itself, so no finally block runs and nothing buffered is flushed.
 * `LARCH_FAILPOINT_LOG=FILE` appends the name of each point passed, one a line, so a test
 * learns what a command really passes (test/integration/failpoints.test.ts enumerates them).
 * Compiled into every build: an unset variable costs one environment read per point.
 * docs/reliability.md (failpoints).
 */
import { appendFileSync, existsSync } from 'node:fs';
import { type CancelPhase, cancelRequestPath, checkCancel, readCancelRequest } from './cancellation.ts';
import { LarchError } from './errors.ts';

/** Every failpoint, with what is on disk when it is passed. `larch failpoints` prints this list. */
export const FAILPOINTS = {
  // The repo (src/store): a transaction stages objects, syncs, renames them into objects/, moves refs.
  'transaction::after-stage-sync': 'staged objects synced, none renamed into objects/ yet',
  'transaction::after-object-rename': 'one more staged object renamed into objects/ (commit objects last)',
  'transaction::after-renames-sync': 'every object of the transaction in objects/ and synced, refs not moved',
  'transaction::after-ref-write': 'one ref of the transaction moved',
  'commit::after-transaction': 'larch commit: its transaction committed (objects, signatures, the ref)',
  'prune::after-temp-cleanup': 'prune: leftover temporary files of dead writers removed',
  'prune::after-commit-unlink': 'prune: one unreachable commit object unlinked (commits go first)',
  'prune::after-object-unlink': 'prune: one more unreachable object (signature, tree or file) unlinked',
  // Static deltas (src/delta/apply.ts, src/agent/remote/pull.ts).
  'delta::after-envelope-write': 'a downloaded delta envelope written to the download directory',
  'delta::after-part-download': 'one delta part downloaded (fsynced) to the download directory',
  'delta::after-part-apply': "one delta part's objects committed to the repo",
  'delta::after-view-expand': "a view record's source expanded (into R/tmp/view-* when over 1 MiB, else in memory), nothing of its file written yet",
  'delta::mid-view-fold': "a view record's file half rebuilt: its first chunk handed to the transaction",
  'delta::after-commit-write': "the delta's commit object (and signatures) stored: the commit is complete",
  'delta::after-download-dir-unlink': "an applied delta's download directory removed",
  // delta generate (src/delta/generate.ts): built under R/tmp/, renamed to R/deltas/NAME whole.
  'delta::after-part-write': "delta generate: one part written to the staging directory under R/tmp/",
  'delta::after-generate-rename': 'delta generate: the synced delta renamed to R/deltas/NAME (its --out file not written yet)',
  // The bootloader env (src/bootcount/env-store.ts, src/agent/boot.ts).
  'bootenv::after-env-write': 'one env copy (U-Boot) or the grubenv block written and synced, not yet read back',
  'bootenv::after-lkg-marker-write': 'the last-known-good marker file beside the env created or removed',
  // systemd-boot (src/bootcount/bls-store.ts): a state change is a list of file operations on the ESP, each durable before the next.
  'bootenv::after-bls-larch-env': 'systemd-boot: loader/larch.env (the release floor) rewritten, no entry changed yet',
  'bootenv::after-bls-rename': 'systemd-boot: one boot entry renamed (its counter changed) and synced',
  'bootenv::after-bls-entry-write': 'systemd-boot: one boot entry (a slot, or the rescue entry) written whole and synced',
  'bootenv::after-bls-remove': "systemd-boot: one boot entry removed (a slot's old entry before its new one, or a cut write's leftover)",
  // Writing a deployment into a slot (src/agent/deploy.ts): upgrade, deploy and provision.
  'deploy::after-checkout': "the commit checked out to the slot's temporary directory (the slot's old deployment still whole)",
  'deploy::after-etc-merge': "the slot's new /etc merged (or copied) in the temporary directory; the point of no return follows",
  'deploy::after-record-unlink': "the slot's deployment record removed (the slot is no deployment now)",
  'deploy::after-old-slot-unlink': "the slot's old tree and boot files removed",
  'deploy::after-boot-files': "the slot's boot files copied to the boot partition's temporary directory and synced",
  'deploy::after-boot-rename': "the slot's boot files renamed into place",
  'deploy::after-slot-rename': "the slot's tree renamed into place and the renames synced",
  'deploy::after-record-write': "the slot's deployment record written: the slot is a deployment",
  // upgrade and deploy (src/agent/update.ts).
  'update::after-download': 'the update pulled into the repo (delta or objects), not yet verified',
  'update::after-downloaded-ref': 'the verified update kept by the larch/downloaded ref',
  'update::after-mark-unbootable': 'the boot env marks the slot to be written unbootable (one env write)',
  'update::after-slot-ref': 'the larch/slot-X ref names the new deployment',
  'rebase::after-config-write': "rebase: config.json follows the new remote and ref; the slot is written, not yet bootable",
  'update::after-bootenv-write': 'the boot env stages the new slot first with its tries (one env write)',
  'update::after-last-update': 'last-update.json written (the command is done)',
  // rollback, finalize, cleanup (src/agent/update.ts).
  'rollback::after-bootenv-write': 'rollback: the boot env names the other slot first (or cancels the staged one)',
  'finalize::after-marker-write': 'finalize: the X.finalizing marker written',
  'finalize::after-etc-aside': "finalize: the staged slot's /etc renamed to .etc.old",
  'finalize::after-etc-swap': "finalize: the new merge renamed to the staged slot's /etc",
  'finalize::after-record-write': "finalize: the staged slot's record written with the new merge's summary",
  'finalize::after-marker-unlink': 'finalize: the X.finalizing marker removed (finalize is complete)',
  'cleanup::after-bootenv-write': 'cleanup --rollback: the boot env marks the rollback slot unbootable',
  'cleanup::after-record-unlink': "cleanup --rollback: the rollback slot's deployment record removed",
  'cleanup::after-deployment-unlink': "cleanup --rollback: the rollback slot's tree and boot files removed",
  'cleanup::after-refs': 'cleanup: the larch/slot-* refs name what the deployments hold; other refs removed',
  // boot-check and sim-boot (src/agent/boot-check.ts).
  'sim-boot::after-bootloader': "sim-boot: the simulated bootloader's env write done and the booted slot recorded",
  'boot-check::after-bootenv-write': "boot-check: the boot env records the check's result (marked good, or a try spent)",
  'boot-check::after-last-boot-write': 'boot-check: last-boot.json written',
  // provision (src/agent/provision.ts): everything is built in staging folders and moved last.
  'provision::after-download': 'provision: the release pulled into the staged repo',
  'provision::after-staged': 'provision: the whole state built in the staging folders',
  'provision::after-boot-files': "provision: slot A's boot files renamed into place on the boot partition",
  'provision::after-var': '/var moved into place (first provision only)',
  'provision::after-bootenv-write': 'provision: the initial boot env (A good, first) and its marker written',
  'provision::before-rename': 'provision: everything synced, S/larch not yet renamed into place (not provisioned)',
  'provision::after-rename': 'provision: S/larch renamed into place and synced (provisioned)',
} as const satisfies Record<string, string>;

export type Failpoint = keyof typeof FAILPOINTS;

/**
 * The cancel points (cancellation.ts): the failpoints where a command asked to stop by `larch
 * cancel` ends, each with the phase it reports. All of them come before the point of no return
 * (the slot's old deployment is still whole and bootable); what each leaves is in
 * docs/reliability.md ("Cancel").
 */
export const CANCEL_POINTS: Partial<Record<Failpoint, CancelPhase>> = {
  'delta::after-part-download': 'download',
  'delta::after-part-apply': 'download',
  'update::after-download': 'verify',
  'update::after-downloaded-ref': 'verify',
  'deploy::after-checkout': 'staging',
  'deploy::after-etc-merge': 'staging',
};

export const FAILPOINT_NAMES = Object.keys(FAILPOINTS) as Failpoint[];

export interface FailpointSpec {
  name: Failpoint;
  /** Which hit ends the process (1: the first). */
  hit: number;
}

/**
 * Parses `NAME` or `NAME:N` (N >= 1) as LARCH_FAILPOINT takes it.
 * @throws USAGE naming the variable, for an unknown name or a bad N
 */
export function parseFailpointSpec(text: string, variable = 'LARCH_FAILPOINT'): FailpointSpec {
  const m = /^(.*?)(?::(\d+))?$/.exec(text)!;
  const name = m[1];
  const hit = m[2] === undefined ? 1 : Number(m[2]);
  if (!(name in FAILPOINTS)) {
    throw new LarchError('USAGE', `${variable}: unknown failpoint '${name}'`, { hint: "run 'larch failpoints'", data: { variable, value: text } });
  }
  if (!Number.isSafeInteger(hit) || hit < 1) {
    throw new LarchError('USAGE', `${variable}: the hit count in '${text}' must be an integer >= 1`, { hint: "write NAME or NAME:N; run 'larch failpoints' for the names", data: { variable, value: text } });
  }
  return { name: name as Failpoint, hit };
}

/** Checks LARCH_FAILPOINT once at start-up (src/cli/main.ts), so a typo fails loudly instead of never firing. @throws USAGE */
export function checkFailpointEnv(env: NodeJS.ProcessEnv = process.env): void {
  if (env.LARCH_FAILPOINT) parseFailpointSpec(env.LARCH_FAILPOINT);
  if (env.LARCH_PAUSEPOINT) parseFailpointSpec(env.LARCH_PAUSEPOINT, 'LARCH_PAUSEPOINT');
}

/** How long a pause point waits for a cancel request before it goes on. */
export const PAUSE_MAX_MS = 30_000;

/**
 * LARCH_PAUSEPOINT=NAME (a test hook, as LARCH_FAILPOINT): the failpoint NAME stops the process
 * until a cancel request (S/larch/cancel.json) appears or 30 s pass, so a test cancels a command
 * at a point it chose instead of at a moment it guessed: at a cancel point the command stops
 * there; past the point of no return it goes on, and cancel undoes it. The process blocks there
 * (the signal that follows the request is handled after the wait), so the request is read at
 * the point itself. Only while the device lock is held: a command that cannot be cancelled does
 * not wait for a cancel. The device lock refuses it on a real device (agent/device-lock.ts).
 */
function pause(): void {
  const path = cancelRequestPath();
  if (!path) return;
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + PAUSE_MAX_MS;
  while (!existsSync(path) && Date.now() < until) Atomics.wait(cell, 0, 0, 20);
  if (existsSync(path)) readCancelRequest();
}

/**
 * Hits so far of each failpoint, by its place in FAILPOINT_NAMES, in memory all of the process's
 * threads share: a delta apply's second thread (part-thread.ts) adopts its parent's counts, so
 * `NAME:N` is the Nth hit in the process, whichever thread passes it.
 */
let hits = new Int32Array(new SharedArrayBuffer(4 * FAILPOINT_NAMES.length));

/** The counts a second thread adopts with `shareFailpointHits`. */
export function failpointHits(): SharedArrayBuffer {
  return hits.buffer as SharedArrayBuffer;
}

/** On a second thread: count hits in its parent's counts (`failpointHits()` there). */
export function shareFailpointHits(shared: SharedArrayBuffer): void {
  hits = new Int32Array(shared);
}

/**
 * Passes the failpoint `name`: logs it (LARCH_FAILPOINT_LOG), and ends the process with SIGKILL
 * when LARCH_FAILPOINT names it and this is the hit it names. Node and Bun both deliver a
 * SIGKILL sent to the process itself before process.kill returns.
 */
export function failpoint(name: Failpoint): void {
  const log = process.env.LARCH_FAILPOINT_LOG;
  if (log) appendFileSync(log, `${name}\n`);
  if (process.env.LARCH_PAUSEPOINT === name) pause();
  const phase = CANCEL_POINTS[name];
  if (phase) checkCancel(phase);
  const armed = process.env.LARCH_FAILPOINT;
  if (!armed) return;
  const n = Atomics.add(hits, FAILPOINT_NAMES.indexOf(name), 1) + 1;
  const spec = parseFailpointSpec(armed);
  if (spec.name === name && spec.hit === n) {
    process.kill(process.pid, 'SIGKILL');
    // Not reached: SIGKILL cannot be caught. Were it ignored somehow, stopping here still beats
    // carrying on past the point as if nothing happened.
    process.abort();
  }
}

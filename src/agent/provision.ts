/**
 * Factory set-up of an empty sysroot: repo, trusted keys, config, the first deployment in slot A,
 * shared /var, and the bootloader state (A good, first). Idempotent: provisioning a sysroot again
 * with the same remote and ref changes nothing and succeeds; anything else is refused.
 */
import { copyFile, mkdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { parseFwEnvConfig } from '../bootcount/fw-env-config.ts';
import { readPublicKey, keyId } from '../store/sign.ts';
import { verifyCommit } from '../store/signatures.ts';
import { Repo } from '../store/repo.ts';
import { findDelta } from '../server/summary.ts';
import { createBootEnv } from './boot.ts';
import { readDeployment, writeDeployment } from './deploy.ts';
import { appendJournal } from './journal.ts';
import type { BootloaderKind, DeviceConfig, RemoteMqttAuth, Sysroot } from './sysroot.ts';
import { type Remote, trustedKeys } from './update.ts';

export interface ProvisionOptions {
  remote: Remote;
  remoteUrl: string;
  remoteKind: 'http' | 'mqtt';
  /** Broker login and TLS files for an MQTT remote, kept in the config for later commands. */
  remoteMqtt?: RemoteMqttAuth;
  ref: string;
  keys: string[];
  bootloader: BootloaderKind;
  tries: number;
  /** A commit id or version instead of the ref's head. */
  target?: string;
  /**
   * U-Boot: the board's own fw_env.config (the env in raw eMMC or MTD at its offsets), copied to
   * S/boot/fw_env.config as is; the initial env is written where it says. Default: a 16 KiB env
   * file S/boot/uboot.env on the boot partition.
   */
  fwEnvConfig?: string;
  progress?: (done: number, total: number | null) => void;
}

export interface ProvisionResult {
  result: 'provisioned' | 'already-provisioned';
  sysroot: string;
  slot: 'A';
  commit: string;
  version: string;
  bootloader: BootloaderKind;
  download: { via: 'delta' | 'objects' | 'none'; bytes: number };
}

export async function provision(sysroot: Sysroot, opts: ProvisionOptions): Promise<ProvisionResult> {
  const existing = await sysroot.readConfig().catch((err) => (err instanceof LarchError && err.code === 'NOT_FOUND' ? null : Promise.reject(err)));
  if (existing) {
    const a = await readDeployment(sysroot, 'A');
    if (existing.remote.url === opts.remoteUrl && existing.ref === opts.ref && existing.bootloader === opts.bootloader && a) {
      return { result: 'already-provisioned', sysroot: sysroot.path, slot: 'A', commit: a.commit, version: a.version, bootloader: existing.bootloader, download: { via: 'none', bytes: 0 } };
    }
    if (a) {
      throw new LarchError('EXISTS', `${sysroot.path} is already provisioned (${existing.remote.url} ${existing.ref}, ${existing.bootloader})`, { hint: 'provision an empty sysroot, or use the same --repo-url, --ref and --bootloader to re-run' });
    }
  }
  if (opts.keys.length === 0) throw new LarchError('USAGE', 'provision: --keys K.pub is required (the keys the device trusts)');
  for (const k of opts.keys) await readPublicKey(k); // refuse a bad key file before writing anything
  const boardEnvConfig = opts.fwEnvConfig === undefined ? null : await readBoardEnvConfig(opts.fwEnvConfig, opts.bootloader);

  await mkdir(sysroot.larchDir, { recursive: true });
  const repo = await Repo.open(sysroot.repoPath).catch(() => Repo.init(sysroot.repoPath, process.getuid?.() === 0 ? 'bare' : 'bare-user'));
  await mkdir(sysroot.keysDir, { recursive: true });
  for (const k of opts.keys) await copyFile(k, join(sysroot.keysDir, basename(k).endsWith('.pub') ? basename(k) : `${basename(k)}.pub`));
  const config: DeviceConfig = { larch: 1, remote: { url: opts.remoteUrl, kind: opts.remoteKind, ...(opts.remoteMqtt ? { mqtt: opts.remoteMqtt } : {}) }, ref: opts.ref, bootloader: opts.bootloader, tries: opts.tries, pinned: false };
  await sysroot.writeConfig(config);

  const trusted = await trustedKeys(sysroot);
  const summary = await opts.remote.fetchSummary({ trusted, now: Math.floor(Date.now() / 1000) });
  await sysroot.writeConfig({ ...config, summarySerial: summary.serial });
  const head = summary.refs[opts.ref];
  if (!head) throw new LarchError('NOT_FOUND', `${opts.remote.describe()} has no ref '${opts.ref}' (it has: ${Object.keys(summary.refs).join(', ') || 'none'})`, { hint: 'check --ref' });
  let commit = head.commit;
  if (opts.target && opts.target !== head.version && opts.target !== head.commit) {
    const history = opts.remote.history ? await opts.remote.history(repo, head.commit, 100) : [];
    const found = history.find((h) => h.version === opts.target || h.commit === opts.target);
    if (!found) throw new LarchError('NOT_FOUND', `version or commit '${opts.target}' is not in the history of ${opts.ref}`, { hint: 'use a version the vendor published' });
    commit = found.commit;
  }
  let download: ProvisionResult['download'] = { via: 'none', bytes: 0 };
  if (!(await repo.hasObject('commit', commit))) {
    download = await opts.remote.pull(repo, commit, { delta: findDelta(summary, null, commit), trusted, downloadDir: sysroot.downloadDir, progress: opts.progress });
  }
  const verified = await verifyCommit(repo, commit, trusted);
  if (!verified.valid) throw new LarchError('SIGNATURE_INVALID', `commit ${commit} is not signed by a trusted key (${trusted.map(keyId).join(', ')})`, { data: { commit } });

  const record = await writeDeployment(sysroot, repo, 'A', commit, { origin: { remote: opts.remoteUrl, ref: opts.ref }, signedBy: verified.signatures.filter((s) => s.trusted && s.valid).map((s) => s.keyId) });
  await repo.writeRef('larch/slot-A', commit);

  // The bootloader state last: until it exists, nothing on the device claims to be bootable.
  await createBootEnv(sysroot, opts.bootloader, boardEnvConfig);
  await appendJournal(sysroot.journalPath, { event: 'provision', slot: 'A', commit, version: record.version, message: `provisioned with version ${record.version} in slot A from ${opts.remoteUrl} ${opts.ref} (${opts.bootloader})` });
  return { result: 'provisioned', sysroot: sysroot.path, slot: 'A', commit, version: record.version, bootloader: opts.bootloader, download };
}

/** The board's fw_env.config, checked before anything is written. @throws USAGE, NOT_FOUND, INVALID_INPUT naming the file */
async function readBoardEnvConfig(path: string, bootloader: BootloaderKind): Promise<string> {
  if (bootloader !== 'uboot') throw new LarchError('USAGE', 'provision: --fw-env-config goes with --bootloader uboot (GRUB keeps its state in S/boot/grub/grubenv)');
  const text = await readFile(path, 'utf8').catch((err) => Promise.reject(fromSystemError(err, 'read fw_env.config', path)));
  parseFwEnvConfig(text, `'${path}'`);
  return text;
}

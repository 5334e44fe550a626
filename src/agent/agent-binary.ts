/**
 * The agent a deployment carries: the larch binary at /usr/bin/larch in its tree, which the
 * boot-time units and the initramfs run once it is booted (docs/boot.md). Its version is what it
 * prints for `--version` (`larch V`), read when the deployment is written and kept in the
 * deployment record. A deployment without one is run by the legacy agent, S/larch/bin/larch (the
 * layout of sysroots provisioned before the agent shipped in the tree), which is kept while any
 * deployment needs it and removed once none does (docs/formats.md §11).
 */
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncPath } from '../_durable.ts';
import { fromSystemError } from '../errors.ts';
import { MARKER_PREFIX, MARKER_SUFFIX, VERSION_PATTERN } from '../version.ts';
import type { Sysroot } from './sysroot.ts';

/** Where a tree carries its agent, relative to its root. */
export const AGENT_IN_TREE = 'usr/bin/larch';
/** The legacy agent, relative to S/larch. */
const LEGACY_AGENT = join('bin', 'larch');
/** How long `AGENT --version` may take (a 100 MB Bun binary starts in well under a second). */
const VERSION_TIMEOUT_MS = 20_000;

/** What the deployment record keeps of a deployment's own agent (absent in records before it existed). */
export interface RecordedAgent {
  /** V of `larch V`, or null when it could be neither run nor read (docs/formats.md §11). */
  version: string | null;
}

/** The agent of a deployment as `status --json` shows it. */
export interface AgentStatus {
  /** V of `larch V`; null when unknown (a legacy agent: run `PATH --version`). */
  version: string | null;
  /** The binary on this machine: S/larch/deploy/X/usr/bin/larch, or the legacy S/larch/bin/larch (null: none there). */
  path: string | null;
  /** Whether the deployment carries its own agent (false: the legacy one runs it). */
  in_tree: boolean;
}

export function legacyAgentPath(sysroot: Sysroot): string {
  return join(sysroot.larchDir, LEGACY_AGENT);
}

export function treeAgentPath(root: string): string {
  return join(root, AGENT_IN_TREE);
}

/** Whether path is an executable regular file (a symlink does not count: it could point outside the tree). */
export async function isAgentFile(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  return st !== null && st.isFile() && (st.mode & 0o111) !== 0;
}

/** V from `larch V` (one line), or null. */
export function parseVersionOutput(text: string): string | null {
  const m = /^larch (\S+)\n?$/.exec(text);
  return m && VERSION_PATTERN.test(m[1]) ? m[1] : null;
}

/**
 * The version of the larch binary at path: what it prints for `--version`; when it cannot run here
 * (another architecture, a noexec mount), the version marker the build put in it (src/version.ts).
 * Null when neither says.
 */
export async function agentVersion(path: string): Promise<string | null> {
  const printed = await new Promise<string | null>((resolve) => {
    try {
      execFile(path, ['--version'], { timeout: VERSION_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout) => resolve(err ? null : parseVersionOutput(stdout)));
    } catch {
      // Bun throws a spawn failure (ENOEXEC: a binary of another architecture) where Node calls back.
      resolve(null);
    }
  });
  return printed ?? (await versionMarker(path));
}

/**
 * Finds `@(#)larch-agent-version V@(#)` in the file, reading it once in 1 MiB chunks (a chunk keeps
 * the previous one's tail, so a marker across two is found). The prefix alone also appears in the
 * binary (in this very code, followed by a quote): only a prefix followed by a valid version and
 * the suffix counts.
 */
export async function versionMarker(path: string): Promise<string | null> {
  const prefix = Buffer.from(MARKER_PREFIX, 'latin1');
  const suffix = Buffer.from(MARKER_SUFFIX, 'latin1');
  const keep = prefix.length + MAX_VERSION + suffix.length;
  let tail = Buffer.alloc(0);
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      const buf = Buffer.concat([tail, chunk as Buffer]);
      for (let at = buf.indexOf(prefix); at >= 0; at = buf.indexOf(prefix, at + 1)) {
        const from = at + prefix.length;
        const end = buf.indexOf(suffix, from);
        if (end < 0 || end - from > MAX_VERSION) continue;
        const version = buf.toString('latin1', from, end);
        if (VERSION_PATTERN.test(version)) return version;
      }
      tail = buf.subarray(Math.max(0, buf.length - keep));
    }
  } catch {
    return null;
  }
  return null;
}

/** The longest version the marker may hold. */
const MAX_VERSION = 64;

/** The agent of a deployment directory being written: null when its tree carries none. */
export async function recordAgent(deployDir: string): Promise<RecordedAgent | null> {
  const path = treeAgentPath(deployDir);
  if (!(await isAgentFile(path))) return null;
  return { version: await agentVersion(path) };
}

/**
 * The agent that runs a deployment, for status: its own (as recorded; a record written before
 * agents were recorded is looked at now), else the legacy one.
 */
export async function deploymentAgent(sysroot: Sysroot, deployDir: string, recorded: RecordedAgent | null | undefined): Promise<AgentStatus> {
  const own = recorded === undefined ? await recordAgent(deployDir) : recorded;
  if (own) return { version: own.version, path: treeAgentPath(deployDir), in_tree: true };
  const legacy = legacyAgentPath(sysroot);
  return { version: null, path: (await isAgentFile(legacy)) ? legacy : null, in_tree: false };
}

/**
 * A deployment without an agent of its own is run by the legacy one: the device keeps the agent
 * it runs. When S/larch/bin/larch is gone (the device moved to agents in the tree), the agent of
 * `from` (the booted deployment) is copied there, durably.
 * @returns the path written, or null when nothing was needed or there was nothing to copy
 */
export async function keepLegacyAgent(sysroot: Sysroot, from: string | null): Promise<string | null> {
  const legacy = legacyAgentPath(sysroot);
  if (await isAgentFile(legacy)) return null;
  const source = from && treeAgentPath(from);
  if (!source || !(await isAgentFile(source))) return null;
  await installAgent(source, legacy);
  return legacy;
}

/**
 * A provision again (--force) of a commit without an agent keeps the device's legacy agent: the
 * old S/larch/bin/larch is copied into the state being built (`to`).
 */
export async function carryLegacyAgent(from: Sysroot, to: Sysroot): Promise<boolean> {
  const old = legacyAgentPath(from);
  if (!(await isAgentFile(old))) return false;
  await installAgent(old, legacyAgentPath(to));
  return true;
}

/** Copies an agent binary to dest atomically and durably (mode 0755). @throws IO, NO_SPACE */
export async function installAgent(source: string, dest: string): Promise<void> {
  const tmp = `${dest}.tmp`;
  try {
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(source, tmp);
    await chmod(tmp, 0o755);
    await fsyncPath(tmp);
    await rename(tmp, dest);
    await fsyncPath(dirname(dest));
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw fromSystemError(err, 'install the agent', dest);
  }
}

/**
 * Removes the legacy agent once no deployment needs it: every deployment present carries its own
 * (as its record says; a record from before agents were recorded: as its tree says). Returns
 * whether it was removed.
 */
export async function retireLegacyAgent(sysroot: Sysroot, deployments: { dir: string; agent: RecordedAgent | null | undefined }[]): Promise<boolean> {
  const legacy = legacyAgentPath(sysroot);
  if (deployments.length === 0 || !(await lstat(legacy).then(() => true, () => false))) return false;
  for (const d of deployments) {
    const own = d.agent === undefined ? await isAgentFile(treeAgentPath(d.dir)) : d.agent !== null;
    if (!own) return false;
  }
  await rm(legacy, { force: true }).catch((err) => Promise.reject(fromSystemError(err, 'remove the legacy agent', legacy)));
  await fsyncPath(dirname(legacy)).catch(() => {});
  return true;
}

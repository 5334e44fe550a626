/**
 * Runs host tools (apt, dpkg-deb, tar, sh, flock, getfattr, mkfs.*, ...). Every tool larch runs
 * is listed in TOOL_PACKAGES with the Debian package that provides it, so a missing tool is one
 * `TOOL_MISSING` error, built here, that names the package to install (`data: { tool, package }`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { LarchError, quash } from './errors.ts';

/** The Debian package that provides each tool larch runs. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  'apt-cache': 'apt',
  'apt-get': 'apt',
  cp: 'coreutils',
  dd: 'coreutils',
  dpkg: 'dpkg',
  'dpkg-deb': 'dpkg',
  du: 'coreutils',
  flock: 'util-linux',
  getfattr: 'attr',
  // grub-mkimage itself is in grub-common; the i386-pc modules it embeds are in grub-pc-bin, which depends on it.
  'grub-mkimage': 'grub-pc-bin',
  mcopy: 'mtools',
  'mkfs.ext4': 'e2fsprogs',
  'mkfs.vfat': 'dosfstools',
  mkfifo: 'coreutils',
  mkimage: 'u-boot-tools',
  mmdebstrap: 'mmdebstrap',
  // apply-live: the bind mounts of the staged tree (agent/live/apply.ts)
  mount: 'mount',
  // What compose needs for a foreign architecture's maintainer scripts (binfmt_misc starts them).
  'qemu-aarch64': 'qemu-user-static',
  'qemu-arm': 'qemu-user-static',
  'qemu-riscv64': 'qemu-user-static',
  'qemu-ppc64le': 'qemu-user-static',
  'qemu-s390x': 'qemu-user-static',
  'qemu-mips64el': 'qemu-user-static',
  setfattr: 'attr',
  sfdisk: 'fdisk',
  sh: 'dash',
  sync: 'coreutils',
  // apply-live on a systemd device: daemon-reload and the restarts (agent/live/units.ts)
  systemctl: 'systemd',
  tar: 'tar',
  truncate: 'coreutils',
  // package layering: the isolated root's namespaces (agent/layering/isolated-root.ts)
  unshare: 'util-linux',
  // OCI layers compressed with zstd, where the runtime's zlib has none (Node 20; oci/decompress.ts)
  zstd: 'zstd',
};

export interface ToolContext {
  /** Prefix of the message, naming the step: `image build`, `commands[0]`. */
  context?: string;
  /** What the tool is needed for, said in the message: `to lock the repo`. */
  purpose?: string;
  /** One more sentence for the hint, after the install command: another way round the missing tool. */
  hint?: string;
}

/** The Debian package providing tool; a tool missing from TOOL_PACKAGES is a programming error. */
export function toolPackage(tool: string): string {
  const pkg = TOOL_PACKAGES[tool];
  if (pkg === undefined) throw new TypeError(`tool '${tool}' is not listed in TOOL_PACKAGES (src/_run.ts)`);
  return pkg;
}

/** The `TOOL_MISSING` error for tool. */
export function toolMissing(tool: string, ctx: ToolContext = {}): LarchError {
  const pkg = toolPackage(tool);
  const what = ctx.purpose ? `'${tool}' is needed ${ctx.purpose} and is not installed` : `'${tool}' is not installed`;
  return new LarchError('TOOL_MISSING', ctx.context ? `${ctx.context}: ${what}` : what, {
    hint: `install it: apt-get install ${pkg}${ctx.hint ? `; ${ctx.hint}` : ''}`,
    data: { tool, package: pkg },
  });
}

/** The error for a tool that could not be started: TOOL_MISSING when it is not installed, else IO. */
export function spawnFailure(tool: string, err: NodeJS.ErrnoException, ctx: ToolContext = {}): LarchError {
  if (err.code === 'ENOENT') return toolMissing(tool, ctx);
  return new LarchError('IO', `${ctx.context ? `${ctx.context}: ` : ''}cannot run '${tool}': ${err.message}`, { data: { tool } });
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions extends ToolContext {
  cwd?: string;
  env?: Record<string, string>;
  /** Written to the tool's stdin (default: an empty stdin). */
  input?: string | Uint8Array;
}

/** Runs a tool to its end and collects its output. @throws TOOL_MISSING, IO (it could not be started) */
export function runTool(cmd: string, args: string[], opts: RunOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    toolPackage(cmd); // throws inside the executor: a rejection
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => {}); // a tool that exits without reading its input: its exit code tells
    child.stdin.end(opts.input); // no input: end of file at once
    child.on('error', (e: NodeJS.ErrnoException) => reject(spawnFailure(cmd, e, opts)));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** Runs a tool and returns its stdout. @throws TOOL_MISSING, IO when it exits non-zero */
export async function runToolChecked(cmd: string, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await runTool(cmd, args, opts);
  if (r.code !== 0) throw new LarchError('IO', `${opts.context ? `${opts.context}: ` : ''}${cmd} failed: ${stderrTail(r.stderr) || `exit ${r.code}`}`, { data: { tool: cmd } });
  return r.stdout;
}

/** Runs a tool synchronously (for the few steps that have no async caller). @throws TOOL_MISSING, IO (not started) */
export function runToolSync(cmd: string, args: string[], ctx: ToolContext = {}): ToolResult {
  toolPackage(cmd);
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) throw spawnFailure(cmd, r.error, ctx);
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The last meaningful lines of a tool's stderr, for a message. */
export function stderrTail(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '' && !/^W: Download is performed unsandboxed/.test(l));
  return quash(lines.slice(-3).join('; '), 400);
}

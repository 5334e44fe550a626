/** Runs a build-host tool (apt-cache, apt-get, dpkg-deb, tar, sh) and collects its output. */
import { spawn } from 'node:child_process';
import { LarchError, quash } from '../errors.ts';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Debian package that provides each tool, for the TOOL_MISSING hint. */
const PROVIDERS: Record<string, string> = { 'apt-cache': 'apt', 'apt-get': 'apt', 'dpkg-deb': 'dpkg', dpkg: 'dpkg', tar: 'tar', sh: 'dash' };

/** @throws TOOL_MISSING when the program cannot be started */
export function runTool(cmd: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') reject(new LarchError('TOOL_MISSING', `cannot run '${cmd}': not installed`, { hint: `install it: apt-get install ${PROVIDERS[cmd] ?? cmd}`, data: { tool: cmd } }));
      else reject(new LarchError('IO', `cannot run '${cmd}': ${e.message}`, { data: { tool: cmd } }));
    });
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** The last meaningful lines of a tool's stderr, for a message. */
export function stderrTail(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '' && !/^W: Download is performed unsandboxed/.test(l));
  return quash(lines.slice(-3).join('; '), 400);
}

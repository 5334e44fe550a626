/** Runs a build-host tool for image build; a missing tool names the Debian package to install. */
import { LarchError } from '../errors.ts';
import { runTool, stderrTail } from '../compose/_run.ts';

/** @throws TOOL_MISSING when cmd is not installed, IO when it exits non-zero */
export async function tool(cmd: string, args: string[], provider: string, cwd?: string): Promise<string> {
  const r = await runTool(cmd, args, { cwd }).catch((err: unknown) => {
    if (err instanceof LarchError && err.code === 'TOOL_MISSING') throw new LarchError('TOOL_MISSING', `image build: '${cmd}' is not installed`, { hint: `apt-get install ${provider}` });
    throw err;
  });
  if (r.code !== 0) throw new LarchError('IO', `image build: ${cmd} failed: ${stderrTail(r.stderr) || `exit ${r.code}`}`, { data: { tool: cmd } });
  return r.stdout;
}

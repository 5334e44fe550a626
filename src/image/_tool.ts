/** Runs a build-host tool for image build; a missing tool names the Debian package to install (src/_run.ts). */
import { runToolChecked } from '../_run.ts';

/** @throws TOOL_MISSING when cmd is not installed, IO when it exits non-zero */
export function tool(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  return runToolChecked(cmd, args, { ...opts, context: 'image build' });
}

/**
 * The agent an image carries: the larch binary named by the definition's `agent` (or compose
 * --agent), placed at /usr/bin/larch, so an OS update updates the agent with it (docs/images.md).
 * Checked before anything is built: a regular executable file, an ELF binary for the
 * definition's architecture (a wrong one could not run boot-check, and the slot would fall back).
 */
import { open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';

/** Where the agent goes in the image. */
export const AGENT_TARGET = 'usr/bin/larch';

/** ELF e_machine of each Debian architecture larch knows (others are not checked). */
const ELF_MACHINE: Record<string, number> = { amd64: 62, arm64: 183, armhf: 40, armel: 40, i386: 3, riscv64: 243 };

/** The ELF machine number of a file's header, or null when it is not an ELF file. Pure. */
export function elfMachine(header: Uint8Array): number | null {
  if (header.length < 20 || header[0] !== 0x7f || header[1] !== 0x45 || header[2] !== 0x4c || header[3] !== 0x46) return null;
  const littleEndian = header[5] === 1;
  return littleEndian ? header[18] | (header[19] << 8) : (header[18] << 8) | header[19];
}

/**
 * The agent's overlay entry, or null when neither the definition nor --agent names one. A
 * relative path in the definition is relative to its directory; --agent's to the working directory.
 * @throws NOT_FOUND (no such file), INVALID_INPUT (not an executable for the architecture)
 */
export async function checkAgent(opts: { definitionPath: string; definitionAgent?: string; agent?: string; architecture: string }): Promise<{ source: string; target: string; field: string } | null> {
  const given = opts.agent ?? opts.definitionAgent;
  if (given === undefined) return null;
  const field = opts.agent !== undefined ? '--agent' : 'agent';
  const path = opts.agent !== undefined ? resolve(opts.agent) : resolve(dirname(resolve(opts.definitionPath)), given);
  const what = `image definition '${opts.definitionPath}': ${field} '${given}'`;
  const fh = await open(path, 'r').catch((err) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new LarchError('NOT_FOUND', `${what}: no such file (${path})`, { hint: 'build the agent first: node scripts/build.mjs linux-x64 (dist/larch) or linux-arm64 (dist/larch-arm64)', data: { file: opts.definitionPath, field, path } });
    }
    throw fromSystemError(err, `read ${field}`, path);
  });
  try {
    const st = await fh.stat();
    if (!st.isFile() || (st.mode & 0o111) === 0) throw new LarchError('INVALID_INPUT', `${what}: ${path} is not an executable file`, { hint: 'name the larch binary (chmod +x it)', data: { file: opts.definitionPath, field, path } });
    const header = new Uint8Array(20);
    await fh.read(header, 0, 20, 0);
    const machine = elfMachine(header);
    const want = ELF_MACHINE[opts.architecture];
    if (machine === null || (want !== undefined && machine !== want)) {
      throw new LarchError('INVALID_INPUT', `${what}: ${path} is ${machine === null ? 'not an ELF binary' : `an ELF binary for machine ${machine}`}, not a larch binary for ${opts.architecture}${want === undefined ? '' : ` (machine ${want})`}`, {
        hint: `build the agent for ${opts.architecture}: node scripts/build.mjs ${opts.architecture === 'arm64' ? 'linux-arm64' : 'linux-x64'}`,
        data: { file: opts.definitionPath, field, path, architecture: opts.architecture, machine },
      });
    }
  } finally {
    await fh.close();
  }
  return { source: path, target: AGENT_TARGET, field };
}

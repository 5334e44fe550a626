/**
 * The build host's apt as a package source: resolve each requested package to one exact,
 * downloadable version (`apt-cache policy`, `apt-cache show`), then fetch the .deb files into a
 * cache (`apt-get download`), checked against the SHA-256 of apt's index.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LarchError, fromSystemError } from '../errors.ts';
import { parsePolicy, parseStanzas } from './apt-output.ts';
import type { PackageSpec } from './definition.ts';
import { runTool, stderrTail } from '../_run.ts';

export interface ResolvedPackage {
  name: string;
  version: string;
  /** The package's own architecture: the target's, or `all`. */
  architecture: string;
  sha256: string;
  sizeBytes: number;
}

export interface FetchedPackage extends ResolvedPackage {
  /** The .deb in the cache. */
  path: string;
  cached: boolean;
}

/** The host's dpkg architecture and the foreign ones apt knows indexes for. */
async function hostArchitectures(): Promise<string[]> {
  const native = await runTool('dpkg', ['--print-architecture']);
  const foreign = await runTool('dpkg', ['--print-foreign-architectures']);
  return [native.stdout.trim(), ...foreign.stdout.split('\n').map((l) => l.trim())].filter(Boolean);
}

/**
 * Checks that apt on this host has indexes for `architecture`, so that apt-cache answers about
 * the target's packages and not the host's.
 * @throws INVALID_INPUT naming the architecture and how to add it
 */
export async function checkArchitecture(architecture: string): Promise<{ native: boolean }> {
  const known = await hostArchitectures();
  if (!known.includes(architecture)) {
    throw new LarchError('INVALID_INPUT', `architecture '${architecture}' is not configured in this host's apt (it has ${known.join(', ')})`, {
      hint: `add it as root: dpkg --add-architecture ${architecture} && apt-get update`,
      data: { architecture, known },
    });
  }
  return { native: known[0] === architecture };
}

/**
 * Picks one downloadable version per package: the pinned one, which must be on offer, or apt's
 * candidate (falling back to the first downloadable version when the candidate is only the
 * host's installed copy).
 *
 * @throws NOT_FOUND for a package apt does not know, a virtual package, or a pinned version
 *   no source offers (data: {package, version, available})
 */
export async function resolvePackages(specs: PackageSpec[], architecture: string, native: boolean): Promise<ResolvedPackage[]> {
  const query = (name: string) => (native ? name : `${name}:${architecture}`);
  // apt lists Architecture: all packages under the host's architecture only ('name:arm64' on an
  // amd64 host is an empty entry), so a foreign target also asks for the plain name.
  const policyRun = await runTool('apt-cache', ['policy', ...specs.flatMap((s) => (native ? [s.name] : [query(s.name), s.name]))]);
  if (policyRun.code !== 0) throw new LarchError('IO', `'apt-cache policy' failed: ${stderrTail(policyRun.stderr)}`, { data: { tool: 'apt-cache', exit_code: policyRun.code } });
  const policy = parsePolicy(policyRun.stdout);
  const chosen = specs.map((spec) => {
    const qualified = policy.get(query(spec.name));
    const entry = qualified && qualified.versions.length > 0 ? qualified : (policy.get(spec.name) ?? qualified);
    const asked = entry === qualified ? query(spec.name) : spec.name;
    const available = (entry?.versions ?? []).filter((v) => v.downloadable).map((v) => v.version);
    if (!entry) {
      throw new LarchError('NOT_FOUND', `package '${spec.name}' does not exist in the apt sources for ${architecture}`, {
        hint: "check the name (apt-cache search NAME); run 'apt-get update' if the sources are stale",
        data: { package: spec.name, architecture },
      });
    }
    if (available.length === 0) {
      throw new LarchError('NOT_FOUND', `package '${spec.name}' has no downloadable version for ${architecture} (a virtual package? name one that provides it)`, {
        hint: `list providers: apt-cache showpkg ${spec.name}`,
        data: { package: spec.name, architecture },
      });
    }
    if (spec.version !== undefined && !available.includes(spec.version)) {
      throw new LarchError('NOT_FOUND', `version '${spec.version}' of package '${spec.name}' is not available (available: ${available.join(', ')})`, {
        hint: `pin one of the available versions, or add the source that carries it; apt-cache madison ${spec.name} lists them`,
        data: { package: spec.name, version: spec.version, available },
      });
    }
    const version = spec.version ?? (entry.candidate && available.includes(entry.candidate) ? entry.candidate : available[0]);
    return { name: spec.name, version, asked };
  });

  const showRun = await runTool('apt-cache', ['show', ...chosen.map((c) => `${c.asked}=${c.version}`)]);
  if (showRun.code !== 0) throw new LarchError('IO', `'apt-cache show' failed: ${stderrTail(showRun.stderr)}`, { data: { tool: 'apt-cache', exit_code: showRun.code } });
  const stanzas = parseStanzas(showRun.stdout);
  return chosen.map((c) => {
    const s = stanzas.find((st) => st.Package === c.name && st.Version === c.version && (st.Architecture === architecture || st.Architecture === 'all') && st.SHA256);
    if (!s) throw new LarchError('NOT_FOUND', `apt has no index entry with a checksum for '${c.name}' ${c.version} (${architecture})`, { data: { package: c.name, version: c.version } });
    return { name: c.name, version: c.version, architecture: s.Architecture, sha256: s.SHA256.toLowerCase(), sizeBytes: Number(s.Size) };
  });
}

/** apt-get download's file name: name_version_arch.deb with ':' written as %3a. */
export function debFileName(p: { name: string; version: string; architecture: string }): string {
  return `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.architecture}.deb`;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function isCached(path: string, sha256: string): Promise<boolean> {
  const st = await stat(path).catch(() => undefined);
  return st !== undefined && st.isFile() && (await sha256File(path)) === sha256;
}

/**
 * Makes sure every resolved package is in `cacheDir` with the checksum apt's index gives,
 * downloading the missing ones in one `apt-get download` run.
 * @throws IO when apt-get fails (its message is kept), OBJECT_CORRUPT when a download does not match the index
 */
export async function fetchPackages(packages: ResolvedPackage[], cacheDir: string, target: { architecture: string; native: boolean }): Promise<FetchedPackage[]> {
  await mkdir(cacheDir, { recursive: true }).catch((err) => {
    throw fromSystemError(err, 'create cache directory', cacheDir);
  });
  const out: FetchedPackage[] = [];
  const missing: ResolvedPackage[] = [];
  for (const p of packages) {
    const path = join(cacheDir, debFileName(p));
    if (await isCached(path, p.sha256)) out.push({ ...p, path, cached: true });
    else missing.push(p);
  }
  if (missing.length === 0) return out;
  const partial = await mkdtemp(join(cacheDir, '.partial-'));
  try {
    // Architecture: all packages are known to apt by their plain name only (see resolvePackages).
    const query = (p: ResolvedPackage) => `${p.name}${target.native || p.architecture === 'all' ? '' : `:${target.architecture}`}=${p.version}`;
    const run = await runTool('apt-get', ['download', '-q', ...missing.map(query)], { cwd: partial });
    if (run.code !== 0) {
      throw new LarchError('IO', `'apt-get download' of ${missing.length} package(s) failed: ${stderrTail(run.stderr)}`, {
        hint: "check the network and the apt sources ('apt-get update'); packages already fetched stay cached",
        data: { packages: missing.map((p) => `${p.name}=${p.version}`) },
      });
    }
    // Match downloads to packages by checksum: apt's file names are an implementation detail.
    const bySha = new Map<string, string>();
    for (const f of await readdir(partial)) if (f.endsWith('.deb')) bySha.set(await sha256File(join(partial, f)), f);
    for (const p of missing) {
      const file = bySha.get(p.sha256);
      if (!file) throw new LarchError('OBJECT_CORRUPT', `'apt-get download ${query(p)}' gave no file with the SHA-256 of apt's index (${p.sha256})`, { hint: "run 'apt-get update' and compose again", data: { package: p.name, version: p.version } });
      const path = join(cacheDir, debFileName(p));
      await rename(join(partial, file), path);
      out.push({ ...p, path, cached: false });
    }
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  const order = new Map(packages.map((p, i) => [p.name, i]));
  return out.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
}

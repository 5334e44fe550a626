/**
 * Image definitions (`images/NAME.toml`, docs/images.md): TOML text in, a checked
 * `ImageDefinition` out. Pure: the file is read by the caller; every problem is an
 * INVALID_INPUT naming the file and the field.
 */
import { describe, fail, onlyFields, readTomlFile, str, strings, table } from '../_toml-fields.ts';
import { quash } from '../errors.ts';
import { parseDebianVersion } from '../packages/debian-version.ts';
import { bindingValueProblem } from '../store/binding.ts';

export interface PackageSpec {
  name: string;
  /** An exact Debian version, or undefined for the candidate apt offers. */
  version?: string;
}

export interface OverlaySpec {
  /** Relative to the definition's directory; a file or a directory. */
  source: string;
  /** Where it goes in the image, as absolute components ('' = the root). */
  target: string;
}

export interface ImageDefinition {
  ref: string;
  version: string;
  /** Debian architecture name (amd64, arm64, armhf, ...). */
  architecture: string;
  /** The hardware the image is for (larch.compatible, as RAUC's compatible), when given. */
  compatible?: string;
  /** Seconds since the epoch, when the definition gives one. */
  timestamp?: number;
  subject: string;
  /** Sorted by name; the kernel package is included. */
  packages: PackageSpec[];
  kernel?: PackageSpec;
  overlays: OverlaySpec[];
  commands: string[];
  /** Glob patterns (relative to the tree's root) of files to expose in /boot. */
  bootFiles: string[];
  /** The larch binary the image carries at /usr/bin/larch (its agent), relative to the definition's directory. */
  agent?: string;
  /** The oldest larch agent that may install the commit (larch.min_agent_version; a Debian-syntax version). */
  minAgentVersion?: string;
  /**
   * true: exactly the listed packages, unpacked, no dependency added and no maintainer script
   * run (the first compose's way). false (default): the essential set, the packages and their
   * dependencies, installed by dpkg with their scripts (mmdebstrap.ts).
   */
  exact: boolean;
  /** Resolve Recommends too (default false; refused with exact). */
  recommends: boolean;
  /** .deb files relative to the definition's directory, installed with their dependencies (not with exact). */
  localPackages: string[];
}

const TOP_LEVEL_FIELDS = ['ref', 'version', 'architecture', 'compatible', 'timestamp', 'subject', 'packages', 'kernel', 'overlay', 'commands', 'boot', 'agent', 'min_agent_version', 'exact', 'recommends', 'local_packages'];
/** Debian Policy §5.6.1: lowercase letters, digits, '+', '-', '.'; at least two characters. */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCHITECTURE = /^[a-z0-9][a-z0-9-]*$/;
/** A branch name as `larch commit --branch` takes it (store/repo.ts isValidBranch): slash-separated components, no '..'. */
const REF = /^[A-Za-z0-9_][A-Za-z0-9._-]*(\/[A-Za-z0-9_][A-Za-z0-9._-]*)*$/;

/** "name" or "name=version". */
export function parsePackageSpec(text: string, field: string): PackageSpec {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  if (!PACKAGE_NAME.test(name)) fail(field, `'${quash(name)}' is not a Debian package name (lowercase letters, digits, '+', '-', '.')`);
  if (eq < 0) return { name };
  const version = text.slice(eq + 1);
  if (!parseDebianVersion(version)) fail(field, `'${quash(version)}' is not a Debian version`);
  return { name, version };
}

/** Splits a path into components, refusing '..' and (unless allowed) absolute paths. Returns '' for the root. */
export function normalizeRelativePath(text: string, field: string, opts: { absolute: 'required' | 'refused' }): string {
  if (text.includes('\0')) fail(field, 'holds a NUL byte');
  const absolute = text.startsWith('/');
  if (opts.absolute === 'refused' && absolute) fail(field, `'${quash(text)}' is an absolute path; give it relative to the definition's directory`);
  if (opts.absolute === 'required' && !absolute) fail(field, `'${quash(text)}' must be an absolute path in the image, e.g. '/etc/hostname'`);
  const parts = text.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) fail(field, `'${quash(text)}' has a '..' component, which could leave the tree`);
  return parts.join('/');
}

function parseTimestamp(value: unknown, field: string): number | undefined {
  if (value === undefined) return undefined;
  const seconds = value instanceof Date ? Math.floor(value.getTime() / 1000) : typeof value === 'number' ? value : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 0) fail(field, `must be seconds since the epoch or a TOML date-time after 1970, got ${describe(value)}`);
  return seconds;
}

function parseOverlays(value: unknown): OverlaySpec[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return fail('overlay', 'must be an array of tables ([[overlay]])');
  return value.map((entry, i) => {
    const field = `overlay[${i}]`;
    const t = table(entry, field);
    onlyFields(t, ['source', 'target'], field);
    const source = normalizeRelativePath(str(t.source, `${field}.source`, true), `${field}.source`, { absolute: 'refused' });
    if (source === '') fail(`${field}.source`, "names the definition's own directory");
    const target = normalizeRelativePath(str(t.target, `${field}.target`, false) ?? '/', `${field}.target`, { absolute: 'required' });
    return { source, target };
  });
}

function parseBootFiles(value: unknown): string[] {
  if (value === undefined) return [];
  const t = table(value, 'boot');
  onlyFields(t, ['files'], 'boot');
  return strings(t.files, 'boot.files').map((p, i) => {
    const path = normalizeRelativePath(p, `boot.files[${i}]`, { absolute: 'refused' });
    if (path === '') fail(`boot.files[${i}]`, 'names the root');
    return path;
  });
}

function bool(value: unknown, field: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') return fail(field, `must be true or false, got ${describe(value)}`);
  return value;
}

function parseMinAgentVersion(value: unknown): { minAgentVersion?: string } {
  const v = str(value, 'min_agent_version', false);
  if (v === undefined) return {};
  if (!parseDebianVersion(v) || !/^(\d+:)?\d/.test(v)) fail('min_agent_version', `'${quash(v)}' is not a version (Debian version syntax, as larch's own: 0.2.0)`);
  return { minAgentVersion: v };
}

function parseDefinitionValue(doc: Record<string, unknown>): ImageDefinition {
  onlyFields(doc, TOP_LEVEL_FIELDS, '');
  const ref = str(doc.ref, 'ref', true);
  if (!REF.test(ref) || ref.includes('..') || ref.length > 255) fail('ref', `'${quash(ref)}' is not a branch name (components of letters, digits, '.', '_', '-', separated by '/')`);
  const architecture = str(doc.architecture, 'architecture', true);
  if (!ARCHITECTURE.test(architecture)) fail('architecture', `'${quash(architecture)}' is not a Debian architecture name (e.g. amd64, arm64)`);
  const compatible = str(doc.compatible, 'compatible', false);
  const compatibleProblem = compatible === undefined ? null : bindingValueProblem('compatible', compatible);
  if (compatibleProblem !== null) fail('compatible', `'${quash(compatible!)}' ${compatibleProblem}`);
  const rawPackages = strings(doc.packages, 'packages');
  if (doc.packages === undefined || rawPackages.length === 0) fail('packages', 'must list at least one package');
  const byName = new Map<string, PackageSpec>();
  rawPackages.forEach((text, i) => {
    const spec = parsePackageSpec(text, `packages[${i}]`);
    if (byName.has(spec.name)) fail(`packages[${i}]`, `'${spec.name}' is listed twice`);
    byName.set(spec.name, spec);
  });
  let kernel: PackageSpec | undefined;
  if (doc.kernel !== undefined) {
    kernel = parsePackageSpec(str(doc.kernel, 'kernel', true), 'kernel');
    const listed = byName.get(kernel.name);
    if (listed && kernel.version && listed.version && listed.version !== kernel.version) fail('kernel', `pins ${kernel.name} to '${kernel.version}' but packages pins '${listed.version}'`);
    // The kernel package need not be repeated in packages; one pin from either place counts.
    const merged = { name: kernel.name, version: kernel.version ?? listed?.version };
    byName.set(kernel.name, merged);
    kernel = merged;
  }
  if (doc.exact === true && doc.recommends === true) fail('recommends', 'cannot be true with exact = true (an exact compose adds no package)');
  const localPackages = strings(doc.local_packages, 'local_packages').map((p, i) => {
    const path = normalizeRelativePath(p, `local_packages[${i}]`, { absolute: 'refused' });
    if (!path.endsWith('.deb')) fail(`local_packages[${i}]`, `'${quash(p)}' is not a .deb file name`);
    return path;
  });
  if (doc.exact === true && localPackages.length > 0) fail('local_packages', 'needs a resolved compose (exact = false): its files are installed by dpkg with their dependencies');
  return {
    ref,
    version: str(doc.version, 'version', true),
    architecture,
    ...(compatible === undefined ? {} : { compatible }),
    timestamp: parseTimestamp(doc.timestamp, 'timestamp'),
    subject: str(doc.subject, 'subject', false) ?? '',
    packages: [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    kernel,
    overlays: parseOverlays(doc.overlay),
    commands: strings(doc.commands, 'commands'),
    bootFiles: parseBootFiles(doc.boot),
    agent: str(doc.agent, 'agent', false),
    ...parseMinAgentVersion(doc.min_agent_version),
    exact: bool(doc.exact, 'exact'),
    recommends: bool(doc.recommends, 'recommends'),
    localPackages,
  };
}

/**
 * Parses and checks an image definition. `file` is used in messages only.
 *
 * @throws INVALID_INPUT naming the file and the field (data: {file, field})
 * @example parseDefinition('ref = "os/x"\nversion = "1"\narchitecture = "amd64"\npackages = ["busybox"]\n', 'x.toml').packages // [{ name: 'busybox' }]
 */
export function parseDefinition(text: string, file: string): ImageDefinition {
  return readTomlFile(text, 'image definition', file, 'fix the field named in the message (docs/images.md lists every field)', parseDefinitionValue);
}

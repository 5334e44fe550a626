/**
 * Parsers for what apt prints: `apt-cache policy` (versions on offer and the candidate) and
 * deb822 stanzas (`apt-cache show`). Pure: text in, values out.
 */

export interface PolicyEntry {
  /** The candidate apt would install, or undefined for '(none)'. */
  candidate?: string;
  /** Versions in the order apt lists them, with whether any source can download them. */
  versions: { version: string; downloadable: boolean }[];
}

/**
 * Parses `apt-cache policy NAME...`. Keys are the names as apt prints them ("tzdata",
 * "busybox:arm64"). Packages apt does not know are absent; purely virtual ones have no versions.
 *
 *   tzdata:
 *     Installed: 2025b-0+deb12u2
 *     Candidate: 2026f-0+deb12u1
 *     Version table:
 *        2026f-0+deb12u1 500
 *           500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *    *** 2025b-0+deb12u2 100
 *           100 /var/lib/dpkg/status
 */
export function parsePolicy(text: string): Map<string, PolicyEntry> {
  const out = new Map<string, PolicyEntry>();
  let current: PolicyEntry | undefined;
  let inTable = false;
  for (const line of text.split('\n')) {
    if (/^\S.*:$/.test(line)) {
      current = { versions: [] };
      out.set(line.slice(0, -1), current);
      inTable = false;
      continue;
    }
    if (!current) continue;
    const candidate = /^ {2}Candidate: (.*)$/.exec(line);
    if (candidate) {
      current.candidate = candidate[1] === '(none)' ? undefined : candidate[1];
      continue;
    }
    if (/^ {2}Version table:/.test(line)) {
      inTable = true;
      continue;
    }
    if (!inTable) continue;
    // A version line is indented 5 (or starts with ' *** '); its sources are indented 8.
    const version = /^ (?:\*\*\*| {3}) (\S+) -?\d+$/.exec(line);
    if (version) {
      current.versions.push({ version: version[1], downloadable: false });
      continue;
    }
    const source = /^ {8}-?\d+ (.*)$/.exec(line);
    const last = current.versions.at(-1);
    // /var/lib/dpkg/status is the host's installed copy: it names a version, not a file to fetch.
    if (source && last && !source[1].endsWith('/var/lib/dpkg/status')) last.downloadable = true;
  }
  return out;
}

/** Parses deb822 stanzas (blank-line separated "Field: value" blocks; continuation lines joined with '\n'). */
export function parseStanzas(text: string): Record<string, string>[] {
  const out: Record<string, string>[] = [];
  let current: Record<string, string> | undefined;
  let lastField = '';
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      current = undefined;
      continue;
    }
    if (/^[ \t]/.test(line)) {
      if (current && lastField) current[lastField] += `\n${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (!current) {
      current = {};
      out.push(current);
    }
    lastField = line.slice(0, colon);
    current[lastField] = line.slice(colon + 1).trim();
  }
  return out;
}

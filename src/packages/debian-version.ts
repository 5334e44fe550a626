/**
 * Debian version strings ([epoch:]upstream[-revision]): parsing and the ordering of
 * `dpkg --compare-versions` (Debian Policy §5.6.12; dpkg's lib/dpkg/version.c `verrevcmp`).
 * Pure: no I/O.
 */

export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/** Characters Policy §5.6.12 allows in a version (the epoch colon and revision hyphen included). */
const VERSION_CHARS = /^[A-Za-z0-9.+~:-]+$/;

/**
 * Splits a version into epoch, upstream and revision, as dpkg's parseversion does: the epoch is
 * everything before the first ':', the revision everything after the last '-'.
 * Returns undefined for a string dpkg would refuse (empty, bad epoch, empty upstream, a
 * character outside [A-Za-z0-9.+~:-]).
 *
 * @example parseDebianVersion('1:2.36-9+deb12u7') // { epoch: 1, upstream: '2.36', revision: '9+deb12u7' }
 */
export function parseDebianVersion(text: string): DebianVersion | undefined {
  if (!VERSION_CHARS.test(text)) return undefined;
  let rest = text;
  let epoch = 0;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    const digits = rest.slice(0, colon);
    if (!/^\d+$/.test(digits) || Number(digits) > 2 ** 31 - 1) return undefined;
    epoch = Number(digits);
    rest = rest.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  const upstream = hyphen >= 0 ? rest.slice(0, hyphen) : rest;
  const revision = hyphen >= 0 ? rest.slice(hyphen + 1) : '';
  if (upstream === '' || (hyphen >= 0 && revision === '')) return undefined;
  // dpkg only warns when upstream does not start with a digit; real archives hold none.
  return { epoch, upstream, revision };
}

const isDigit = (c: string) => c >= '0' && c <= '9';
const isLetter = (c: string) => (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');

/** dpkg's order(): '~' sorts before everything, even the end of the string; letters before other characters. */
function order(c: string): number {
  if (c === '') return 0;
  if (isDigit(c)) return 0;
  if (isLetter(c)) return c.charCodeAt(0);
  if (c === '~') return -1;
  return c.charCodeAt(0) + 256;
}

/** dpkg's verrevcmp: alternating non-digit and digit runs; digit runs compare as numbers. */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  const at = (s: string, k: number) => (k < s.length ? s[k] : '');
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a[i])) || (j < b.length && !isDigit(b[j]))) {
      const ac = order(at(a, i));
      const bc = order(at(b, j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (at(a, i) === '0') i++;
    while (at(b, j) === '0') j++;
    let firstDiff = 0;
    while (isDigit(at(a, i)) && isDigit(at(b, j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(at(a, i))) return 1;
    if (isDigit(at(b, j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/**
 * Orders two Debian versions like `dpkg --compare-versions`: negative when a < b, 0 when equal,
 * positive when a > b. Different strings can be equal: `1.0`, `0:1.0` and `1.0-0` all are.
 *
 * @throws TypeError when either string is not a valid Debian version
 * @example compareDebianVersions('1.0~rc1', '1.0') < 0 // true
 */
export function compareDebianVersions(a: string, b: string): number {
  const va = parseDebianVersion(a);
  const vb = parseDebianVersion(b);
  if (!va) throw new TypeError(`'${a}' is not a Debian version`);
  if (!vb) throw new TypeError(`'${b}' is not a Debian version`);
  if (va.epoch !== vb.epoch) return va.epoch - vb.epoch;
  const upstream = compareFragment(va.upstream, vb.upstream);
  if (upstream !== 0) return upstream;
  return compareFragment(va.revision, vb.revision);
}

/**
 * Which object of the old commit each new file is diffed against (OSTree's "compilation
 * analysis"). Pure: paths, ids and sizes in, pairs out. Order of preference:
 *   1. the same path, when it held a different regular file;
 *   2. the same path with every run of digits treated as equal (a kernel update renames
 *      /lib/modules/6.1.0-25-amd64/ to …-26-amd64/; libfoo.so.1.2.3 becomes libfoo.so.1.2.4);
 *   3. the same file name (digits treated as equal) anywhere, of a similar size.
 * Among several candidates the one closest in size wins.
 */

export interface PlanFile {
  /** Path in the tree, e.g. "/usr/lib/libc.so.6" (any stable text form of the raw bytes). */
  path: string;
  id: string;
  size: number;
}

/** Files smaller than this are sent literally: a patch of a few bytes saves nothing. */
export const MIN_PATCH_BYTES = 64;
/** Rule 3 only pairs files whose sizes are within this factor of each other. */
const NAME_MATCH_SIZE_FACTOR = 2;
/** Rules 1 and 2 pair files whose sizes are within this factor. */
const PATH_MATCH_SIZE_FACTOR = 8;

const normalize = (p: string) => p.replace(/[0-9]+/g, '#');
const basename = (p: string) => p.slice(p.lastIndexOf('/') + 1);

function sizeOk(a: number, b: number, factor: number): boolean {
  return a > 0 && b > 0 && a <= b * factor && b <= a * factor;
}

function closest(candidates: PlanFile[] | undefined, size: number, factor: number): PlanFile | undefined {
  let best: PlanFile | undefined;
  for (const c of candidates ?? []) {
    if (!sizeOk(c.size, size, factor)) continue;
    if (!best || Math.abs(c.size - size) < Math.abs(best.size - size)) best = c;
  }
  return best;
}

function group(files: PlanFile[], key: (f: PlanFile) => string): Map<string, PlanFile[]> {
  const m = new Map<string, PlanFile[]>();
  for (const f of files) {
    const k = key(f);
    const list = m.get(k);
    if (list) list.push(f);
    else m.set(k, [f]);
  }
  return m;
}

/** Returns, for each new file that has one, the old file to diff against. */
export function planSources(oldFiles: PlanFile[], newFiles: PlanFile[]): Map<string, PlanFile> {
  const byPath = new Map(oldFiles.map((f) => [f.path, f]));
  const byNormalPath = group(oldFiles, (f) => normalize(f.path));
  const byNormalName = group(oldFiles, (f) => normalize(basename(f.path)));
  const out = new Map<string, PlanFile>();
  for (const f of newFiles) {
    if (f.size < MIN_PATCH_BYTES || out.has(f.id)) continue;
    const same = byPath.get(f.path);
    const source =
      (same && same.id !== f.id && sizeOk(same.size, f.size, PATH_MATCH_SIZE_FACTOR) ? same : undefined) ??
      closest(byNormalPath.get(normalize(f.path)), f.size, PATH_MATCH_SIZE_FACTOR) ??
      closest(byNormalName.get(normalize(basename(f.path))), f.size, NAME_MATCH_SIZE_FACTOR);
    if (source && source.id !== f.id) out.set(f.id, source);
  }
  return out;
}

/** larch log / show / ls / diff / refs: read-only views of a repo. */
import { LarchError } from '../../errors.ts';
import { toPlain } from '../../store/cbor.ts';
import { diffCommits } from '../../store/diff.ts';
import { type Commit, type ObjectId, validateDirTree } from '../../store/object.ts';
import type { Repo } from '../../store/repo.ts';
import { decodeSignatures, keyId } from '../../store/sign.ts';
import { childPath } from '../../store/walk.ts';
import { type Command, intOption, opt, positionals, printJson } from '../command.ts';
import { REPO_OPTION, formatTime, isoTimeMs, openRepo } from './_repo.ts';

async function commitJson(repo: Repo, id: ObjectId, c: Commit) {
  const sigBytes = await repo.readSignatures(id);
  const sigs = sigBytes ? (decodeSignatures(sigBytes) ?? []) : [];
  return {
    commit: id,
    parent: c.parent,
    version: c.version,
    timestamp_s: c.timestamp,
    date: isoTimeMs(c.timestamp),
    subject: c.subject,
    body: c.body,
    metadata: toPlain(c.metadata),
    root: c.root,
    signed_by: sigs.map((s) => keyId(s.key)),
  };
}

function commitText(j: Awaited<ReturnType<typeof commitJson>>): string {
  return [
    `commit ${j.commit}`,
    j.parent ? `parent ${j.parent}` : null,
    `version ${j.version}`,
    `date    ${formatTime(j.timestamp_s)}`,
    j.signed_by.length ? `signed  ${j.signed_by.join(', ')}` : 'signed  (unsigned)',
    j.subject ? `\n    ${j.subject}` : null,
    j.body ? `\n${j.body.replace(/^/gm, '    ')}` : null,
  ]
    .filter((l) => l !== null)
    .join('\n');
}

export const log: Command = {
  name: 'log',
  summary: "list a branch's commits, newest first",
  options: { ...REPO_OPTION, max: { type: 'string', short: 'n' } },
  positionals: true,
  help: `NAME
  larch log - list a branch's commits, newest first

SYNOPSIS
  larch log --repo R REV [-n N] [--json]

DESCRIPTION
  Follows parents from REV until the first commit, or until history that was pruned.

OPTIONS
  --repo R     repository (required)
  -n, --max N  show at most N commits
  --json       print an array of commits (see 'larch show --help')

EXIT STATUS
  0 printed; 2 usage; 3 (NOT_FOUND) no repo or REV; 5 (OBJECT_MISSING) a commit is missing.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'log');
    const [rev] = positionals(args, ['rev'], 'log');
    const max = intOption(opt(args, 'max'), 'max', 'log', 1) ?? Infinity;
    const out = [];
    let id: ObjectId | null = await repo.resolveRev(rev);
    while (id && out.length < max && (await repo.hasObject('commit', id))) {
      const c = await repo.readCommit(id);
      out.push(await commitJson(repo, id, c));
      id = c.parent;
    }
    if (args.json) printJson(io, out);
    else io.out(out.map(commitText).join('\n\n') + (id && out.length < max ? `\n\n(history before ${id} was pruned)` : '') + '\n');
  },
};

export const show: Command = {
  name: 'show',
  summary: 'show one commit',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch show - show one commit

SYNOPSIS
  larch show --repo R REV [--json]

DESCRIPTION
  Prints the commit's id, parent, version, date, signatures, subject, body and metadata.
  REV is a commit id, a unique prefix of one (4+ hex digits) or a branch, each optionally
  followed by ^ for the parent (repeatable).

OPTIONS
  --repo R   repository (required)
  --json     print {"commit", "parent", "version", "timestamp", "date", "subject", "body",
             "metadata", "root": {"tree", "meta"}, "signed_by"}

EXIT STATUS
  0 printed; 2 usage; 3 (NOT_FOUND) no repo or REV; 5 (OBJECT_CORRUPT) a damaged object.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'show');
    const [rev] = positionals(args, ['rev'], 'show');
    const id = await repo.resolveRev(rev);
    const j = await commitJson(repo, id, await repo.readCommit(id));
    if (args.json) printJson(io, j);
    else io.out(commitText(j) + (Object.keys(j.metadata as object).length ? `\n\nmetadata ${JSON.stringify(j.metadata, null, 2)}` : '') + '\n');
  },
};

const typeChar = { reg: '-', lnk: 'l', fifo: 'p', dir: 'd' } as const;

export const ls: Command = {
  name: 'ls',
  summary: 'list the files of a commit',
  options: { ...REPO_OPTION, recursive: { type: 'boolean', short: 'R' } },
  positionals: true,
  help: `NAME
  larch ls - list the files of a commit

SYNOPSIS
  larch ls --repo R REV [PATH] [-R] [--json]

DESCRIPTION
  Lists the entries of directory PATH (default /) in REV: type, mode, owner, size, name,
  and the symlink target; a PATH that is not a directory lists that one entry, as ls(1) does.
  -R lists everything below PATH.

OPTIONS
  --repo R          repository (required)
  -R, --recursive   descend into directories
  --json            print [{"path", "type" (reg|lnk|fifo|dir), "mode", "uid", "gid",
                    "size", "target", "object"}]

EXIT STATUS
  0 listed; 2 usage; 3 (NOT_FOUND) no repo, REV or PATH; 5 (OBJECT_MISSING) a tree is missing.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'ls');
    if (args.positionals.length < 1 || args.positionals.length > 2) positionals(args, ['rev'], 'ls');
    const [rev, start = '/'] = args.positionals;
    const commit = await repo.readCommit(await repo.resolveRev(rev));
    let tree = commit.root.tree;
    let base: Buffer = Buffer.alloc(0);
    const rows: Record<string, unknown>[] = [];
    const fileRow = async (file: ObjectId) => {
      const h = (await repo.readFile(file)).header;
      return { type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.type === 'reg' ? h.size : 0, target: h.type === 'lnk' ? Buffer.from(h.target).toString('utf8') : undefined, object: file };
    };
    const parts = start.split('/').filter(Boolean);
    let single = false;
    for (const [i, part] of parts.entries()) {
      const dt = await repo.readDirTree(tree);
      const d = dt.dirs.find((e) => Buffer.from(e.name).toString('utf8') === part);
      const f = d || i < parts.length - 1 ? undefined : dt.files.find((e) => Buffer.from(e.name).toString('utf8') === part);
      if (f) {
        rows.push({ path: '/' + childPath(base, Buffer.from(part)).toString('utf8'), ...(await fileRow(f.file)) });
        single = true;
        break;
      }
      if (!d) throw new LarchError('NOT_FOUND', `no file or directory '${start}' in ${rev}`, { hint: `'larch ls --repo ${repo.path} ${rev} ${['', ...parts.slice(0, i)].join('/') || '/'}' lists what is there`, data: { path: start, rev } });
      tree = d.tree;
      base = childPath(base, Buffer.from(part));
    }
    const visit = async (t: ObjectId, path: Buffer) => {
      const dt = await repo.readDirTree(t);
      if (validateDirTree(dt).length > 0) throw new LarchError('HOSTILE_TREE', `dirtree ${t} has unsafe names; run 'larch fsck'`, { data: { tree: t } });
      const entries: { name: Uint8Array; row: () => Promise<Record<string, unknown>>; sub?: ObjectId }[] = [
        ...dt.files.map((f) => ({
          name: f.name,
          row: () => fileRow(f.file),
        })),
        ...dt.dirs.map((d) => ({
          name: d.name,
          sub: d.tree,
          row: async () => {
            const m = await repo.readDirMeta(d.meta);
            return { type: 'dir', mode: m.mode, uid: m.uid, gid: m.gid, size: 0, object: d.tree };
          },
        })),
      ].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
      for (const e of entries) {
        const p = childPath(path, e.name);
        rows.push({ path: '/' + p.toString('utf8'), ...(await e.row()) });
        if (args.values.recursive && e.sub) await visit(e.sub, p);
      }
    };
    if (!single) await visit(tree, base);
    if (args.json) return printJson(io, rows);
    for (const r of rows) {
      const mode = `${typeChar[r.type as keyof typeof typeChar]}${(r.mode as number).toString(8).padStart(4, '0')}`;
      io.out(`${mode} ${String(r.uid).padStart(5)} ${String(r.gid).padStart(5)} ${String(r.size).padStart(10)} ${r.path}${r.target ? ` -> ${r.target}` : ''}\n`);
    }
  },
};

export const diff: Command = {
  name: 'diff',
  summary: 'list paths added, removed and modified between two commits',
  options: { ...REPO_OPTION },
  positionals: true,
  help: `NAME
  larch diff - list paths added, removed and modified between two commits

SYNOPSIS
  larch diff --repo R FROM TO [--json]

DESCRIPTION
  Compares the trees of FROM and TO. A file is modified when its content, mode, owner,
  xattrs or symlink target changed; a directory (shown with a trailing /) when its own
  mode, owner or xattrs changed. Added and removed directories list everything below them.

OUTPUT
  One line per path: A (added), D (removed), M (modified).

OPTIONS
  --repo R   repository (required)
  --json     print {"from", "to", "added": [...], "removed": [...], "modified": [...]}

EXIT STATUS
  0 printed; 2 usage; 3 (NOT_FOUND) no repo or REV; 5 (OBJECT_MISSING) a tree is missing.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'diff');
    const [a, b] = positionals(args, ['from', 'to'], 'diff');
    const from = await repo.resolveRev(a);
    const to = await repo.resolveRev(b);
    const d = await diffCommits(repo, from, to);
    if (args.json) return printJson(io, { from, to, ...d });
    const lines = [...d.added.map((p) => `A ${p}`), ...d.removed.map((p) => `D ${p}`), ...d.modified.map((p) => `M ${p}`)];
    lines.sort((x, y) => (x.slice(2) < y.slice(2) ? -1 : x.slice(2) > y.slice(2) ? 1 : 0));
    io.out(lines.join('\n') + (lines.length ? '\n' : ''));
  },
};

export const refs: Command = {
  name: 'refs',
  summary: 'list branches, or delete one',
  options: { ...REPO_OPTION, delete: { type: 'string' } },
  help: `NAME
  larch refs - list branches, or delete one

SYNOPSIS
  larch refs --repo R [--delete BRANCH] [--json]

DESCRIPTION
  Lists every branch and the commit it names. --delete removes a branch (its commits stay
  until 'larch prune').

OPTIONS
  --repo R           repository (required)
  --delete BRANCH    delete this branch
  --json             print [{"branch", "commit"}]

EXIT STATUS
  0 listed; 2 usage; 3 (NOT_FOUND) no repo.
`,
  async run(args, io) {
    const repo = await openRepo(args, 'refs');
    const del = opt(args, 'delete');
    if (del) {
      if ((await repo.readRef(del)) === null) throw new LarchError('NOT_FOUND', `no branch '${del}'`, { data: { ref: del } });
      const lock = await repo.lock();
      try {
        await repo.writeRef(del, null);
      } finally {
        await lock.release();
      }
    }
    const all = await repo.listRefs();
    if (args.json) printJson(io, all);
    else for (const r of all) io.out(`${r.branch} ${r.commit}\n`);
  },
};

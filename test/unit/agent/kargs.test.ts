/**
 * Kernel arguments (src/agent/kargs.ts): the command line split as the kernel splits it, kargs.d
 * files, rpm-ostree's edit rules, and bootc's upgrade rule that keeps local edits.
 */
import t from 'tap';
import fc from 'fast-check';
import { LarchError } from '../../../src/errors.ts';
import { computeKargs, editKargs, formatCommandLine, kargKey, kargProblem, parseKargsConf, splitCommandLine, vendorKargs } from '../../../src/agent/kargs.ts';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return err instanceof LarchError ? err.code : String(err);
  }
  return undefined;
};

t.test('the command line splits as the kernel splits it', async (t) => {
  t.same(splitCommandLine('quiet  console=ttyS0\tpanic=1 '), ['quiet', 'console=ttyS0', 'panic=1'], 'spaces and tabs, repeated or trailing');
  t.same(splitCommandLine('dyndbg="file drm* +p" quiet'), ['dyndbg="file drm* +p"', 'quiet'], 'double quotes hold spaces');
  t.same(splitCommandLine(''), [], 'nothing');
  t.equal(code(() => splitCommandLine('a="b')), 'INVALID_INPUT', 'an unterminated quote');
  t.equal(code(() => splitCommandLine('larch.slot=A quiet')), 'INVALID_INPUT', 'larch.slot= belongs to the bootloader');
  t.equal(code(() => splitCommandLine('a\u0001b')), 'INVALID_INPUT', 'a control character');
  t.equal(kargKey('console=ttyS0,115200'), 'console');
  t.equal(kargKey('quiet'), 'quiet');
  t.equal(kargKey('a=b=c'), 'a', 'the key ends at the first =');
  t.equal(kargProblem('=x'), 'no key before "="');
  t.equal(formatCommandLine(['quiet', 'a="b c"']), 'quiet a="b c"');
});

t.test('kargs.d files: comments, lines, and errors naming the file and line', async (t) => {
  t.same(parseKargsConf('# vendor defaults\nquiet splash # boot quietly\n\nfoo="a # b"\r\n', '10-vendor.conf'), ['quiet', 'splash', 'foo="a # b"'], 'comments outside quotes, CRLF, blank lines');
  let err: unknown;
  try {
    parseKargsConf('quiet\nbad="x\n', '20-x.conf');
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof LarchError && err.code === 'INVALID_INPUT', 'refused');
  t.match((err as Error).message, /20-x\.conf:2: 'bad="x': an unterminated double quote/, 'the message names the file and line');
  t.equal(code(() => parseKargsConf('a'.repeat(5000), 'long.conf')), 'INVALID_INPUT', 'a line over 4096 bytes');
  t.same(vendorKargs(['console=ttyS0'], [{ name: 'b.conf', text: 'b' }, { name: 'a.conf', text: 'a' }]), ['console=ttyS0', 'a', 'b'], 'profile defaults first, then the files in byte order of their names');
});

t.test('edits: append, delete and replace as rpm-ostree does them, left to right', async (t) => {
  const base = ['console=tty0', 'console=ttyS0', 'root=LABEL=larch-root', 'quiet'];
  t.same(editKargs(base, [{ op: 'append', arg: 'panic=1' }]), [...base, 'panic=1'], 'append at the end');
  t.same(editKargs(['console=ttyS0', 'ro'], [{ op: 'append', arg: 'quiet' }, { op: 'delete', arg: 'console' }]), ['ro', 'quiet'], 'the issue\'s --append quiet --delete console, one console=');
  t.same(editKargs(base, [{ op: 'delete', arg: 'console=tty0' }]), ['console=ttyS0', 'root=LABEL=larch-root', 'quiet'], 'delete K=V: that exact one');
  t.equal(code(() => editKargs(base, [{ op: 'delete', arg: 'console' }])), 'USAGE', 'delete K with two console=: USAGE');
  t.match(code(() => editKargs(base, [{ op: 'delete', arg: 'nosuch' }])), 'INVALID_INPUT', 'nothing to delete: INVALID_INPUT');
  t.same(editKargs(base, [{ op: 'replace', arg: 'root=PARTUUID=1234' }]), ['console=tty0', 'console=ttyS0', 'root=PARTUUID=1234', 'quiet'], 'replace K=V in place');
  t.equal(code(() => editKargs(base, [{ op: 'replace', arg: 'console=ttyAMA0' }])), 'USAGE', 'replace with two of the key: USAGE');
  t.equal(code(() => editKargs(base, [{ op: 'replace', arg: 'quiet' }])), 'USAGE', 'replace needs KEY=VALUE');
  t.equal(code(() => editKargs(base, [{ op: 'replace', arg: 'nosuch=1' }])), 'INVALID_INPUT', 'nothing to replace');
  t.equal(code(() => editKargs(base, [{ op: 'append', arg: 'larch.slot=B' }])), 'USAGE', 'larch.slot cannot be edited');
  t.equal(code(() => editKargs(base, [{ op: 'append', arg: 'a b' }])), 'USAGE', 'one argument per flag');
  t.same(editKargs(base, []), base, 'no edit, no change');
});

t.test('an upgrade applies the vendor\'s change and keeps the local edits (bootc\'s rule)', async (t) => {
  const vendor1 = ['console=ttyS0', 'quiet'];
  const booted = ['console=ttyS0', 'quiet', 'mitigations=off']; // the user appended mitigations=off
  t.same(computeKargs(booted, vendor1, ['console=ttyS0', 'quiet', 'audit=0']), ['console=ttyS0', 'quiet', 'mitigations=off', 'audit=0'], 'a vendor argument added: appended, the local one kept');
  t.same(computeKargs(booted, vendor1, ['console=ttyS0']), ['console=ttyS0', 'mitigations=off'], 'a vendor argument removed: gone');
  t.same(computeKargs(['console=ttyS0', 'mitigations=off'], vendor1, vendor1), ['console=ttyS0', 'mitigations=off'], 'a vendor argument the user deleted stays deleted while the vendor keeps it');
  t.same(computeKargs(['console=tty0', 'console=ttyS0'], ['console=tty0', 'console=ttyS0'], ['console=ttyS0']), ['console=ttyS0'], 'counted per occurrence');
  await t.resolves(
    fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('a', 'b=1', 'c', 'console=x', 'd=2'), { maxLength: 8 }), fc.array(fc.constantFrom('a', 'b=1', 'c', 'console=x', 'e'), { maxLength: 8 }), fc.array(fc.constantFrom('x', 'y=2'), { maxLength: 3 }), async (v1, v2, local) => {
        const booted = [...v1, ...local];
        // Unchanged vendor: unchanged deployment; a fresh deployment from v1 then upgraded equals one made from v2 (local edits aside).
        const same = JSON.stringify(computeKargs(booted, v1, v1)) === JSON.stringify(booted);
        const fresh = JSON.stringify([...computeKargs(v1, v1, v2)].sort()) === JSON.stringify([...v2].sort());
        const kept = local.every((l) => computeKargs(booted, v1, v2).includes(l));
        return same && fresh && kept;
      }),
      { numRuns: 300 },
    ),
    'an unchanged vendor list changes nothing; the vendor part follows the new list; local arguments stay',
  );
});

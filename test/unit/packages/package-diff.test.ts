/** Package lists in commit metadata, their diff, the larch layout paths and apt's output parsers. */
import t from 'tap';
import { parsePolicy, parseStanzas } from '../../../src/compose/apt-output.ts';
import { bootDestination, imagePath, matchGlob, normalizeMemberName } from '../../../src/compose/layout.ts';
import { decodePackageList, diffCommitPackages, diffPackageLists, encodePackageList } from '../../../src/packages/package-diff.ts';
import { formatPackageDiff } from '../../../src/cli/package-diff.ts';
import type { CborValue } from '../../../src/store/cbor.ts';

const p = (name: string, version: string, architecture = 'amd64') => ({ name, version, architecture });

t.test('diff: upgraded, downgraded, added, removed, by Debian version order', async (t) => {
  const from = [p('libc6', '2.36-9+deb12u7'), p('tzdata', '2026f-0+deb12u1', 'all'), p('gone', '1'), p('same', '1'), p('epoch', '1:1.0'), p('multi', '1', 'i386')];
  const to = [p('libc6', '2.36-9+deb12u14'), p('tzdata', '2025b-0+deb12u1', 'all'), p('new', '2'), p('same', '1'), p('epoch', '2.0'), p('multi', '1')];
  t.same(diffPackageLists(from, to), {
    upgraded: [{ name: 'libc6', architecture: 'amd64', from: '2.36-9+deb12u7', to: '2.36-9+deb12u14' }],
    downgraded: [
      { name: 'epoch', architecture: 'amd64', from: '1:1.0', to: '2.0' },
      { name: 'tzdata', architecture: 'all', from: '2026f-0+deb12u1', to: '2025b-0+deb12u1' },
    ],
    added: [p('multi', '1'), p('new', '2')],
    removed: [p('gone', '1'), p('multi', '1', 'i386')],
  });
  t.same(diffPackageLists(from, from), { upgraded: [], downgraded: [], added: [], removed: [] }, 'no change');
  t.equal(formatPackageDiff(diffPackageLists(from, from)), 'No package changes\n');
  t.equal(formatPackageDiff(diffPackageLists([p('a', '1')], [p('a', '2'), p('b', '1', 'all')])), 'Upgraded:\n  a 1 -> 2\nAdded:\n  b 1 all\n');
});

t.test('metadata: sorted on encode, checked on decode', async (t) => {
  const encoded = encodePackageList([p('zlib1g', '1'), p('bash', '5.2.15-2+b2')]);
  t.same(encoded, [['bash', '5.2.15-2+b2', 'amd64'], ['zlib1g', '1', 'amd64']]);
  t.same(decodePackageList(new Map([['larch.packages', encoded]])), [p('bash', '5.2.15-2+b2'), p('zlib1g', '1')]);
  t.equal(decodePackageList(new Map()), undefined, 'no list');
  t.equal(decodePackageList(new Map<string, CborValue>([['larch.packages', [['a', 1, 'x']]]])), undefined, 'malformed');
});

t.test('layout: merged /usr, /var to the factory, boot destinations', async (t) => {
  t.equal(imagePath('bin/sh'), 'usr/bin/sh');
  t.equal(imagePath('lib64/ld-linux-x86-64.so.2'), 'usr/lib64/ld-linux-x86-64.so.2');
  t.equal(imagePath('lib'), 'usr/lib');
  t.equal(imagePath('library/x'), 'library/x', 'only whole components');
  t.equal(imagePath('var'), 'var');
  t.equal(imagePath('var/lib/x'), 'usr/share/factory/var/lib/x');
  t.equal(imagePath('etc/hostname'), 'etc/hostname');
  t.equal(normalizeMemberName('./usr/bin/'), 'usr/bin');
  t.equal(normalizeMemberName('./'), '');
  t.equal(normalizeMemberName('./a/../b'), undefined);
  t.ok(matchGlob('boot/vmlinuz-*', 'boot/vmlinuz-6.1.0-56-arm64'));
  t.notOk(matchGlob('boot/*', 'boot/dtbs/x.dtb'), "'*' stays in one component");
  t.ok(matchGlob('usr/lib/linux-image-*/broadcom/bcm27??-rpi-*.dtb', 'usr/lib/linux-image-6.1.0-56-arm64/broadcom/bcm2711-rpi-4-b.dtb'));
  t.notOk(matchGlob('boot/vmlinuz.*', 'boot/vmlinuzX1'), "'.' is literal");
  t.equal(bootDestination('usr/lib/linux-image-6.1/broadcom/a.dtb'), 'boot/dtbs/a.dtb');
  t.equal(bootDestination('usr/lib/firmware/x.bin'), 'boot/x.bin');
  t.equal(bootDestination('boot/vmlinuz-1'), 'boot/vmlinuz-1');
});

t.test('apt-cache policy and deb822 stanzas', async (t) => {
  const policy = parsePolicy(`tzdata:
  Installed: 2025b-0+deb12u2
  Candidate: 2026f-0+deb12u1
  Version table:
     2026f-0+deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 2025b-0+deb12u2 100
        100 /var/lib/dpkg/status
busybox:arm64:
  Installed: (none)
  Candidate: (none)
  Version table:
`);
  t.same(policy.get('tzdata'), { candidate: '2026f-0+deb12u1', versions: [{ version: '2026f-0+deb12u1', downloadable: true }, { version: '2025b-0+deb12u2', downloadable: false }] });
  t.same(policy.get('busybox:arm64'), { candidate: undefined, versions: [] });
  t.same(parseStanzas('Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nSHA256: AB\n'), [{ Package: 'a', Version: '1', Description: 'x\nmore' }, { Package: 'b', SHA256: 'AB' }]);
});

t.test('diffCommitPackages: the diff of two commits with package lists; null when either has none', async (t) => {
  const meta = (pkgs?: ReturnType<typeof p>[]) => new Map<string, CborValue>(pkgs ? [['larch.packages', encodePackageList(pkgs)]] : [['version', 'x']]);
  const a = [p('libc6', '2.36-9+deb12u7'), p('gone', '1')];
  const b = [p('libc6', '2.36-9+deb12u14'), p('new', '2', 'all')];
  t.same(diffCommitPackages(meta(a), meta(b)), diffPackageLists(a, b), "the lists' diff");
  t.same(diffCommitPackages(meta(a), meta(a)), { upgraded: [], downgraded: [], added: [], removed: [] }, 'no changes is empty lists, not null');
  t.equal(diffCommitPackages(meta(), meta(b)), null, 'the booted commit has no list');
  t.equal(diffCommitPackages(meta(a), meta()), null, 'the offered commit has no list');
});

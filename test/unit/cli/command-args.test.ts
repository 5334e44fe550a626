/** larch command's arguments (src/cli/commands/send-command.ts argsOf): the words of each command as the signed args, mistakes as usage errors. */
import t from 'tap';
import { argsOf } from '../../../src/cli/commands/send-command.ts';

const none = { allowDowngrade: false, retryFailed: false };

t.test('the words of each command become its signed arguments', async (t) => {
  t.same(argsOf('deploy', ['1.4'], none), { version: '1.4' });
  t.same(argsOf('deploy', ['ab12cd34'], { allowDowngrade: true, retryFailed: true }), { version: 'ab12cd34', allow_downgrade: true, retry_failed: true });
  t.same(argsOf('rebase', ['os/beta'], none), { ref: 'os/beta' });
  t.same(argsOf('rebase', ['beta:os/beta'], none), { remote: 'beta', ref: 'os/beta' });
  t.same(argsOf('install', ['jq', 'curl'], none), { packages: ['jq', 'curl'] });
  t.same(argsOf('uninstall', ['jq'], none), { packages: ['jq'] });
  for (const cmd of ['check', 'upgrade', 'rollback', 'reboot', 'cleanup', 'pin', 'unpin', 'cancel'] as const) t.equal(argsOf(cmd, [], none), undefined, `${cmd}: none`);
});

t.test('mistakes are usage errors before anything is sent', async (t) => {
  const usage = { code: 'USAGE' };
  t.throws(() => argsOf('deploy', [], none), usage, 'deploy without a version');
  t.throws(() => argsOf('deploy', ['1', '2'], none), usage, 'deploy with two');
  t.throws(() => argsOf('rebase', ['beta:'], none), usage, 'rebase with no ref');
  t.throws(() => argsOf('rebase', ['Bad Remote:os/x'], none), usage, 'rebase to a bad remote name');
  t.throws(() => argsOf('install', [], none), usage, 'install with no package');
  t.throws(() => argsOf('install', ['NotAPackage'], none), usage, 'a bad package name');
  t.throws(() => argsOf('pin', ['x'], none), usage, 'pin takes none');
  t.throws(() => argsOf('upgrade', [], { allowDowngrade: true, retryFailed: false }), usage, '--allow-downgrade is for deploy');
});

/**
 * The HTTP transport seen from a device: an upgrade from a repo served by a real nginx (Debian
 * package) as plain files, and a download interrupted by killing the server (and the device)
 * that resumes after a restart without the server sending again the bytes the device holds,
 * proven from the server's access log.
 */
import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REF, status, vendor } from '../device-helpers.ts';
import { BIN, freePort, larchOk, sh, tempDir, waitUntil } from '../helpers.ts';

const MiB = 1024 * 1024;

t.test('a device upgrades from a repo served by nginx as plain files', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dir = tempDir(t);
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `user root;
daemon off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')};
events { worker_connections 64; }
http {
  access_log ${join(dir, 'access.log')};
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  types { application/octet-stream summary sig filez commit dirtree dirmeta; }
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${v.repo}; }
}
`,
  );
  const nginx: ChildProcess = spawn('nginx', ['-c', conf, '-p', dir], { stdio: 'ignore' });
  t.teardown(() => nginx.kill('SIGQUIT'));
  const url = `http://127.0.0.1:${port}/`;
  await waitUntil(() => existsSync(join(dir, 'nginx.pid')), 20_000, 'nginx to listen');

  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'grub']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  const v2 = await v.release(2);
  const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
  t.match(up, { result: 'staged', to: { commit: v2 }, download: { via: 'delta' } }, 'upgraded through nginx with the static delta');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, version: '2' } });
  const log = readFileSync(join(dir, 'access.log'), 'utf8');
  t.match(log, /GET \/deltas\/[0-9a-f]{64}-[0-9a-f]{64}\/part-0 HTTP\/1.1" 200/, "nginx's log shows the delta part it served");
});

t.test('server killed mid-download: the next upgrade resumes and nothing is sent twice', async (t) => {
  const v = await vendor(t);
  await v.release(1);
  const dev = join(tempDir(t), 'device');
  await larchOk(['provision', '--sysroot', dev, '--repo-url', v.url, '--ref', REF, '--keys', `${v.key}.pub`, '--bootloader', 'uboot']);
  await larchOk(['sim-boot', '--sysroot', dev]);
  // Incompressible content, so the delta's parts are large enough to interrupt.
  const v2 = await v.release(2, { files: { 'usr/share/big/blob': randomBytes(6 * MiB) } });

  // A slow server on a fixed port, so the device's URL stays the same across the restart. The
  // device was provisioned against the vendor's default server; point it at this one.
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = JSON.parse(readFileSync(join(dev, 'larch/config.json'), 'utf8'));
  writeFileSync(join(dev, 'larch/config.json'), JSON.stringify({ ...config, remote: { ...config.remote, url } }));
  const logs = [join(tempDir(t), 'serve-1.log'), join(tempDir(t), 'serve-2.log')];
  const serve = (log: string, rate: string[]) => spawn(BIN, ['serve', '--repo', v.repo, '--port', String(port), '--log', log, ...rate], { stdio: 'ignore' });
  const slow = serve(logs[0], ['--rate', String(1 * MiB)]);
  t.teardown(() => slow.kill('SIGKILL'));
  await waitUntil(() => sh(`ss -ltn 'sport = :${port}' | tail -n +2`).trim() !== '', 20_000, 'the slow server');

  const upgrade = spawn(BIN, ['upgrade', '--sysroot', dev], { stdio: 'ignore' });
  t.teardown(() => upgrade.kill('SIGKILL'));
  const downloads = join(dev, 'larch/download');
  const partial = () => {
    for (const d of existsSync(downloads) ? readdirSync(downloads) : []) {
      for (const f of readdirSync(join(downloads, d))) if (f.startsWith('part-') && statSync(join(downloads, d, f)).size > 1 * MiB) return join(downloads, d, f);
    }
    return null;
  };
  await waitUntil(() => partial() !== null, 60_000, 'a part to be half downloaded');
  const exited = [slow, upgrade].map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r))));
  slow.kill('SIGKILL');
  upgrade.kill('SIGKILL');
  await Promise.all(exited);
  const partFile = partial()!;
  const held = statSync(partFile).size;
  t.equal((await status(dev)).pending, null, 'nothing staged after the interruption');

  const fast = serve(logs[1], []);
  t.teardown(() => fast.kill('SIGKILL'));
  await waitUntil(() => sh(`ss -ltn 'sport = :${port}' | tail -n +2`).trim() !== '', 20_000, 'the restarted server');
  const up = (await larchOk(['upgrade', '--sysroot', dev, '--json'])).json;
  t.match(up, { result: 'staged', to: { commit: v2 }, download: { via: 'delta' } }, 'the upgrade finishes after the restart');

  const entries = readFileSync(logs[1], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const partName = partFile.split('/').slice(-2).join('/');
  const partRequests = entries.filter((e) => e.path.endsWith(partName));
  t.equal(partRequests.length, 1, 'the interrupted part was asked for once after the restart');
  t.same(partRequests[0]?.range?.[0], held, `the request resumed at byte ${held}, what the device held`);
  t.equal(partRequests[0]?.bytes, partRequests[0]?.size - held, 'the server sent only the missing bytes');
  t.match((await larchOk(['sim-boot', '--sysroot', dev, '--json'])).json, { slot: 'B', check: { healthy: true, version: '2' } });
});

/**
 * changeBootState when the env write fails with an I/O error after it may have reached the disk
 * (EIO on the fsync after the rename): the error says whether the change took
 * effect and which state the env is in, read back. The env storage is injected (EnvFileIo).
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { LarchError } from '../../../src/errors.ts';
import { type EnvFileIo, type EnvStore, grubEnvStore, nodeEnvFileIo, openUbootEnvStore } from '../../../src/bootcount/env-store.ts';
import { next } from '../../../src/bootcount/state.ts';
import { changeBootState, createBootEnv, readBootState } from '../../../src/agent/boot.ts';
import { type BootloaderKind, type DeviceConfig, Sysroot } from '../../../src/agent/sysroot.ts';
import { tempDir } from '../../helpers.ts';

/** A sysroot as provision leaves it: S/larch (the env lock lives there) and the initial env. */
async function provisioned(t: { teardown(fn: () => unknown): void }, kind: BootloaderKind): Promise<string> {
  const dir = tempDir(t);
  mkdirSync(new Sysroot(dir).larchDir, { recursive: true });
  await createBootEnv(new Sysroot(dir), kind);
  return dir;
}

const eio = (syscall: string) => Object.assign(new Error(`EIO: i/o error, ${syscall}`), { code: 'EIO', errno: -5, syscall });

/** A sysroot whose env store writes through `io`. */
class FaultySysroot extends Sysroot {
  constructor(path: string, private readonly io: EnvFileIo) {
    super(path);
  }
  override async envStore(kind: BootloaderKind): Promise<EnvStore> {
    if (kind === 'grub') return grubEnvStore(this.envPath('grub'), { lockPath: this.lockPath, io: this.io });
    return openUbootEnvStore(this.fwEnvConfigPath(), { lockPath: this.lockPath, io: this.io });
  }
}

const ios: Record<string, EnvFileIo> = {
  // The rename happened, then the fsync failed: the new env is on the disk.
  'EIO after the rename': { ...nodeEnvFileIo, replaceFile: async (path, bytes, mode) => { await nodeEnvFileIo.replaceFile(path, bytes, mode); throw eio('fsync'); } },
  'EIO after an in-place write': { ...nodeEnvFileIo, writeAt: async (path, offset, bytes, o) => { await nodeEnvFileIo.writeAt(path, offset, bytes, o); throw eio('fsync'); } },
  // Nothing reached the disk.
  'EIO before anything was written': { ...nodeEnvFileIo, replaceFile: async () => { throw eio('write'); }, writeAt: async () => { throw eio('write'); } },
};

for (const kind of ['grub', 'uboot'] as const) {
  for (const [name, io] of Object.entries(ios)) {
    // grubenv is replaced by rename; the redundant U-Boot env files are written in place.
    if ((kind === 'grub' && name === 'EIO after an in-place write') || (kind === 'uboot' && name === 'EIO after the rename')) continue;
    t.test(`${kind}: ${name}`, async (t) => {
      const dir = await provisioned(t, kind);
      const sysroot = new FaultySysroot(dir, io);
      const config = { bootloader: kind } as DeviceConfig;
      const err = await changeBootState(sysroot, config, (s) => next(s, { type: 'upgrade-staged', slot: 'B' })).then(() => null, (e: unknown) => e);
      t.ok(err instanceof LarchError, 'a LarchError');
      const e = err as LarchError;
      t.equal(e.code, 'IO', 'exit 9 (IO)');
      const tookEffect = !name.includes('before');
      t.equal(e.data.took_effect, tookEffect, 'data.took_effect');
      t.match(e.message, tookEffect ? /the change took effect anyway: the env now says: order B A, A good, B unconfirmed with 3 tries/ : /the change did not take effect: the env now says: order A B, A good/, 'the message says what the device will do');
      t.equal((e.data.boot_env_after as Record<string, string>).BOOT_ORDER, tookEffect ? 'B A' : 'A B', 'data.boot_env_after: the env read back');
      t.match(e.message, /EIO/, 'and the cause');
    });
  }
}

t.test('a rename that fails leaves the old env and says so', async (t) => {
  // The stock replaceFile with the rename itself failing (EXDEV stands in for any rename error).
  const dir = await provisioned(t, 'grub');
  const io: EnvFileIo = { ...nodeEnvFileIo, replaceFile: async (path) => { await rename(`${path}.none`, path).catch(() => { throw eio('rename'); }); } };
  const err = (await changeBootState(new FaultySysroot(dir, io), { bootloader: 'grub' } as DeviceConfig, (s) => next(s, { type: 'marked-bad', slot: 'A' })).catch((e: unknown) => e)) as LarchError;
  t.equal(err.code, 'IO');
  t.equal(err.data.took_effect, false);
});

t.test('a damaged env on storage that cannot be written: read as the safe default, reported corrupt, never fatal', async (t) => {
  const dir = await provisioned(t, 'grub');
  writeFileSync(new Sysroot(dir).envPath('grub'), Buffer.alloc(1024));
  const sysroot = new FaultySysroot(dir, ios['EIO before anything was written']);
  const read = await readBootState(sysroot, { bootloader: 'grub' } as DeviceConfig);
  t.equal(read.env.health, 'corrupt');
  t.match(read.env.hint, /could not be rewritten .*EIO/);
  t.same([read.state.order, read.state.lastGood, read.state.slots.A.good], [['A', 'B'], 'A', true], "the bootloader's view: the safe default");
  const err = (await changeBootState(sysroot, { bootloader: 'grub' } as DeviceConfig, (s) => s).catch((e: unknown) => e)) as LarchError;
  t.equal(err.code, 'ENV_CORRUPT', 'a change is refused with the reason');
});

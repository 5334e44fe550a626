/**
 * What every scenario gets (a powered-off board with the pristine image flashed, the vendor repo
 * served, helpers that boot, reboot and drive larch on the console) and what it leaves behind
 * (boot times and notes for the report). Scenarios throw on the first broken expectation.
 */
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Board, Bootloader } from './board.ts';
import { type BootCase, boardBoot, compareBoots, compareEnv, compareSlots, formatBoots, larchVars, loadBootCases, predictBlsBoots, predictBoots } from './boot-table.ts';
import { RELEASES_VARIABLE } from '../../src/bootcount/release-gate.ts';
import { type BootResult, type BootLine, Shell, larchJson, waitBoot } from './device.ts';
import { compareEspWithStatus, espListingCommand, parseEspListing } from './esp-check.ts';
import { type BaseImage, ROOT, Server, type Variant, type VariantKind, composeVariant } from './fixture.ts';

/** systemd-bless-boot on the board (Debian's systemd-boot in the image), on the ESP at /sysroot/boot; it reads systemd-boot's EFI variables. */
const BLESS_BOOT = "busybox grep -q ' /sys/firmware/efi/efivars efivarfs ' /proc/mounts || busybox mount -t efivarfs efivarfs /sys/firmware/efi/efivars; /usr/lib/systemd/systemd-bless-boot --path=/sysroot/boot";

/** Runs `systemd-bless-boot VERB` on the board; what it printed last (for status: its one word). */
export async function blessBoot(shell: Shell, verb: 'good' | 'bad' | 'indeterminate' | 'status'): Promise<string> {
  return (await shell.ok(`${BLESS_BOOT} ${verb}`)).trim().split('\n').pop() ?? '';
}

export interface BootTime {
  label: string;
  seconds: number;
}

export interface ScenarioReport {
  id: string;
  name: string;
  board: string;
  ok: boolean;
  seconds: number;
  boots: BootTime[];
  notes: string[];
  error?: string;
  log: string;
}

export class HilError extends Error {}

export function expectThat(cond: unknown, message: string): asserts cond {
  if (!cond) throw new HilError(message);
}

export class Ctx {
  readonly shell: Shell;
  readonly boots: BootTime[] = [];
  readonly notes: string[] = [];
  readonly cases: BootCase[] = loadBootCases(ROOT);
  private variants = 0;

  constructor(
    readonly board: Board,
    readonly base: BaseImage,
    /** This scenario's copy of the vendor repo (served while it runs). */
    readonly repo: string,
    readonly workDir: string,
  ) {
    this.shell = new Shell(board);
  }

  note(message: string): void {
    this.notes.push(message);
    this.board.console.note(message);
  }

  /** A new version on the device's ref, newer than everything before (compose + publish on the host), carrying `agent` (default: the image's). */
  compose(kind: VariantKind, agent?: string): Variant {
    const v = composeVariant(this.base, this.repo, kind, ++this.variants, agent);
    this.board.console.note(`composed ${kind} version ${v.version} (${v.commit.slice(0, 12)})`);
    return v;
  }

  /** Power on and follow the boot(s) to a shell with the network up. */
  async powerOn(label: string, opts: { timeoutMs?: number } = {}): Promise<BootResult> {
    this.board.console.skipAll();
    const started = Date.now();
    await this.board.powerOn();
    return this.afterBoot(label, started, opts.timeoutMs);
  }

  /** A reboot asked from the running system (`reboot -f`: no init runs, so the harness syncs first). */
  async reboot(label: string, opts: { timeoutMs?: number } = {}): Promise<BootResult> {
    this.board.console.skipAll();
    const started = Date.now();
    await this.board.console.send('sync; busybox reboot -f');
    return this.afterBoot(label, started, opts.timeoutMs);
  }

  async powerOff(): Promise<void> {
    await this.board.powerOff();
  }

  private async afterBoot(label: string, started: number, timeoutMs?: number): Promise<BootResult> {
    const r = await waitBoot(this.board, { started, timeoutMs });
    this.boots.push({ label, seconds: r.seconds });
    this.board.console.note(`${label}: ${formatBoots(r.boots)} -> boot-check ${r.check.outcome} on slot ${r.check.slot} (${r.check.version}) in ${r.seconds.toFixed(1)} s`);
    await this.shell.ready();
    for (const c of this.board.setupCommands) await this.shell.ok(c, 60_000);
    if (this.board.bootloader === 'systemd-boot') await this.checkSystemdBoot(label, r);
    return r;
  }

  /**
   * After every boot of a systemd-boot board: the entries systemd-boot counts in, read on the
   * board, against `larch status`; and systemd-bless-boot's verdict on this boot against
   * boot-check's (good when a counted entry booted and was confirmed, clean when an uncounted one
   * booted). Throws on the first difference.
   */
  private async checkSystemdBoot(label: string, r: BootResult): Promise<void> {
    const esp = parseEspListing(await this.shell.ok(espListingCommand('/sysroot/boot')));
    const st = await this.status();
    const problems = compareEspWithStatus(esp, st.boot);
    expectThat(problems.length === 0, `${label}: systemd-boot's entries and larch status disagree: ${problems.join('; ')}`);
    const last = r.boots[r.boots.length - 1];
    const expected = !last?.wrote ? 'clean' : r.check.outcome === 'confirmed' ? 'good' : null;
    if (expected !== null) {
      const bless = await blessBoot(this.shell, 'status');
      expectThat(bless === expected, `${label}: systemd-bless-boot status says '${bless}', expected '${expected}' (${last?.wrote ? 'a counted entry booted' : 'an uncounted entry booted'}, boot-check ${r.check.outcome})`);
    }
    this.board.console.note(`${label}: systemd-boot's entries agree with larch status (${Object.values(esp.slots).map((e) => e!.file).join(', ')}, rescue on ${esp.rescue})${expected ? `; systemd-bless-boot status: ${expected}` : ''}`);
  }

  async larch<T = any>(args: string, timeoutMs = 600_000): Promise<T> {
    const r = await larchJson<T>(this.shell, args, timeoutMs);
    if (r.code !== 0 || r.json === null) throw new HilError(`larch ${args} exited ${r.code} on the board:\n${r.out.slice(-2000)}`);
    return r.json;
  }

  async status(): Promise<any> {
    return this.larch('status');
  }

  /**
   * Powers the board off, checks that the env on its storage is the case's starting env, powers on
   * and checks that the bootloader boots as the case says (and as bootloaderChoose predicts from
   * the env actually read). Backends that cannot read the env check the boots only.
   */
  async powerOnAsCase(caseName: string, bootCount: number, label: string, opts: { timeoutMs?: number } = {}): Promise<BootResult> {
    const c = this.cases.find((x) => x.name === caseName);
    expectThat(c, `board/boot-cases.json has no case '${caseName}'`);
    const expected: BootLine[] = c.boots.slice(0, bootCount).map((b) => boardBoot(b, this.board.bootloader));
    const bls = this.board.bootloader === 'systemd-boot';
    // A power cycle, not a power cut: flush everything first (cuts are scenario c's business; a cut
    // right after `larch upgrade` returned has left the FAT boot partition inconsistent).
    if (this.board.powered) await this.shell.ok('sync');
    await this.board.powerOff();
    const env = this.board.readBootEnv ? await this.board.readBootEnv() : null;
    if (this.board.readBootEnv) expectThat(env !== null, `the bootloader env on the board cannot be read (missing or corrupt) before case ${caseName}`);
    if (env && typeof c.env === 'object') {
      // A case with no release gate tells the bootloader's A/B logic only: the board's agent keeps
      // its release floor (BOOT_RELEASES) beside it, and predictBoots below, reading the board's
      // whole env, shows that gate changes no boot.
      const gated = RELEASES_VARIABLE in c.env;
      const diff = bls ? compareSlots(larchVars(env), c.env) : compareEnv(larchVars(env), c.env).filter((d) => gated || !d.startsWith(`${RELEASES_VARIABLE}=`));
      expectThat(diff.length === 0, `the env on the board is not case ${caseName}'s: ${diff.join('; ')}`);
      const predicted = bls && this.board.readBootEntries ? predictBlsBoots(await this.board.readBootEntries(), bootCount) : predictBoots(env, bootCount).boots;
      const p = compareBoots(predicted, expected);
      expectThat(p.length === 0, `bootloaderChoose disagrees with case ${caseName}: ${p.join('; ')}`);
    }
    const r = await this.powerOn(label, opts);
    const problems = compareBoots(r.boots, expected);
    expectThat(problems.length === 0, `the board's bootloader disagrees with case ${caseName}: ${problems.join('; ')}`);
    this.note(`boots agree with board/boot-cases.json case ${caseName}: ${formatBoots(r.boots)}`);
    return r;
  }
}

/** Everything a scenario needs and checks at its end: /var and local /etc edits (e) survived. */
export interface Scenario {
  id: string;
  name: string;
  /** A scenario that does not use the device's shell (it powers the board itself). */
  raw?: boolean;
  /** The bootloaders it is about (default: every board); on other boards it is reported as not applicable, never as passed. */
  bootloaders?: Bootloader[];
  /**
   * How many versions it composes (ctx.compose calls): the runner builds their resolved trees
   * ahead, beside the image build and the first boots (warmVariantTrees). A wrong count costs
   * time only: a compose beyond it builds its own tree, as without warm-up.
   */
  variants?: number;
  run(ctx: Ctx): Promise<void>;
}

/** Local state made at the start of every scenario and checked at its end (scenario e). */
export const LOCAL_STATE = {
  make: "mkdir -p /var/lib/hil && echo hil-var-kept > /var/lib/hil/marker && echo hil-board > /etc/hostname && echo 'local=kept' > /etc/hil-local.conf && sync",
  check: 'cat /var/lib/hil/marker /etc/hostname /etc/hil-local.conf',
  expected: 'hil-var-kept\nhil-board\nlocal=kept',
};

export interface RunOptions {
  board: Board;
  base: BaseImage;
  workDir: string;
}

/** What to stop when the run is interrupted (Ctrl-C): QEMU and larch serve are child processes. */
export const live = { boards: new Set<Board>(), servers: new Set<Server>() };

/** Runs one scenario on a freshly flashed board with its own copy of the vendor repo. */
export async function runScenario(s: Scenario, opts: RunOptions): Promise<ScenarioReport> {
  const started = Date.now();
  const dir = join(opts.workDir, `scenario-${s.id}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const repo = join(dir, 'repo');
  cpSync(opts.base.repo, repo, { recursive: true });
  const server = new Server(repo, opts.base.port, join(dir, 'serve.log'), opts.base.listenHost);
  const ctx = new Ctx(opts.board, opts.base, repo, dir);
  live.boards.add(opts.board);
  live.servers.add(server);
  const report: ScenarioReport = { id: s.id, name: s.name, board: opts.board.name, ok: false, seconds: 0, boots: ctx.boots, notes: ctx.notes, log: opts.board.console.logPath };
  opts.board.console.note(`==== scenario ${s.id}: ${s.name}`);
  try {
    await opts.board.powerOff();
    await opts.board.flash(opts.base.image);
    await server.start();
    if (s.raw) {
      await s.run(ctx);
    } else {
      const first = await ctx.powerOn('first boot (factory image)');
      expectThat(first.check.slot === 'A' && first.check.healthy && first.check.commit === opts.base.commit, `first boot: expected the factory commit healthy in slot A, got ${JSON.stringify(first.check)}`);
      await ctx.shell.ok(LOCAL_STATE.make);
      await s.run(ctx);
      const kept = await ctx.shell.ok(LOCAL_STATE.check);
      expectThat(kept.trim() === LOCAL_STATE.expected, `(e) /var and local /etc edits lost: got ${JSON.stringify(kept)}`);
      ctx.note('(e) /var/lib/hil/marker, /etc/hostname and /etc/hil-local.conf kept');
    }
    report.ok = true;
  } catch (e) {
    report.error = (e as Error).message;
    opts.board.console.note(`scenario ${s.id} FAILED: ${report.error}`);
  } finally {
    await opts.board.powerOff().catch(() => {});
    await server.stop();
    live.servers.delete(server);
    report.seconds = (Date.now() - started) / 1000;
  }
  return report;
}

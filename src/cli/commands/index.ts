/**
 * The command table, in the order `larch --help` lists them. Each name maps to the module that
 * defines it, loaded only when the command runs: a command pays for its own module graph, not
 * for every other command's (the Bun binary's resident memory at start-up was 52 MB with every
 * module loaded, 41 MB with delta.ts's graph alone; `larch delta apply` on a device is measured
 * against a memory budget, docs/architecture.md). test/unit/cli/command-table.test.ts checks the
 * table against the modules.
 */
import type { Command } from '../command.ts';

type Module = () => Promise<readonly Command[]>;

const init: Module = async () => [(await import('./init.ts')).init];
const keygen: Module = async () => [(await import('./keygen.ts')).keygen];
const commit: Module = async () => [(await import('./commit.ts')).commit];
const compose: Module = async () => [(await import('./compose.ts')).compose];
const exportOci: Module = async () => [(await import('./export-oci.ts')).exportOci];
const verify: Module = async () => {
  const m = await import('./verify.ts');
  return [m.sign, m.verify, m.trust];
};
const trust: Module = async () => (await import('./trust.ts')).trustCommands;
const inspect: Module = async () => {
  const m = await import('./inspect.ts');
  return [m.log, m.show, m.ls, m.diff, m.refs];
};
const db: Module = async () => (await import('./db.ts')).dbCommands;
const checkout: Module = async () => [(await import('./checkout.ts')).checkout];
const fsck: Module = async () => [(await import('./fsck.ts')).fsck];
const prune: Module = async () => [(await import('./prune.ts')).prune];
const pullLocal: Module = async () => [(await import('./pull-local.ts')).pullLocal];
const image: Module = async () => [(await import('./image.ts')).imageBuildCommand];
const delta: Module = async () => {
  const m = await import('./delta.ts');
  return [m.deltaGenerate, m.deltaApply, m.deltaList, m.deltaShow];
};
const barrier: Module = async () => (await import('./barrier.ts')).barrierCommands;
const publish: Module = async () => [(await import('./publish.ts')).publish];
const bundle: Module = async () => (await import('./bundle.ts')).bundleCommands;
const serve: Module = async () => [(await import('./serve.ts')).serve];
const device: Module = async () => (await import('./device.ts')).deviceCommands;
const layering: Module = async () => (await import('./layering.ts')).layeringCommands;
const kargs: Module = async () => (await import('./kargs.ts')).kargsCommands;
const remote: Module = async () => (await import('./remote.ts')).remoteCommands;
const cancel: Module = async () => [(await import('./cancel.ts')).cancel];
const applyLive: Module = async () => (await import('./apply-live.ts')).applyLiveCommands;
const daemon: Module = async () => [(await import('./daemon.ts')).daemon];
const announce: Module = async () => [(await import('./announce.ts')).announceCmd];
const sendCommand: Module = async () => [(await import('./send-command.ts')).sendCommandCmd];
const bootenv: Module = async () => (await import('./bootenv.ts')).bootenvCommands;
const failpoints: Module = async () => [(await import('./failpoints.ts')).failpoints];

/** Every command name, in `larch --help` order, with the module that defines it. */
export const COMMAND_TABLE: readonly (readonly [name: string, module: Module])[] = [
  ['init', init],
  ['keygen', keygen],
  ['commit', commit],
  ['compose', compose],
  ['export-oci', exportOci],
  ['sign', verify],
  ['verify', verify],
  ['trust', verify],
  ...['trust create', 'trust sign', 'trust rotate', 'trust show', 'trust publish', 'trust install'].map((n) => [n, trust] as const),
  ['log', inspect],
  ['show', inspect],
  ['ls', inspect],
  ['diff', inspect],
  ['db list', db],
  ['db diff', db],
  ['refs', inspect],
  ['checkout', checkout],
  ['fsck', fsck],
  ['prune', prune],
  ['pull-local', pullLocal],
  ['image build', image],
  ...['delta generate', 'delta apply', 'delta list', 'delta show'].map((n) => [n, delta] as const),
  ...['barrier add', 'barrier remove', 'barrier list'].map((n) => [n, barrier] as const),
  ['publish', publish],
  ['bundle create', bundle],
  ['serve', serve],
  ...['provision', 'status', 'check', 'upgrade', 'deploy', 'rollback', 'finalize', 'cleanup', 'pin', 'unpin', 'history', 'boot-check', 'mark-good', 'mark-bad', 'sim-boot'].map((n) => [n, device] as const),
  ['kargs', kargs],
  ...['remote add', 'remote list', 'remote show', 'remote delete', 'rebase'].map((n) => [n, remote] as const),
  ['cancel', cancel],
  ['apply-live', applyLive],
  ...['install', 'uninstall', 'override replace', 'override remove', 'override reset'].map((n) => [n, layering] as const),
  ['daemon', daemon],
  ['announce', announce],
  ['command', sendCommand],
  ...['bootenv list', 'bootenv get', 'bootenv set', 'bootenv unset', 'bootenv init'].map((n) => [n, bootenv] as const),
  ['failpoints', failpoints],
];

export const COMMAND_NAMES: readonly string[] = COMMAND_TABLE.map(([name]) => name);

/** The command of this name, its module loaded; undefined for a name not in the table. */
export async function loadCommand(name: string): Promise<Command | undefined> {
  const entry = COMMAND_TABLE.find(([n]) => n === name);
  if (!entry) return undefined;
  const cmd = (await entry[1]()).find((c) => c.name === name);
  // Only a table out of step with its modules gets here (the command-table test catches it).
  if (!cmd) throw new Error(`command table: '${name}' is not defined by the module the table names`);
  return cmd;
}

/** Commands by name, in table order (all of them by default: `larch --help`, tests). */
export async function loadCommands(names: readonly string[] = COMMAND_NAMES): Promise<Command[]> {
  const out: Command[] = [];
  for (const name of names) out.push((await loadCommand(name))!);
  return out;
}

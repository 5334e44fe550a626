/** Shared helpers for commands that work on a repo. */
import { Repo } from '../../store/repo.ts';
import { type ParsedArgs, need } from '../command.ts';

export const REPO_OPTION = { repo: { type: 'string' as const } };

export function openRepo(args: ParsedArgs, cmd: string): Promise<Repo> {
  return Repo.open(need(args, 'repo', cmd));
}

/** Seconds since the epoch as --json prints times: ISO 8601 UTC with milliseconds. */
export function isoTimeMs(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

export function formatTime(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

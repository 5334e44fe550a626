/**
 * The agent's version, `larch V` for `larch --version`: package.json's `version`, or what the
 * build was told (scripts/build.mjs: LARCH_BUILD_VERSION, so a test can build two agents that
 * differ only in their version). The Bun binary carries it inside a marker string, so a binary
 * that cannot run here (another architecture) can still be read for it (agent/agent-binary.ts).
 */
import pkg from '../package.json' with { type: 'json' };

/** Set by `bun build --define` (scripts/build.mjs): `@(#)larch-agent-version V@(#)`. Undefined under Node. */
declare const LARCH_BUILD_MARKER: string | undefined;

/** Brackets the version in the binary: what(1)'s `@(#)`, and a name no other string holds. */
export const MARKER_PREFIX = '@(#)larch-agent-version ';
export const MARKER_SUFFIX = '@(#)';

/** The characters a version may hold (Debian's, which compat compares): no spaces, no quotes. */
export const VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z.+~:-]*$/;

const marker = typeof LARCH_BUILD_MARKER === 'string' ? LARCH_BUILD_MARKER : `${MARKER_PREFIX}${pkg.version}${MARKER_SUFFIX}`;

/** This agent's version (V of `larch V`). */
export const VERSION: string = marker.slice(MARKER_PREFIX.length, marker.length - MARKER_SUFFIX.length);

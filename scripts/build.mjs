#!/usr/bin/env node
// Builds the single-file device binary with Bun: `node scripts/build.mjs linux-x64|linux-arm64 [--outfile PATH]`.
// linux-x64 -> dist/larch, linux-arm64 -> dist/larch-arm64 (Bun fetches the arm64 runtime from npm).
// The binary's version (`larch --version` prints `larch V`) is package.json's `version`, or
// LARCH_BUILD_VERSION when set (tests build two agents that differ only in it).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values, positionals } = parseArgs({ allowPositionals: true, options: { outfile: { type: 'string' } } });
const platform = positionals[0] ?? 'linux-x64';
const targets = { 'linux-x64': 'dist/larch', 'linux-arm64': 'dist/larch-arm64' };
if (!(platform in targets)) {
  console.error(`build: unknown platform '${platform}'; use one of ${Object.keys(targets).join(', ')}`);
  process.exit(2);
}
const version = process.env.LARCH_BUILD_VERSION || JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version;
// The same characters src/version.ts's VERSION_PATTERN allows: the version sits in a JS string and in `larch V`.
if (!/^[0-9A-Za-z][0-9A-Za-z.+~:-]*$/.test(version)) {
  console.error(`build: version '${version}' (LARCH_BUILD_VERSION or package.json) may hold only letters, digits and . + ~ : -`);
  process.exit(2);
}
const bun = join(root, 'node_modules', '.bin', 'bun');
if (!existsSync(bun)) {
  console.error("build: bun is not installed; run 'npm ci' first");
  process.exit(10);
}
const outfile = values.outfile ? resolve(values.outfile) : join(root, targets[platform]);
mkdirSync(dirname(outfile), { recursive: true });
// src/version.ts reads the version out of this marker (and agent-binary.ts finds it in a binary it cannot run).
// No --bytecode: it starts 10 MB smaller (larch --version 37 MB against 47) but the binary grows
// 6 MB and a one-line code change then costs 22.9 KB of xdelta3 instead of 571 B, where the
// agent's own update is meant to be a tiny delta (docs/architecture.md, "Decisions").
const marker = JSON.stringify(`@(#)larch-agent-version ${version}@(#)`);
const r = spawnSync(bun, ['build', '--compile', `--target=bun-${platform}`, '--compile-exec-argv=--smol', '--minify-syntax', `--define=LARCH_BUILD_MARKER=${marker}`, 'src/cli/larch.ts', '--outfile', outfile], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);

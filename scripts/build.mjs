#!/usr/bin/env node
// Builds the single-file device binary with Bun: `node scripts/build.mjs linux-x64|linux-arm64`.
// linux-x64 -> dist/larch, linux-arm64 -> dist/larch-arm64 (Bun fetches the arm64 runtime from npm).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const platform = process.argv[2] ?? 'linux-x64';
const targets = { 'linux-x64': 'dist/larch', 'linux-arm64': 'dist/larch-arm64' };
if (!(platform in targets)) {
  console.error(`build: unknown platform '${platform}'; use one of ${Object.keys(targets).join(', ')}`);
  process.exit(2);
}
const bun = join(root, 'node_modules', '.bin', 'bun');
if (!existsSync(bun)) {
  console.error("build: bun is not installed; run 'npm ci' first");
  process.exit(10);
}
mkdirSync(join(root, 'dist'), { recursive: true });
const r = spawnSync(bun, ['build', '--compile', `--target=bun-${platform}`, '--compile-exec-argv=--smol', '--minify-syntax', 'src/cli/larch.ts', '--outfile', targets[platform]], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);

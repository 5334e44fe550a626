#!/usr/bin/env node
// Installs the npm dependencies when they are missing, so `npm test` and `npm run demo` work on a
// fresh clone. (npm ci rejects this lock file: npm 11 wants entries for every optional platform
// package of cbor-extract; `npm install` installs exactly the locked versions.)
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'node_modules', '.bin', 'tap')) || !existsSync(join(root, 'node_modules', '.bin', 'bun'))) {
  console.error('ensure-deps: installing npm dependencies');
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

#!/usr/bin/env node
// Runs larch from source on Node (tests, tools); devices run the Bun binary built by `npm run build`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/larch.ts');

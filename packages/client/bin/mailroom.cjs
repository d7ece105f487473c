#!/usr/bin/env node
// The `mailroom` command: runs the built CLI (npm run build in the package, or at the repo root).
try {
  require('../dist/cjs/cli/main.js').main();
} catch (err) {
  if (err && err.code === 'MODULE_NOT_FOUND' && /dist[\\/]cjs[\\/]cli/.test(String(err.message))) {
    console.error('mailroom: the CLI is not built yet; run `npm run build` first');
    process.exit(2);
  }
  throw err;
}

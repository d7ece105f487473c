#!/usr/bin/env node
// Keeps `npm start` as quick as `node dist/main.js` when the build is current, and builds when not.
//
//   node scripts/build-stamp.mjs begin   (prebuild)  notes when a build starts
//   node scripts/build-stamp.mjs end     (postbuild) marks dist as built from the sources of that moment
//   node scripts/build-stamp.mjs check   (prestart)  runs `npm run build` when dist is missing or stale
//
// "Stale" is generic: any file under any folder of the project newer than the last build's start,
// except folders that are never build inputs (outputs, data, tests, docs). A new source folder (a
// dashboard, a package) is covered without changing this script. `--root <dir>` and `--dry-run`
// (print the verdict, build nothing) are for tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Never build inputs, at any depth. */
const SKIP_ANYWHERE = new Set(['node_modules', 'dist', 'data', 'coverage', 'tmp']);
/** Top-level folders that hold no build input. */
const SKIP_TOP = new Set(['test', 'docs', 'bench', 'examples']);
/** Top-level files that change a build: the compiler's and the package's settings. */
const TOP_FILE = /^(package(-lock)?\.json|tsconfig.*\.json|nest-cli\.json)$/;

const args = process.argv.slice(2);
const command = args[0];
const root = args.includes('--root') ? args[args.indexOf('--root') + 1] : process.cwd();
const dryRun = args.includes('--dry-run');
const startedFile = join(root, 'node_modules', '.cache', 'mailroom', 'build-started');
const stampFile = join(root, 'dist', '.build-stamp');

/** Newest modification time (ms) of the build inputs under `dir`. */
function newestInput(dir, top) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name.startsWith('.') || SKIP_ANYWHERE.has(entry.name) || (top && SKIP_TOP.has(entry.name))) {
        continue;
      }
      // Folders' own times are left out: builds that recreate an output folder inside one (a
      // package's dist) would otherwise make every build stale. A deleted source leaves a stray
      // file in dist until the next build, which does no harm.
      newest = Math.max(newest, newestInput(path, false));
    } else if (entry.isFile() && (!top || TOP_FILE.test(entry.name))) {
      newest = Math.max(newest, statSync(path).mtimeMs);
    }
  }
  return newest;
}

/** Why dist must be rebuilt, or undefined when it is current. */
function staleness() {
  if (!existsSync(join(root, 'dist', 'main.js'))) {
    return 'dist/main.js is missing';
  }
  if (!existsSync(stampFile)) {
    return 'dist was not built by npm run build';
  }
  const built = statSync(stampFile).mtimeMs;
  return newestInput(root, true) > built ? 'sources changed since the last build' : undefined;
}

function touch(file, timeMs) {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, '');
  const at = new Date(timeMs);
  utimesSync(file, at, at);
}

switch (command) {
  case 'begin':
    touch(startedFile, Date.now());
    break;
  case 'end':
    // Stamped with the build's start: a file saved while it ran still counts as newer.
    touch(stampFile, existsSync(startedFile) ? statSync(startedFile).mtimeMs : Date.now());
    break;
  case 'check': {
    const reason = staleness();
    if (dryRun) {
      console.log(reason ? `stale: ${reason}` : 'current');
      break;
    }
    if (reason) {
      console.log(`Building first (${reason})`);
      const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
      const build = spawnSync(npm, ['run', 'build'], { cwd: root, stdio: 'inherit' });
      process.exit(build.status ?? 1);
    }
    break;
  }
  default:
    console.error('usage: build-stamp.mjs begin|end|check [--root <dir>] [--dry-run]');
    process.exit(2);
}

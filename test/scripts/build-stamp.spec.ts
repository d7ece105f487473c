import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const SCRIPT = join(__dirname, '..', '..', 'scripts', 'build-stamp.mjs');

/** `npm start`'s prestart check on a project folder of our own making. */
describe('scripts/build-stamp.mjs', () => {
  let root: string;
  const run = (command: string) =>
    execFileSync(process.execPath, [SCRIPT, command, '--root', root, '--dry-run'], {
      encoding: 'utf8',
    }).trim();
  /** Writes a file whose modification time is `offsetMs` from now (no waiting on the clock). */
  const write = (path: string, offsetMs = 0) => {
    const file = join(root, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, 'x');
    const at = new Date(Date.now() + offsetMs);
    utimesSync(file, at, at);
  };
  /** A build: begin, the compiler's output, end. */
  const build = () => {
    run('begin');
    write('dist/main.js');
    run('end');
  };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'mailroom-stamp-'));
    write('package.json', -60_000);
    write('src/main.ts', -60_000);
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('builds a fresh clone, where dist does not exist', () => {
    expect(run('check')).toBe('stale: dist/main.js is missing');
  });

  it('builds when dist was not made by npm run build', () => {
    write('dist/main.js');
    expect(run('check')).toBe('stale: dist was not built by npm run build');
  });

  it('starts at once when nothing changed since the build', () => {
    build();
    expect(run('check')).toBe('current');
  });

  it('builds again when a file in any source folder changed, a new one included', () => {
    build();
    write('src/gateway/x.ts', 60_000);
    expect(run('check')).toBe('stale: sources changed since the last build');
    build();
    write('dashboard/app.tsx', 120_000); // a folder the script has never heard of
    expect(run('check')).toBe('stale: sources changed since the last build');
    build();
    write('tsconfig.build.json', 180_000);
    expect(run('check')).toBe('stale: sources changed since the last build');
  });

  it('ignores what is no build input: outputs, data, tests, docs, dependencies', () => {
    build();
    for (const path of [
      'test/e2e/a.spec.ts',
      'docs/x.md',
      'data/pg',
      'node_modules/x/i.js',
      'packages/c/dist/i.js',
      'README.md',
    ]) {
      write(path, 60_000);
    }
    expect(run('check')).toBe('current');
  });
});

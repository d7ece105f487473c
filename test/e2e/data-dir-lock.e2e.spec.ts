import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerProcess, ensureBuilt } from '../support/server-process';

// Embedded on purpose, whichever database the suite runs on: the lock guards PGlite's files.
describe('one process per embedded data folder', () => {
  let dataDir: string;
  const servers: ServerProcess[] = [];
  const embedded = () => ({ DATA_DIR: dataDir });

  beforeAll(() => {
    ensureBuilt();
    dataDir = mkdtempSync(join(tmpdir(), 'mailroom-lock-'));
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses a second process with one clear line, and a kill -9 leaves no lock behind that blocks a restart', async () => {
    const first = await ServerProcess.start('first', embedded());
    servers.push(first);

    const second = ServerProcess.spawn('second', embedded());
    servers.push(second);
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.output.trim().split('\n')).toEqual([
      `another Mailroom is using ${dataDir} (pid ${first.pid})`,
    ]);
    expect(first.alive).toBe(true);

    await first.stop('SIGKILL');
    expect(existsSync(join(dataDir, 'mailroom.pid'))).toBe(true); // stale: its holder is dead

    const third = await ServerProcess.start('third', embedded());
    servers.push(third);
    const health = await fetch(`${third.url}/health`);
    expect(health.status).toBe(200);

    // A clean shutdown gives the folder back (Nest re-raises the signal once it has closed).
    expect([0, 'SIGTERM']).toContain(await third.stop('SIGTERM'));
    expect(existsSync(join(dataDir, 'mailroom.pid'))).toBe(false);
  });
});

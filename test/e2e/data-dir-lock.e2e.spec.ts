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

  it('refuses a second process with one clear line; after a kill -9 the stale lock blocks no restart, and one of two racers takes it', async () => {
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

    // Two processes starting at once beside the stale lock: exactly one takes the folder over.
    const racers = [ServerProcess.spawn('third', embedded()), ServerProcess.spawn('fourth', embedded())];
    servers.push(...racers);
    const outcome = await Promise.race([
      Promise.any(racers.map(async (r) => ({ winner: r, url: await r.listening() }))),
      Promise.all(racers.map((r) => r.exited)).then(() => undefined),
    ]);
    expect(outcome).toBeDefined();
    const { winner, url } = outcome!;
    const loser = racers.find((r) => r !== winner)!;
    expect(await loser.exited).not.toBe(0);
    // It passed the early look (the lock was stale for both) and learns it when taking the lock: its
    // boot lines come first, then the same one line, and no stack trace or WebAssembly abort.
    const lines = loser.output.trim().split('\n');
    expect(lines[lines.length - 1]).toBe(`another Mailroom is using ${dataDir} (pid ${winner.pid})`);
    expect(loser.output).not.toMatch(/Aborted|ERROR|\n\s+at /);
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    const third = winner;

    // A clean shutdown gives the folder back (Nest re-raises the signal once it has closed).
    expect([0, 'SIGTERM']).toContain(await third.stop('SIGTERM'));
    expect(existsSync(join(dataDir, 'mailroom.pid'))).toBe(false);
  });
});

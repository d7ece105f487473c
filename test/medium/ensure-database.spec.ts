import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { StartupError } from 'src/common/startup-error';
import { ensureDatabase } from 'src/database/ensure-database';

const ROOT = join(__dirname, '..', '..');

async function admin<T>(server: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: server });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const withPath = (server: string, user: string | undefined, database: string) => {
  const url = new URL(server);
  if (user) {
    url.username = user;
  }
  url.pathname = `/${database}`;
  return url.toString();
};

/** Runs the real entry point (TypeScript through swc) and resolves with its exit code and stderr. */
function runMain(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', '@swc-node/register', 'src/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, PORT: '0', LOG_LEVEL: 'error', ...env },
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe(ensureDatabase.name, () => {
  const quiet = { log: () => undefined } as never;

  it('fails with one line when the server cannot be reached', async () => {
    const error = await ensureDatabase('postgres://postgres@127.0.0.1:1/mailroom', quiet).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StartupError);
    expect((error as Error).message).toMatch(
      /^Cannot connect to Postgres at 127\.0\.0\.1:1\/mailroom \(user "postgres"\): \S/,
    );
    expect((error as Error).message).not.toContain('\n');
  });

  // Creating databases and roles needs a Postgres server (TEST_DATABASE_URL); PGlite has neither.
  const server = process.env.TEST_DATABASE_URL;
  if (server) {
    const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    const database = `mailroom_ensure_${suffix}`;
    const role = `mailroom_nocreate_${suffix}`;

    beforeAll(() => admin(server, (c) => c.query(`CREATE ROLE ${role} LOGIN NOCREATEDB`)));

    afterAll(() =>
      admin(server, async (c) => {
        await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
        await c.query(`DROP ROLE IF EXISTS ${role}`);
      }),
    );

    it('creates a missing database when the role may, and leaves an existing one alone', async () => {
      await ensureDatabase(withPath(server, undefined, database), quiet);
      await ensureDatabase(withPath(server, undefined, database), quiet);
      const rows = await admin(server, (c) =>
        c.query(`SELECT 1 FROM pg_database WHERE datname = $1`, [database]),
      );
      expect(rows.rowCount).toBe(1);
    });

    it('says in one line what to do when the role may not create it', async () => {
      const missing = `${database}_missing`;
      const error = await ensureDatabase(withPath(server, role, missing), quiet).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StartupError);
      expect((error as Error).message).toContain(`Database "${missing}" does not exist`);
      expect((error as Error).message).toContain(`role "${role}" may not create it`);
      expect((error as Error).message).not.toContain('\n');
    });

    it('makes the server exit with that one line, not a driver error object', async () => {
      const missing = `${database}_boot`;
      const { code, stderr } = await runMain({ DATABASE_URL: withPath(server, role, missing) });
      expect(code).toBe(1);
      expect(stderr.trim().split('\n')).toEqual([
        expect.stringContaining(`Database "${missing}" does not exist`),
      ]);
    });
  }
});

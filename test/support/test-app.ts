import { INestApplication } from '@nestjs/common';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { createApp } from 'src/bootstrap';
import { Clock } from 'src/common/clock';
import { FakeClock } from 'src/common/fake-clock';
import { AppConfig, loadConfig } from 'src/config/app-config';

/**
 * Where a suite's data lives: a fresh PGlite folder, or (with TEST_DATABASE_URL) a fresh database
 * on that Postgres server. Either way the suite owns it alone and drops it at the end.
 */
export class TestDatabase {
  private constructor(
    readonly dataDir: string,
    readonly databaseUrl: string | undefined,
    private readonly drop: () => Promise<void>,
  ) {}

  static async create(): Promise<TestDatabase> {
    const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-test-'));
    const server = process.env.TEST_DATABASE_URL;
    if (!server) {
      return new TestDatabase(dataDir, undefined, () =>
        Promise.resolve(rmSync(dataDir, { recursive: true, force: true })),
      );
    }
    const name = `mailroom_test_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
    await adminQuery(server, `CREATE DATABASE ${name}`);
    const url = new URL(server);
    url.pathname = `/${name}`;
    return new TestDatabase(dataDir, url.toString(), async () => {
      await adminQuery(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      rmSync(dataDir, { recursive: true, force: true });
    });
  }

  destroy(): Promise<void> {
    return this.drop();
  }
}

async function adminQuery(server: string, text: string): Promise<void> {
  const client = new Client({ connectionString: server });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

export interface TestApp {
  app: INestApplication;
  url: string;
  clock: FakeClock;
  config: AppConfig;
  db: TestDatabase;
  /** Stops the app (data kept), as a crash or a deploy would. */
  stop(): Promise<void>;
  /** Starts the app again on the same data. */
  restart(): Promise<void>;
  /** Stops the app and drops its data. */
  close(): Promise<void>;
}

/** The whole service on a random port, on its own data, with a clock the test drives. */
export async function startTestApp(
  opts: { env?: Record<string, string>; clock?: FakeClock; db?: TestDatabase } = {},
): Promise<TestApp> {
  const db = opts.db ?? (await TestDatabase.create());
  const clock = opts.clock ?? new FakeClock();
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: db.dataDir,
    DATABASE_URL: db.databaseUrl,
    LOG_LEVEL: 'warn',
    TEMPLATES_DIR: join(__dirname, '..', '..', 'templates'),
    ...opts.env,
  });
  const boot = async (c: Clock) => {
    const app = await createApp(config, c);
    return { app, url: (await app.getUrl()).replace('[::1]', '127.0.0.1') };
  };
  let running = await boot(clock);
  const handle: TestApp = {
    app: running.app,
    url: running.url,
    clock,
    config,
    db,
    async stop() {
      await handle.app.close();
    },
    async restart() {
      running = await boot(clock);
      handle.app = running.app;
      handle.url = running.url;
    },
    async close() {
      await handle.app.close().catch(() => undefined);
      await db.destroy();
    },
  };
  return handle;
}

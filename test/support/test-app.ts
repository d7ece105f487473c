import { INestApplication, Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { createApp } from 'src/bootstrap';
import { Clock, SystemClock } from 'src/common/clock';
import { FakeClock } from 'src/common/fake-clock';
import { AppConfig, loadConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';

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
      const template = await embeddedTemplate();
      cpSync(template, dataDir, { recursive: true });
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

let template: Promise<string> | undefined;

/**
 * A migrated, cleanly closed PGlite folder that every suite's embedded database starts as a copy
 * of: creating the cluster and migrating it cost seconds per suite (a fifth of the PGlite run),
 * copying it a few milliseconds. Kept in the temp folder under a key of the migrations' sources and
 * PGlite's version, so a change to either builds a new one; made once per machine, published by
 * rename, so a folder of that name is always a whole one. The migrations still run from scratch here, and
 * on every database of a TEST_DATABASE_URL run.
 */
function embeddedTemplate(): Promise<string> {
  return (template ??= (async () => {
    const root = join(__dirname, '../..');
    const migrations = join(root, 'src/database/migrations');
    const hash = createHash('sha256').update(
      readFileSync(join(root, 'node_modules/@electric-sql/pglite/package.json')),
    );
    for (const file of readdirSync(migrations).sort()) {
      hash.update(file).update(readFileSync(join(migrations, file)));
    }
    const dir = join(tmpdir(), `mailroom-test-template-${hash.digest('hex').slice(0, 16)}`);
    if (existsSync(dir)) {
      return dir;
    }
    const building = mkdtempSync(join(tmpdir(), 'mailroom-test-template-building-'));
    const db = new DatabaseService(loadConfig({ DATA_DIR: building }));
    await db.onModuleInit();
    await db.onApplicationShutdown();
    try {
      renameSync(building, dir);
    } catch {
      rmSync(building, { recursive: true, force: true }); // another run published it first
    }
    return dir;
  })());
}

/**
 * A started, migrated DatabaseService on a fresh {@link TestDatabase}, for specs that test the
 * repositories without the app. `close()` shuts it down and drops the data.
 */
export async function openTestDatabase(): Promise<{
  db: DatabaseService;
  databaseUrl: string | undefined;
  close: () => Promise<void>;
}> {
  Logger.overrideLogger(['error', 'warn']);
  const testDb = await TestDatabase.create();
  const db = new DatabaseService(loadConfig({ DATA_DIR: testDb.dataDir, DATABASE_URL: testDb.databaseUrl }));
  await db.onModuleInit();
  return {
    db,
    databaseUrl: testDb.databaseUrl,
    close: async () => {
      await db.onApplicationShutdown();
      await testDb.destroy();
    },
  };
}

/** What `fn` returns, run in a transaction that is then rolled back: a test that leaves nothing behind. */
export async function inRolledBack<T>(db: DatabaseService, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const rollBack = new Error('roll back');
  let value: T | undefined;
  await db
    .transaction(async (tx) => {
      value = await fn(tx);
      throw rollBack;
    })
    .catch((err: unknown) => {
      if (err !== rollBack) {
        throw err;
      }
    });
  return value as T;
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
  opts: {
    env?: Record<string, string>;
    clock?: FakeClock;
    db?: TestDatabase;
    /** Run on real time (for behaviour paced by a real peer, such as a streaming model); `clock` is then unused. */
    systemClock?: boolean;
  } = {},
): Promise<TestApp> {
  const db = opts.db ?? (await TestDatabase.create());
  const clock = opts.clock ?? new FakeClock();
  const appClock: Clock = opts.systemClock ? new SystemClock() : clock;
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
  let running = await boot(appClock);
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
      running = await boot(appClock);
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

/**
 * A FakeClock a test can wait on. `nextTimers(n, ms)` resolves once `n` more timers (of exactly
 * `ms`, when given) have been set, e.g. the delay of a scripted `delayMs` step: only then does
 * `advance(ms)` fire them. Call it before the action that sets the timers.
 */
export class WatchedClock extends FakeClock {
  private watchers: Array<{ left: number; ms?: number; resolve: () => void }> = [];

  override setTimeout(fn: () => void, ms: number) {
    const handle = super.setTimeout(fn, ms);
    this.watchers = this.watchers.filter((w) => {
      if (w.ms === undefined || w.ms === ms) {
        w.left -= 1;
      }
      if (w.left > 0) {
        return true;
      }
      w.resolve();
      return false;
    });
    return handle;
  }

  nextTimers(n: number, ms?: number, timeoutMs = 20_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const guard = setTimeout(
        () => reject(new Error(`timed out waiting for ${n} timer(s) of ${ms}ms`)),
        timeoutMs,
      );
      this.watchers.push({
        left: n,
        ms,
        resolve: () => {
          clearTimeout(guard);
          resolve();
        },
      });
    });
  }
}

/**
 * A WatchedClock that also answers "is a timer of this length armed right now?" (past or future, no
 * need to start watching before the action): a scripted step's `delayMs`, a switch timeout or a
 * sleep deadline registers its timer a moment after the push that announces the step, so a test
 * waits for the timer before it calls {@link FakeClock.advance}.
 */
export class ArmedTimersClock extends WatchedClock {
  private live: Array<{ ms: number; alive: boolean }> = [];
  /** Each returns true once it has resolved its promise (and is then dropped). */
  private waiters: Array<() => boolean> = [];

  override setTimeout(fn: () => void, ms: number): ReturnType<FakeClock['setTimeout']> {
    const entry = { ms, alive: true };
    const handle = super.setTimeout(() => {
      entry.alive = false;
      fn();
    }, ms);
    this.live = this.live.filter((t) => t.alive);
    this.live.push(entry);
    this.waiters = this.waiters.filter((settled) => !settled());
    return {
      cancel: () => {
        entry.alive = false;
        handle.cancel();
      },
    };
  }

  /** How many timers of exactly `ms` are armed (neither fired nor cancelled). */
  armed(ms: number): number {
    return this.live.filter((t) => t.alive && t.ms === ms).length;
  }

  /** Resolves once at least `count` timers of exactly `ms` are armed. */
  async whenArmed(ms: number, count = 1, timeoutMs = 20_000): Promise<void> {
    await this.until(
      () => (this.armed(ms) >= count ? count : undefined),
      `${count} armed timer(s) of ${ms} ms`,
      timeoutMs,
    );
  }

  /**
   * Resolves with the length of an armed timer of `min`..`max` ms, already armed or still to come:
   * a backoff without `retry-after` has jitter, so only its window is known, not its exact length.
   */
  armedWithin(min: number, max: number, timeoutMs = 20_000): Promise<number> {
    return this.until(
      () => this.live.find((t) => t.alive && t.ms >= min && t.ms <= max)?.ms,
      `a timer of ${min}..${max} ms`,
      timeoutMs,
    );
  }

  /** Waits for an armed timer to make `found` return a value, and resolves with that value. */
  private until<T>(found: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const already = found();
    if (already !== undefined) {
      return Promise.resolve(already);
    }
    return new Promise<T>((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const guard = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const waiter = () => {
        const value = found();
        if (value === undefined) {
          return false;
        }
        clearTimeout(guard);
        resolve(value);
        return true;
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits for a timer of `ms` to be armed, then moves time forward by `ms` so it fires. */
  async advanceWhenArmed(ms: number): Promise<void> {
    await this.whenArmed(ms);
    this.advance(ms);
  }
}

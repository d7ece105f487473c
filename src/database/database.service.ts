import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit, Optional } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { Client, QueryResult } from 'pg';
import { DataSource, DataSourceOptions, EntityManager, QueryRunner } from 'typeorm';
import { PGliteDriver } from 'typeorm-pglite';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { Mutex } from 'src/common/mutex';
import { RpcError } from 'src/common/rpc-error';
import { ensureDatabase } from './ensure-database';
import { Metrics } from 'src/telemetry/metrics';
import { stopwatch } from 'src/telemetry/stopwatch';
import { inChildSpan } from 'src/telemetry/tracing';
import { DataDirLock } from './data-dir-lock';
import { EmbeddedStatements, embeddedStatements } from './embedded-statements';
import { executable, FusedTx, fusedTxs, prepareFused } from './fused';
import { commitFused, run, Statement } from './sql';
import { MIGRATIONS } from './migrations';

/** A transaction's after-commit hooks: those run at its commit, and those run a turn later. */
interface CommitHooks {
  now: Array<() => void>;
  later: Array<() => void>;
}

/** `fn` to run in the async context it is bound in (what AsyncResource.bind does, without the deprecated property it defines on every bound function). */
function bound(fn: () => void): () => void {
  const context = new AsyncResource('mailroom.after-commit');
  return () => context.runInAsyncScope(fn);
}

/** The results of a list of statements, in its order. */
type ResultsOf<S extends Array<Statement<unknown>>> = {
  [K in keyof S]: S[K] extends Statement<infer R> ? R : never;
};

declare const txBrand: unique symbol;
/**
 * A handle on an open transaction (or, from {@link DatabaseService.read}, on a plain connection).
 * Opaque outside repositories: services pass it along without knowing it is a TypeORM EntityManager.
 */
export type Tx = { readonly [txBrand]: true };

/** For repositories only: the EntityManager behind a {@link Tx}. */
export function sql(tx: Tx): EntityManager {
  return tx as unknown as EntityManager;
}

// Any session on the migration lock; an arbitrary constant shared by every Mailroom node.
const MIGRATION_LOCK_KEY = 727_001;

export function dataSourceOptions(config: Pick<AppConfig, 'databaseUrl' | 'dataDir'>): DataSourceOptions {
  const common = {
    type: 'postgres' as const,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    synchronize: false,
    uuidExtension: 'pgcrypto' as const,
    installExtensions: false,
    logging: false,
  };
  if (config.databaseUrl) {
    // Ten for the work, one kept for the lease renewal (transactionAside).
    return { ...common, url: config.databaseUrl, poolSize: 11, connectTimeoutMS: 5000 };
  }
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  return { ...common, driver: new PGliteDriver({ dataDir }).driver };
}

/**
 * The one way into the database. On PGlite (one connection for the whole process) every unit of
 * work is serialized by an in-process lock, because concurrent transactions there would share one
 * session. On a Postgres server, transactions run concurrently and rely on row locks.
 */
@Injectable()
export class DatabaseService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(DatabaseService.name);
  private readonly dataSource: DataSource;
  readonly embedded: boolean;
  private readonly lock = new Mutex();
  private readonly hooks = new WeakMap<EntityManager, CommitHooks>();
  private dataDirLock: DataDirLock | undefined;

  private readonly databaseUrl: string | undefined;
  /** The connection of {@link transactionAside}, taken on first use. */
  private aside: QueryRunner | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    // Absent when a test opens the database without the app.
    @Optional() private readonly metrics?: Metrics,
  ) {
    this.embedded = !config.databaseUrl;
    this.databaseUrl = config.databaseUrl;
    this.dataSource = new DataSource(dataSourceOptions(config));
    if (this.embedded) {
      embeddedStatements.set(this.dataSource, new EmbeddedStatements());
    }
  }

  async onModuleInit(): Promise<void> {
    if (this.databaseUrl) {
      await ensureDatabase(this.databaseUrl, this.logger);
    }
    if (this.embedded) {
      // Before PGlite opens the files: a second process on them would abort inside the WebAssembly.
      this.dataDirLock = DataDirLock.acquire(this.config.dataDir);
    }
    try {
      await this.dataSource.initialize();
    } catch (err) {
      this.dataDirLock?.release();
      throw err;
    }
    await this.migrate();
    this.logger.log(this.embedded ? 'Embedded PGlite database ready' : 'Postgres database ready');
  }

  /** Closed last (after every module's onModuleDestroy), so loops can put their work back first. */
  async onApplicationShutdown(): Promise<void> {
    await this.aside?.release().catch(() => undefined);
    this.aside = undefined;
    if (this.dataSource.isInitialized) {
      await this.serialized(() => this.dataSource.destroy());
    }
    this.dataDirLock?.release();
    this.dataDirLock = undefined;
  }

  /**
   * Runs `fn` in one transaction: all of it commits, or none. Callbacks given to {@link afterCommit}
   * run once it has committed (never on rollback), in the order they were registered.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.observed((begin) => this.dataSource.transaction((m) => fn(begin(m))));
  }

  /**
   * {@link transaction} that opens with the `opening` statements and gives `fn` their results. On a
   * Postgres server `BEGIN` travels with them, and `COMMIT` with the statement `fn` runs last through
   * `queryAndCommit` (sql.ts), as one simple query each: a short transaction of a few statements pays
   * far fewer round trips. Each runs as `EXECUTE` of a copy prepared once per connection (fused.ts).
   */
  transactionFused<S extends Array<Statement<unknown>>, T>(
    opening: [...S],
    fn: (tx: Tx, opened: ResultsOf<S>) => Promise<T>,
  ): Promise<T> {
    if (this.embedded) {
      return this.transaction(async (tx) => {
        const opened: unknown[] = [];
        for (const statement of opening) {
          opened.push(await run(tx, statement));
        }
        return fn(tx, opened as ResultsOf<S>);
      });
    }
    return this.observed((begin) => this.fused(opening, fn, begin));
  }

  private async fused<S extends Array<Statement<unknown>>, T>(
    opening: S,
    fn: (tx: Tx, opened: ResultsOf<S>) => Promise<T>,
    begin: (m: EntityManager) => Tx,
  ): Promise<T> {
    const runner = this.dataSource.createQueryRunner() as QueryRunner & {
      releasePostgresConnection(err?: unknown): Promise<void>;
    };
    const client = (await runner.connect()) as Client;
    const tx = begin(runner.manager);
    const state: FusedTx = { client, phase: 'open', pending: [] };
    let broken: unknown;
    try {
      const prepared: Array<string | undefined> = [];
      for (const s of opening) {
        prepared.push(await prepareFused(client, s.text, false)); // before BEGIN: once per connection
      }
      const text = ['BEGIN', ...opening.map((s, i) => executable(s.text, s.params, prepared[i]))].join('; ');
      const results = (await client.query(text)) as unknown as QueryResult[];
      fusedTxs.set(tx, state);
      const opened = opening.map((s, i) => s.result(results[i + 1].rows));
      const value = await fn(tx, opened as ResultsOf<S>);
      if (state.phase === 'open') {
        await commitFused(state);
      }
      return value;
    } catch (err) {
      if (state.phase !== 'committed') {
        // Also after a failed `COMMIT` (harmless then); a connection that cannot roll back is dropped.
        await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      }
      throw err;
    } finally {
      fusedTxs.delete(tx);
      await runner.releasePostgresConnection(broken);
    }
  }

  /** A unit of work with its span, duration metric and after-commit hooks; `begin` registers its transaction. */
  private async observed<T>(run: (begin: (m: EntityManager) => Tx) => Promise<T>): Promise<T> {
    let hooks: CommitHooks = { now: [], later: [] };
    const elapsed = stopwatch();
    let outcome = 'rollback';
    const result = await inChildSpan(
      'db.transaction',
      { 'db.system.name': 'postgresql', 'mailroom.db.embedded': this.embedded },
      async () => {
        try {
          const committed = await this.guard(() =>
            this.serialized(() =>
              run((m) => {
                hooks = { now: [], later: [] };
                this.hooks.set(m, hooks);
                return m as unknown as Tx;
              }),
            ),
          );
          outcome = 'commit';
          return committed;
        } finally {
          this.metrics?.dbTransactionDuration.observe({ outcome }, elapsed());
        }
      },
    );
    this.runHooks(hooks.now);
    if (hooks.later.length > 0) {
      setImmediate(() => this.runHooks(hooks.later));
    }
    return result;
  }

  private runHooks(hooks: Array<() => void>): void {
    for (const hook of hooks) {
      try {
        hook();
      } catch (err) {
        this.logger.error(`afterCommit hook failed: ${String(err)}`);
      }
    }
  }

  /**
   * Runs `fn` in a transaction on a connection kept for it alone, so that it never waits behind a
   * busy pool: a node's lease renewal must not lapse because its own session work has every pooled
   * connection (docs/reliability.md). No afterCommit hooks. On PGlite (one connection) a plain
   * {@link transaction}.
   */
  async transactionAside<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (this.embedded) {
      return this.transaction(fn);
    }
    return this.guard(async () => {
      const runner = (this.aside ??= this.dataSource.createQueryRunner());
      try {
        await runner.startTransaction();
        const result = await fn(runner.manager as unknown as Tx);
        await runner.commitTransaction();
        return result;
      } catch (err) {
        // Whatever broke (the statement or the connection), the next call starts on a fresh connection.
        this.aside = undefined;
        await runner.rollbackTransaction().catch(() => undefined);
        await runner.release().catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Registers `fn` to run after the transaction behind `tx` commits, in the async context it was
   * registered in (a batch of several callers' writes commits in the context of one of them).
   * Outside a transaction it runs at once.
   */
  afterCommit(tx: Tx, fn: () => void): void {
    const hooks = this.hooks.get(sql(tx));
    if (hooks) {
      hooks.now.push(bound(fn));
    } else {
      fn();
    }
  }

  /**
   * {@link afterCommit}, one event-loop turn later: once the transaction's callers have had their
   * answers (their continuations run when it commits, and the replies they send are written), for
   * what would have been a later transaction's (see HistoryService.pushAfterReplies). All of a
   * transaction's run in one turn, in the order they were registered.
   */
  afterReplies(tx: Tx, fn: () => void): void {
    const hooks = this.hooks.get(sql(tx));
    if (hooks) {
      hooks.later.push(bound(fn));
    } else {
      setImmediate(fn);
    }
  }

  /** Runs reads (or a single self-contained statement) outside an explicit transaction. */
  read<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.guard(() => this.serialized(() => fn(this.dataSource.manager as unknown as Tx)));
  }

  /** True when the database answers a trivial query. */
  async ping(): Promise<boolean> {
    try {
      await this.read((tx) => sql(tx).query('SELECT 1'));
      return true;
    } catch {
      return false;
    }
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    return this.embedded ? this.lock.run(fn) : fn();
  }

  /** Connection-level failures become `unavailable` (safe to retry); everything else passes through. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    if (!this.dataSource.isInitialized) {
      throw new RpcError('unavailable', 'The database is not available (shutting down)');
    }
    try {
      return await fn();
    } catch (err) {
      if (isConnectionError(err)) {
        throw new RpcError('unavailable', 'The database is not available; retry later');
      }
      throw err;
    }
  }

  private async migrate(): Promise<void> {
    const runner = this.dataSource.createQueryRunner();
    try {
      // Several nodes may boot at once against one server: one migrates, the others wait.
      if (!this.embedded) {
        await runner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
      }
      const ran = await this.dataSource.runMigrations({ transaction: 'each' });
      if (ran.length > 0) {
        this.logger.log(`Applied migrations: ${ran.map((m) => m.name).join(', ')}`);
      }
    } finally {
      if (!this.embedded) {
        await runner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => undefined);
      }
      await runner.release();
    }
  }
}

function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) {
    return false;
  }
  const code = (err as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (/^08/.test(code) ||
      // 53300: too many connections; the server refuses new ones. 3D000: the database is not there
      // (dropped, renamed, not yet restored); 57P04: it was dropped; 28000/28P01: the server refuses
      // our role. Each is the database being away for the client, not a bug: retry later.
      ['53300', '57P01', '57P02', '57P03', '57P04', '3D000', '28000', '28P01'].includes(code) ||
      ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(code))
  ) {
    return true;
  }
  // "not currently accepting connections" (55000, a database closed to connections) is only raised at connect.
  // TypeORM's "query runner already released" errors follow a connection the server terminated mid-transaction.
  return /Connection terminated|query runner (was )?already released|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error|PGlite is closed|not currently accepting connections/i.test(
    err.message,
  );
}

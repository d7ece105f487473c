import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { TestClient } from '../../support/client';
import { ServerProcess, ensureBuilt } from '../../support/server-process';
import { logOwnership } from './ownership';

/** The Postgres server the fault tests run on; unset on a PGlite run, where they cannot run. */
export const PG_SERVER = process.env.TEST_DATABASE_URL;

/**
 * `describe` for a fault test: several real server processes on one Postgres server. On a PGlite
 * run (no TEST_DATABASE_URL) there is no server to share, so the suite is one test that says so.
 */
export function describeCluster(name: string, fn: () => void): void {
  if (PG_SERVER) {
    describe(name, () => {
      jest.setTimeout(180_000); // processes boot, leases expire: a guard against a hung test, not a limit
      fn();
    });
    return;
  }
  describe(name, () => {
    it('needs a Postgres server: set TEST_DATABASE_URL (several nodes cannot share an embedded PGlite)', () => {
      console.log(`${name}: not run, TEST_DATABASE_URL is unset (PGlite is one process)`);
    });
  });
}

/**
 * What every node of a fault test runs with: short leases so that a dead node's work moves within
 * seconds (the "keep the TTL short in tests rather than sleeping"), a quick backstop, and
 * attempts enough that a rolling restart cannot exhaust an item's tries.
 */
export const NODE_ENV: Record<string, string> = {
  LEASE_TTL_MS: process.env.FAULT_LEASE_TTL_MS ?? '2000', // FAULT_LEASE_TTL_MS=10000: the default's figures
  POLL_INTERVAL_MS: '500',
  MAX_ATTEMPTS: '20',
  LOG_LEVEL: 'log',
};

export interface ClusterNode {
  name: string;
  server: ServerProcess & { url: string };
  client: TestClient;
}

/** Runs SQL against a database (a short-lived connection per call). */
export async function query<T = any>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(text, params)).rows as T[];
  } finally {
    await client.end();
  }
}

/**
 * Two or three real `node dist/main.js` processes on one fresh database of a Postgres server, each
 * with a socket.io client connected. Nodes can be added, killed, paused and restarted; their output
 * goes to files (printed by {@link dumpLogs}) so that a failure can be read afterwards.
 */
export class Cluster {
  readonly nodes: ClusterNode[] = [];
  private readonly logDir = mkdtempSync(join(tmpdir(), 'mailroom-cluster-'));
  private started = 0;

  private constructor(
    readonly databaseUrl: string,
    private readonly drop: () => Promise<void>,
    private readonly env: Record<string, string>,
  ) {}

  /**
   * A fresh database on `server` (default: TEST_DATABASE_URL) and `count` nodes on it, started one
   * after the other (the first runs the migrations).
   */
  static async start(
    count: number,
    opts: { server?: string; env?: Record<string, string> } = {},
  ): Promise<Cluster> {
    ensureBuilt();
    const server = opts.server ?? PG_SERVER!;
    const name = `mailroom_cluster_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
    await query(server, `CREATE DATABASE ${name}`);
    const url = new URL(server);
    url.pathname = `/${name}`;
    const cluster = new Cluster(
      url.toString(),
      () => query(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).then(() => undefined),
      { ...NODE_ENV, ...opts.env },
    );
    for (let i = 0; i < count; i++) {
      await cluster.addNode();
      if (i === 0) {
        await logOwnership(cluster); // the first node has migrated the database
      }
    }
    return cluster;
  }

  /**
   * Boots one more node and connects a client to it. Nodes are named node-0, node-1… in boot order
   * (their NODE_ID), so a restarted node is a new one unless `name` gives an old name back.
   */
  async addNode(env: Record<string, string> = {}, name = `node-${this.started}`): Promise<ClusterNode> {
    this.started += 1;
    const server = await ServerProcess.start(name, {
      ...this.env,
      ...env,
      NODE_ID: name,
      PGAPPNAME: name, // node-postgres names the node's connections (pg_stat_activity.application_name)
      DATABASE_URL: this.databaseUrl,
    });
    const node = { name, server, client: await TestClient.connect(server.url) };
    this.nodes.push(node);
    return node;
  }

  /** The nodes whose process still runs. */
  live(): ClusterNode[] {
    return this.nodes.filter((n) => n.server.alive);
  }

  node(name: string): ClusterNode {
    const found = this.nodes.find((n) => n.name === name);
    if (!found) {
      throw new Error(`no node ${name}`);
    }
    return found;
  }

  /** kill -9: the process ends at once, holding whatever it held. */
  async kill(node: ClusterNode): Promise<void> {
    node.client.close();
    await node.server.stop('SIGKILL');
  }

  /** SIGTERM: a clean shutdown (leases handed back). */
  async terminate(node: ClusterNode): Promise<void> {
    node.client.close();
    await node.server.stop('SIGTERM');
  }

  query<T = any>(text: string, params: unknown[] = []): Promise<T[]> {
    return query<T>(this.databaseUrl, text, params);
  }

  /** Writes every node's output to a file and returns the paths (for a failed test's message). */
  dumpLogs(): string[] {
    return this.nodes.map((n) => {
      const path = join(this.logDir, `${n.name}.log`);
      writeFileSync(path, n.server.output);
      return path;
    });
  }

  async close(): Promise<void> {
    for (const n of this.nodes) {
      n.client.close();
      if (n.server.alive) {
        n.server.signal('SIGCONT'); // a paused node cannot act on SIGKILL's exit otherwise
      }
    }
    await Promise.all(this.nodes.map((n) => n.server.stop('SIGKILL')));
    await this.drop();
    if (process.env.KEEP_CLUSTER_LOGS) {
      console.log(`cluster logs kept in ${this.dumpLogs().join(', ')}`);
    } else {
      rmSync(this.logDir, { recursive: true, force: true });
    }
  }
}

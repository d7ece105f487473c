import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { Client } from 'pg';
import { TestDatabase } from './test-app';

const ROOT = join(__dirname, '..', '..');

/**
 * A real Mailroom server in its own process (so it can be SIGKILLed, SIGSTOPped, SIGTERMed), on a
 * test's database. Several of them on one Postgres database make a cluster. Every line it logs is
 * kept, and {@link waitForLog} waits for one (past or future) that matches.
 */
export class NodeProcess {
  readonly logs: string[] = [];
  private waiters: Array<{ re: RegExp; resolve: (line: string) => void }> = [];
  readonly exited: Promise<number | null>;

  private constructor(
    readonly id: string,
    readonly child: ChildProcess,
  ) {
    let partial = '';
    const onData = (chunk: Buffer) => {
      partial += chunk.toString();
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        this.logs.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (w.re.test(line)) {
            w.resolve(line);
            return false;
          }
          return true;
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  url = '';

  /** Starts `node src/main.ts` with `env` (PORT=0, the database, LEASE_TTL_MS 2 s unless given) and waits until it listens. */
  static async start(db: TestDatabase, id: string, env: Record<string, string> = {}): Promise<NodeProcess> {
    const inherited: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (
        v !== undefined &&
        !/^(OPENAI_|MODEL_PROVIDER|DATABASE_URL|NODE_OPTIONS|LEASE_TTL_MS|NODE_ID)/.test(k)
      ) {
        inherited[k] = v;
      }
    }
    const child = spawn(process.execPath, ['-r', '@swc-node/register', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...inherited,
        PORT: '0',
        HOST: '127.0.0.1',
        DATA_DIR: db.dataDir,
        ...(db.databaseUrl ? { DATABASE_URL: db.databaseUrl } : {}),
        NODE_ID: id,
        LEASE_TTL_MS: '2000',
        LOG_LEVEL: 'log',
        TEMPLATES_DIR: join(ROOT, 'templates'),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const node = new NodeProcess(id, child);
    const listening = node.waitForLog(/Mailroom listening on (http:\/\/\S+)/, 60_000);
    const line = await Promise.race([
      listening,
      node.exited.then((code) => {
        throw new Error(`node ${id} exited (${code}) before listening:\n${node.logs.join('\n')}`);
      }),
    ]);
    node.url = /Mailroom listening on (http:\/\/\S+)/.exec(line)![1].replace('[::1]', '127.0.0.1');
    return node;
  }

  /** The first log line matching `re`, already logged (from line `since` on) or still to come. */
  waitForLog(re: RegExp, timeoutMs = 30_000, since = 0): Promise<string> {
    const seen = this.logs.slice(since).find((l) => re.test(l));
    if (seen) {
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const timer = setTimeout(
        () => reject(new Error(`node ${this.id}: no log line ${re} in time`)),
        timeoutMs,
      );
      this.waiters.push({
        re,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
    });
  }

  /** Sends `signal` and, for one that ends the process, waits until it has exited. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return;
    }
    this.child.kill(signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      await this.exited;
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
}

/** Reads the cluster's tables of a test database directly (a second opinion besides the pushes). */
export class ClusterProbe {
  private constructor(private readonly client: Client) {}

  static async open(db: TestDatabase): Promise<ClusterProbe> {
    const client = new Client({ connectionString: db.databaseUrl });
    await client.connect();
    return new ClusterProbe(client);
  }

  async lease(sessionId: string): Promise<{ owner: string | null; epoch: number } | undefined> {
    const { rows } = await this.client.query<{ owner_node: string | null; epoch: string }>(
      `SELECT owner_node, epoch FROM session_lease WHERE session_id = $1`,
      [sessionId],
    );
    return rows[0] && { owner: rows[0].owner_node, epoch: Number(rows[0].epoch) };
  }

  async attempts(taskId: string): Promise<number> {
    const { rows } = await this.client.query<{ attempts: number }>(
      `SELECT attempts FROM work_item WHERE id = $1`,
      [taskId],
    );
    return rows[0].attempts;
  }

  async historyCount(sessionId: string, type: string): Promise<number> {
    const { rows } = await this.client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM history WHERE session_id = $1 AND type = $2`,
      [sessionId, type],
    );
    return rows[0].n;
  }

  /** The run time of every schedule firing's work item in the session (a run fired twice would repeat). */
  async scheduleRuns(sessionId: string): Promise<string[]> {
    const { rows } = await this.client.query<{ key: string }>(
      `SELECT idempotency_key AS key FROM work_item WHERE session_id = $1 AND kind = 'schedule'`,
      [sessionId],
    );
    return rows.map((r) => r.key);
  }

  close(): Promise<void> {
    return this.client.end();
  }
}

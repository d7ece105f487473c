import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { TestDatabase } from './test-app';

const ROOT = join(__dirname, '..', '..');

/**
 * The real server run from its sources (`src/main.ts` through swc, no build needed) in its own process on a suite's data, its stdout and stderr
 * captured as they come. Configuration from the test's environment is left out, so `env` is all it gets.
 */
export class SourceServer {
  output = '';
  private waiters: Array<() => void> = [];

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(db: TestDatabase, env: Record<string, string> = {}): Promise<SourceServer> {
    const inherited: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (
        v !== undefined &&
        !/^(OPENAI_|MODEL_PROVIDER|DATABASE_URL|NODE_OPTIONS|LOG_|OTEL_|API_TOKENS)/.test(k)
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
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const started: { server?: SourceServer } = {};
    let early = '';
    const url = await new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        if (started.server) {
          started.server.take(chunk.toString());
          return;
        }
        early += chunk.toString();
        const m = /Mailroom listening on (http:\/\/[^\s]+)/.exec(early);
        if (m) {
          resolve(m[1]);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${early}`)));
    });
    const server = new SourceServer(child, url);
    started.server = server;
    server.take(early);
    return server;
  }

  /** Resolves once the output so far makes `found` true. */
  waitForOutput(found: (output: string) => boolean, timeoutMs = 20_000): Promise<void> {
    if (found(this.output)) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const timer = setTimeout(
        () => reject(new Error(`timed out; output so far:\n${this.output}`)),
        timeoutMs,
      );
      const check = () => {
        if (!found(this.output)) {
          return;
        }
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      };
      this.waiters.push(check);
    });
  }

  /** Asks it to shut down (SIGTERM) and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return;
    }
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await exited;
  }

  private take(text: string): void {
    this.output += text;
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }
}

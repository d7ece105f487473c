import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDashboardBuilt } from './dashboard-build';

export const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'main.js');

/** The newest modification time under `dir` (recursively), in ms. */
function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

/**
 * Builds `dist/` (the server and the dashboard) when it is missing or older than `src/` (CI builds first, so there it is a look at
 * some mtimes). A lock folder keeps two jest workers from building at once.
 */
export function ensureBuilt(): void {
  const stale = () => {
    try {
      return statSync(MAIN).mtimeMs < newest(join(ROOT, 'src'));
    } catch {
      return true;
    }
  };
  if (!stale()) {
    return;
  }
  const lock = join(tmpdir(), `mailroom-build-${Buffer.from(ROOT).toString('hex').slice(-32)}`);
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200); // another worker builds
    }
  }
  try {
    if (stale()) {
      execFileSync(
        process.execPath,
        [join(ROOT, 'node_modules', '@nestjs', 'cli', 'bin', 'nest.js'), 'build'],
        {
          cwd: ROOT,
          stdio: 'pipe',
        },
      );
      // `nest build` empties dist/ first (deleteOutDir), the dashboard's build with it: built again,
      // as `npm run build` does, so that `npm start` after a test run still serves the page.
      ensureDashboardBuilt();
    }
  } finally {
    rmdirSync(lock);
  }
}

/** The environment a child server inherits: ours without what would change its model or database. */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(OPENAI_|MODEL_PROVIDER|DATABASE_URL|NODE_OPTIONS|PORT$|DATA_DIR$)/.test(k)) {
      env[k] = v;
    }
  }
  return env;
}

/**
 * A real Mailroom server (`node dist/main.js`) in its own process, so that a test can SIGKILL,
 * SIGSTOP or SIGTERM it. Its output is kept (`output`), and printed when it fails to start.
 */
export class ServerProcess {
  output = '';
  /** Resolves with the exit code (or the signal's name) once the process has ended. */
  readonly exited: Promise<number | string>;

  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
    );
    const keep = (chunk: Buffer) => {
      this.output += chunk.toString();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /** Spawns a server without waiting for it (for a boot that is expected to fail). */
  static spawn(name: string, env: Record<string, string>): ServerProcess {
    const child = spawn(process.execPath, [MAIN], {
      cwd: ROOT,
      env: { ...baseEnv(), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'log', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new ServerProcess(name, child);
  }

  /** Spawns a server and resolves once it listens. */
  static async start(name: string, env: Record<string, string>): Promise<ServerProcess & { url: string }> {
    const server = ServerProcess.spawn(name, env);
    const url = await server.listening();
    return Object.assign(server, { url });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The URL the server prints once it listens. */
  listening(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      const look = () => {
        const m = /Mailroom listening on (http:\/\/[^\s]+)/.exec(this.output);
        if (m) {
          this.child.stdout?.off('data', look);
          resolve(m[1].replace('[::1]', '127.0.0.1'));
        }
      };
      this.child.stdout?.on('data', look);
      look();
      void this.exited.then((code) =>
        reject(new Error(`${this.name} exited (${code}) before listening:\n${this.output}`)),
      );
    });
  }

  /** Sends `signal` and waits for the end of the process (SIGKILL, or SIGTERM for a clean shutdown). */
  async stop(signal: 'SIGKILL' | 'SIGTERM' = 'SIGTERM'): Promise<number | string> {
    if (this.alive) {
      this.child.kill(signal);
    }
    return this.exited;
  }

  /** Pauses (SIGSTOP) or resumes (SIGCONT) the process. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.child.kill(signal);
  }
}

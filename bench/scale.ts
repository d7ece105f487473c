// Scale of one node (issue 8): many agents created and put to sleep through the API, then what the
// server holds for them. The server runs alone as `node dist/main.js` in a child process on a fresh
// Postgres database (so its RSS is its own, read from /proc/<pid>/status), preloaded with
// bench/server-probe.mjs (forced GC, statement counts, CPU profile on request); the socket.io
// clients are this process. It builds first when dist is stale (as `npm start` does).
// Alone: `node -r @swc-node/register bench/scale.ts` with SCALE_AGENTS (100000), SCALE_SESSIONS (1),
// SCALE_IN_FLIGHT (calls under way at once), SCALE_SOCKETS, SCALE_PROFILE=1 (CPU profiles of both phases
// into bench/scale-*.cpuprofile), BENCH_DATABASE_URL (the server, default the local one).
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, Socket } from 'socket.io-client';
import { Profile, summarise } from './profile';
import { freshDatabase } from './support/databases';

export interface ScaleOptions {
  agents: number;
  sessions: number;
  /** Calls under way at once, over all sockets. */
  inFlight: number;
  sockets: number;
  /** Write CPU profiles of the server for both phases and summarise them. */
  profile: boolean;
}

interface Probe {
  gc: boolean;
  rss: number;
  heapUsed: number;
  statements: number;
  commits: number;
  /** Queries sent (a fused transaction's several statements are one). */
  roundTrips: number;
}

export interface ScaleResult {
  options: ScaleOptions;
  createSeconds: number;
  sleepSeconds: number;
  /** Statements and commits the server sent to Postgres, per call. */
  createStatements: number;
  createCommits: number;
  createRoundTrips: number;
  sleepStatements: number;
  sleepCommits: number;
  sleepRoundTrips: number;
  /** The server after boot, and with every agent asleep (after a forced GC when `gc`). */
  idle: Probe;
  asleep: Probe;
  /** The server's peak RSS (VmHWM) over the whole run. */
  peakRss: number;
  agentLoops: number;
  profiles: { create: string[]; sleep: string[] };
}

const SCRIPT = [{ when: {}, do: [{ reply: 'ok' }] }];
/** Every other agent sleeps on a deadline a day away (the timer wheel holds it), the rest until an event. */
const FAR_SECONDS = 86_400;

function call(socket: Socket, method: string, params: unknown): Promise<any> {
  return new Promise((resolve, reject) =>
    socket.emit(method, params, (reply: any) =>
      reply.error ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(reply.result),
    ),
  );
}

/** Runs `fn` for 0..n-1 with at most `inFlight` calls under way; returns the seconds it took. */
async function pooled(n: number, inFlight: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(inFlight, n) }, async () => {
      while (next < n) {
        await fn(next++);
      }
    }),
  );
  return (performance.now() - start) / 1000;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The server in its own process, with the probe preloaded and an IPC channel to ask it. */
class ServerProcess {
  private nextId = 0;
  private readonly answers = new Map<number, (m: any) => void>();
  private stderr = '';

  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {
    child.on('message', (m: any) => {
      this.answers.get(m.id)?.(m);
      this.answers.delete(m.id);
    });
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
  }

  static async start(databaseUrl: string, dataDir: string): Promise<ServerProcess> {
    // The server measured is the current source: `npm start`'s check builds when dist is missing or stale.
    if (
      spawnSync(process.execPath, ['scripts/build-stamp.mjs', 'check'], { stdio: 'inherit' }).status !== 0
    ) {
      throw new Error('the build failed');
    }
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', './bench/server-probe.mjs', 'dist/main.js'],
      {
        env: {
          PATH: process.env.PATH,
          PORT: String(port),
          HOST: '127.0.0.1',
          DATABASE_URL: databaseUrl,
          DATA_DIR: dataDir,
          LOG_LEVEL: 'error',
          TEMPLATES_DIR: 'templates',
          MODEL_PROVIDER: 'scripted',
        },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      },
    );
    const server = new ServerProcess(child, `http://127.0.0.1:${port}`);
    await server.ready();
    return server;
  }

  /** Polls GET /health until the server answers (the bench's own wall clock: no test waits on it). */
  private async ready(): Promise<void> {
    for (let i = 0; i < 600; i++) {
      if (this.child.exitCode !== null) {
        throw new Error(`the server exited (${this.child.exitCode}): ${this.stderr}`);
      }
      try {
        if ((await fetch(`${this.url}/health`)).ok) {
          return;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the server did not answer /health within a minute: ${this.stderr}`);
  }

  private ask(message: Record<string, unknown>): Promise<any> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.answers.set(id, resolve);
      this.child.send({ ...message, id });
    });
  }

  probe(): Promise<Probe> {
    return this.ask({ type: 'probe', gc: true });
  }

  startProfile(): void {
    this.child.send({ type: 'profile' });
  }

  async stopProfile(file: string): Promise<string[]> {
    await this.ask({ type: 'profile', stop: true, file });
    return summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, 12);
  }

  /** A line of /proc/<pid>/status in bytes (VmRSS, VmHWM). */
  status(field: 'VmRSS' | 'VmHWM'): number {
    const line = readFileSync(`/proc/${this.child.pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${field}:`));
    return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024;
  }

  async metric(name: string): Promise<number> {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return Number(line?.split(' ').pop() ?? NaN);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) {
      return;
    }
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}

export async function measureScale(server: string, options: ScaleOptions): Promise<ScaleResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-scale-'));
  const fresh = await freshDatabase(server, 'mailroom_bench_scale');
  const app = await ServerProcess.start(fresh.url, dataDir);
  const sockets = await Promise.all(
    Array.from({ length: options.sockets }, async () => {
      const s = io(app.url, { transports: ['websocket'] });
      await new Promise((r) => s.once('connect', () => r(undefined)));
      return s;
    }),
  );
  try {
    const sessions = Array.from({ length: options.sessions }, (_, i) => `scale-${Date.now()}-${i}`);
    // Started over a socket of its own that then closes: nobody is subscribed, so the run measures
    // writing agents, not pushing 2 records per agent to a watcher.
    const starter = io(app.url, { transports: ['websocket'] });
    for (const sessionId of sessions) {
      await call(starter, 'session.start', { sessionId });
    }
    starter.close();
    const idle = await app.probe();
    const at = (i: number) => ({
      socket: sockets[i % sockets.length],
      sessionId: sessions[i % sessions.length],
      agentId: `a${String(i).padStart(6, '0')}`,
    });

    if (options.profile) {
      app.startProfile();
    }
    const createSeconds = await pooled(options.agents, options.inFlight, (i) => {
      const { socket, sessionId, agentId } = at(i);
      return call(socket, 'async.createAgent', {
        sessionId,
        agentId,
        template: 'assistant',
        config: { script: SCRIPT, wakeEvents: ['go'] },
      });
    });
    const created = await app.probe();
    const createProfile = options.profile ? await app.stopProfile('bench/scale-create.cpuprofile') : [];
    if (options.profile) {
      app.startProfile();
    }
    const sleepSeconds = await pooled(options.agents, options.inFlight, (i) => {
      const { socket, sessionId, agentId } = at(i);
      return call(socket, 'async.sleepAgent', {
        sessionId,
        agentId,
        ...(i % 2 === 0 ? { durationSeconds: FAR_SECONDS } : {}),
      });
    });
    const slept = await app.probe();
    const sleepProfile = options.profile ? await app.stopProfile('bench/scale-sleep.cpuprofile') : [];
    // What a node keeps for sleepers is measured with the clients gone, as it would stand overnight.
    sockets.forEach((s) => s.close());
    const asleep = await app.probe();
    const result: ScaleResult = {
      options,
      createSeconds,
      sleepSeconds,
      createStatements: (created.statements - idle.statements) / options.agents,
      createCommits: (created.commits - idle.commits) / options.agents,
      createRoundTrips: (created.roundTrips - idle.roundTrips) / options.agents,
      sleepStatements: (slept.statements - created.statements) / options.agents,
      sleepCommits: (slept.commits - created.commits) / options.agents,
      sleepRoundTrips: (slept.roundTrips - created.roundTrips) / options.agents,
      idle,
      asleep,
      peakRss: app.status('VmHWM'),
      agentLoops: await app.metric('mailroom_agent_loops'),
      profiles: { create: createProfile, sleep: sleepProfile },
    };
    console.error(JSON.stringify({ ...result, profiles: undefined }));
    return result;
  } finally {
    sockets.forEach((s) => s.close());
    await app.stop();
    await fresh.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const n0 = (x: number) => Math.round(x).toLocaleString('en-US');

export function scaleTable(r: ScaleResult): string {
  const { agents, sessions, inFlight, sockets } = r.options;
  const perAgent = (r.asleep.rss - r.idle.rss) / agents;
  const gc = r.asleep.gc ? 'after a forced GC' : 'no forced GC (plain)';
  return [
    '| measurement | result |',
    '|---|---|',
    `| agents, sessions | ${n0(agents)} in ${sessions} session${sessions === 1 ? '' : 's'} (${inFlight} calls in flight over ${sockets} socket.io connection${sockets === 1 ? '' : 's'}) |`,
    `| create through the API (\`async.createAgent\`) | ${r.createSeconds.toFixed(1)} s, ${n0(agents / r.createSeconds)}/s; ${r.createStatements.toFixed(3)} statements, ${r.createRoundTrips.toFixed(3)} round trips, ${r.createCommits.toFixed(3)} commits per agent |`,
    `| put to sleep through the API (\`async.sleepAgent\`, half with a deadline a day away) | ${r.sleepSeconds.toFixed(1)} s, ${n0(agents / r.sleepSeconds)}/s; ${r.sleepStatements.toFixed(3)} statements, ${r.sleepRoundTrips.toFixed(3)} round trips, ${r.sleepCommits.toFixed(3)} commits per agent |`,
    `| together | ${(r.createSeconds + r.sleepSeconds).toFixed(1)} s |`,
    `| server RSS, all asleep (${gc}) | ${mib(r.asleep.rss)} (${mib(r.idle.rss)} before any agent: ${((perAgent / 1024) * 1).toFixed(2)} KiB per agent); peak ${mib(r.peakRss)} |`,
    `| server heap used, all asleep | ${mib(r.asleep.heapUsed)} (${mib(r.idle.heapUsed)} before any agent) |`,
    `| \`mailroom_agent_loops\` (GET /metrics) | ${r.agentLoops} |`,
  ].join('\n');
}

export function scaleOptionsFromEnv(quick: boolean): ScaleOptions {
  const n = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  return {
    agents: n('SCALE_AGENTS', quick ? 2_000 : 100_000),
    sessions: n('SCALE_SESSIONS', 1),
    inFlight: n('SCALE_IN_FLIGHT', 256),
    sockets: n('SCALE_SOCKETS', 4),
    profile: process.env.SCALE_PROFILE === '1',
  };
}

if (require.main === module) {
  const server = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  measureScale(server, scaleOptionsFromEnv(process.env.BENCH_QUICK === '1')).then(
    (r) => {
      console.log(`Scale of one node (server: node dist/main.js, Postgres):\n\n${scaleTable(r)}`);
      for (const [phase, lines] of Object.entries(r.profiles)) {
        if (lines.length > 0) {
          console.log(`\nServer CPU while ${phase === 'create' ? 'creating' : 'putting to sleep'}:`);
          lines.forEach((l) => console.log(`    ${l}`));
        }
      }
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

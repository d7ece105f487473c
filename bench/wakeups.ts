// Wake-ups (issue 8): a broadcast to many sleepers, and many sleep timers armed at once, against the
// whole service in this process (as bench/mailroom.ts runs it): real socket.io client, scripted agents.
// Alone: `node -r @swc-node/register bench/wakeups.ts` (PGlite), or with DATABASE_URL=postgres://…
// (a fresh database is made on that server and dropped at the end). WAKEUPS_LARGE / WAKEUPS_SMALL /
// WAKEUPS_TIMERS change the numbers of agents (10000 / 50 / 10000); WAKEUPS_PROFILE=1 profiles each broadcast.
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, Socket } from 'socket.io-client';
import { createApp } from 'src/bootstrap';
import { loadConfig } from 'src/config/app-config';
import { profiled } from './profile';
import { percentile } from './stats';
import { freshDatabase } from './support/databases';

export interface BroadcastResult {
  sleepers: number;
  /** Creating the agents, and putting them to sleep, through the API. */
  createMs: number;
  sleepMs: number;
  /** From the call to its answer, and to the last `async.task.started` of the event. */
  answerMs: number;
  lastStartedMs: number;
  woke: number;
  /** Event items that failed (e.g. `interrupted`: a lease lapsed under the load and the work was taken over). */
  failed: number;
}

export interface JitterResult {
  timers: number;
  armMs: number;
  /** Deadlines that had passed before their sleepAgent call answered (left out of the figures). */
  late: number;
  /** Agents still asleep 30 s after the last deadline. */
  missed: number;
  p50: number;
  p99: number;
  max: number;
}

export interface WakeupsResult {
  large: BroadcastResult;
  small: BroadcastResult;
  jitter: JitterResult;
}

interface Push {
  sessionId: string;
  agentId: string;
  [k: string]: any;
}

const SCRIPT = [{ when: {}, do: [{ reply: 'ok' }] }];
const IN_FLIGHT = 32;

function call(socket: Socket, method: string, params: unknown): Promise<any> {
  return new Promise((resolve, reject) =>
    socket.emit(method, params, (reply: any) =>
      reply.error ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(reply.result),
    ),
  );
}

/** Runs `fn` for 0..n-1 with at most IN_FLIGHT calls under way; returns the ms it took. */
async function pooled(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(IN_FLIGHT, n) }, async () => {
      while (next < n) {
        await fn(next++);
      }
    }),
  );
  return performance.now() - start;
}

/** Counts pushes of one name in one session; `until(n)` resolves (with the time) once `n` have come. */
class Counter {
  private count = 0;
  private target = Infinity;
  private resolve?: (at: number) => void;

  constructor(socket: Socket, name: string, sessionId: string, match: (p: Push) => boolean = () => true) {
    socket.on(name, (p: Push) => {
      if (p.sessionId === sessionId && match(p)) {
        this.count += 1;
        if (this.count >= this.target) {
          this.resolve?.(performance.now());
          this.resolve = undefined;
        }
      }
    });
  }

  until(n: number): Promise<number> {
    this.target = n;
    return new Promise((resolve) => {
      this.resolve = resolve;
      if (this.count >= n) {
        resolve(performance.now());
      }
    });
  }

  get seen(): number {
    return this.count;
  }

  /** Resolves once this counter and `other` together have seen `n`. */
  together(other: Counter, n: number): Promise<number> {
    return new Promise((resolve) => {
      const check = () =>
        this.count + other.count >= n ? resolve(performance.now()) : setTimeout(check, 50);
      check();
    });
  }
}

const agentIds = (n: number) => Array.from({ length: n }, (_, i) => `s${String(i).padStart(5, '0')}`);

async function broadcastToSleepers(socket: Socket, sessionId: string, n: number): Promise<BroadcastResult> {
  await call(socket, 'session.start', { sessionId });
  const ids = agentIds(n);
  const createMs = await pooled(n, (i) =>
    call(socket, 'async.createAgent', {
      sessionId,
      agentId: ids[i],
      template: 'assistant',
      config: { script: SCRIPT, wakeEvents: ['go'] },
    }),
  );
  const sleepMs = await pooled(n, (i) => call(socket, 'async.sleepAgent', { sessionId, agentId: ids[i] }));
  const started = new Counter(socket, 'async.task.started', sessionId, (p) => p.kind === 'event');
  const ended = new Counter(socket, 'async.task.completed', sessionId);
  const failed = new Counter(socket, 'async.task.failed', sessionId);
  const t0 = performance.now();
  const broadcast = () => call(socket, 'async.broadcastEvent', { sessionId, event: 'go', data: { n } });
  // WAKEUPS_PROFILE=1: a CPU profile of this process from the call to its answer, per broadcast.
  const answer = process.env.WAKEUPS_PROFILE
    ? await profiled(`bench/broadcast-${n}.cpuprofile`, broadcast).then(({ value, top }) => {
        console.error(top.join('\n'));
        return value;
      })
    : await broadcast();
  const answerMs = performance.now() - t0;
  const lastStartedMs = (await started.until(n)) - t0;
  await Promise.race([ended.until(n), failed.together(ended, n)]); // everyone idle again before the next measurement
  const result = {
    sleepers: n,
    createMs,
    sleepMs,
    answerMs,
    lastStartedMs,
    woke: (answer.woke as string[]).length,
    failed: failed.seen,
  };
  console.error(JSON.stringify(result));
  return result;
}

/** Puts the (idle) agents of the session to sleep with deadlines spread over 3 s, all due after the last call. */
async function timerJitter(socket: Socket, sessionId: string, n: number, armEstimateMs: number) {
  const ids = agentIds(n);
  const deadlines = new Map<string, number>();
  const lateness: number[] = [];
  let late = 0;
  let resolveAll: () => void = () => undefined;
  const all = new Promise<void>((r) => (resolveAll = r));
  let woken = 0;
  socket.on('async.agent.stateChanged', (p: Push) => {
    if (p.sessionId !== sessionId || p.previous !== 'sleeping' || p.state === 'sleeping') {
      return;
    }
    const due = deadlines.get(p.agentId);
    if (due !== undefined) {
      lateness.push(Date.now() - due);
    }
    if (++woken >= n) {
      resolveAll();
    }
  });
  const spreadMs = 3_000;
  const firstDue = Date.now() + armEstimateMs * 1.5 + 1_000;
  const armMs = await pooled(n, async (i) => {
    const due = firstDue + Math.floor((i * spreadMs) / n);
    const slept = await call(socket, 'async.sleepAgent', {
      sessionId,
      agentId: ids[i],
      durationSeconds: Math.max(0.001, (due - Date.now()) / 1000),
    });
    const deadline = Date.parse(slept.sleepingUntil as string);
    if (deadline <= Date.now()) {
      late += 1; // armed too late to say anything about the timer
    } else {
      deadlines.set(ids[i], deadline);
    }
  });
  // A timer that never fires would hang the run: give up 30 s after the last deadline.
  const lastDue = firstDue + spreadMs;
  await Promise.race([all, new Promise((r) => setTimeout(r, Math.max(0, lastDue - Date.now()) + 30_000))]);
  console.error(JSON.stringify({ timers: n, woken, late }));
  return {
    timers: n,
    armMs,
    late,
    missed: n - woken,
    p50: percentile(lateness, 50),
    p99: percentile(lateness, 99),
    max: Math.max(...lateness),
  };
}

export async function measureWakeups(
  databaseUrl: string | undefined,
  sizes = { large: 10_000, small: 50, timers: 10_000 },
): Promise<WakeupsResult> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-wakeups-'));
  const fresh = databaseUrl ? await freshDatabase(databaseUrl, 'mailroom_bench_wakeups') : undefined;
  const app = await createApp(
    loadConfig({
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: fresh?.url,
      LOG_LEVEL: 'error',
      TEMPLATES_DIR: 'templates',
    }),
  );
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const socket = io(url, { transports: ['websocket'] });
  await new Promise((r) => socket.once('connect', () => r(undefined)));
  try {
    const base = `wakeups-${Date.now()}`;
    const small = await broadcastToSleepers(socket, `${base}-small`, sizes.small);
    const large = await broadcastToSleepers(socket, `${base}-large`, sizes.large);
    // The large session's agents are idle again: the same ones sleep on timers now.
    const timers = Math.min(sizes.timers, sizes.large);
    const jitter = await timerJitter(socket, `${base}-large`, timers, (large.sleepMs * timers) / sizes.large);
    return { large, small, jitter };
  } finally {
    socket.close();
    await app.close();
    await fresh?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const ms = (x: number) => x.toFixed(x < 10 ? 1 : 0);

export function wakeupsTable(r: WakeupsResult): string {
  const row = (b: BroadcastResult) =>
    `| broadcast to ${b.sleepers} sleepers | ${ms(b.answerMs)} ms answer, ${ms(b.lastStartedMs)} ms last task.started (woke ${b.woke}, ${b.failed} failed) | create ${ms(b.createMs)} ms, sleep ${ms(b.sleepMs)} ms |`;
  return [
    '| measurement | result | setup through the API |',
    '|---|---|---|',
    row(r.large),
    row(r.small),
    `| timer jitter, ${r.jitter.timers} timers | p50 ${ms(r.jitter.p50)} ms, p99 ${ms(r.jitter.p99)} ms, max ${ms(r.jitter.max)} ms (${r.jitter.late} armed too late, left out; ${r.jitter.missed} never woke) | arm ${ms(r.jitter.armMs)} ms |`,
  ].join('\n');
}

if (require.main === module) {
  const n = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  measureWakeups(process.env.DATABASE_URL || undefined, {
    large: n('WAKEUPS_LARGE', 10_000),
    small: n('WAKEUPS_SMALL', 50),
    timers: n('WAKEUPS_TIMERS', 10_000),
  }).then(
    (r) => {
      console.log(`Wake-ups on ${process.env.DATABASE_URL ? 'Postgres' : 'PGlite'}:\n`);
      console.log(wakeupsTable(r));
      process.exit(0);
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

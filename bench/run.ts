// Benchmarks: the whole service on a random port, driven by real socket.io clients.
// `npm run bench` runs on the embedded PGlite, and also on Postgres when BENCH_DATABASE_URL is set.
// Figures are printed and written to BENCHMARKS.md with the machine and the date.
import 'reflect-metadata';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir, totalmem, platform, release } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { io, Socket } from 'socket.io-client';
import { createApp } from 'src/bootstrap';
import { loadConfig } from 'src/config/app-config';

interface Figures {
  label: string;
  ackP50: number;
  ackP99: number;
  tasksPerSecond: number;
  taskEndToEndP50: number;
  switchRoundTripP50: number;
}

const AGENTS = 20;
const TASKS_PER_AGENT = 25;
const SWITCH_ROUNDS = 50;

function call(socket: Socket, method: string, params: unknown): Promise<any> {
  return new Promise((resolve, reject) =>
    socket.emit(method, params, (reply: any) =>
      reply.error ? reject(new Error(reply.error.message)) : resolve(reply.result),
    ),
  );
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function run(label: string, databaseUrl: string | undefined, spread: boolean): Promise<Figures> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mailroom-bench-'));
  const app = await createApp(
    loadConfig({
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      LOG_LEVEL: 'error',
      TEMPLATES_DIR: 'templates',
    }),
  );
  const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  const socket = io(url, { transports: ['websocket'] });
  await new Promise((r) => socket.once('connect', () => r(undefined)));
  const sessionId = `bench-${Date.now()}`;
  // One session for all agents, or one session each: sessions are the unit of write serialization.
  const sessionOf = (i: number) => (spread ? `${sessionId}-${i}` : sessionId);
  await call(socket, 'session.start', { sessionId });
  const reply = [{ when: {}, do: [{ reply: 'ok {{prompt}}' }] }];
  for (let i = 0; i < AGENTS; i++) {
    if (spread) {
      await call(socket, 'session.start', { sessionId: sessionOf(i) });
    }
    await call(socket, 'async.createAgent', {
      sessionId: sessionOf(i),
      agentId: `worker${i}`,
      template: 'assistant',
      config: { script: reply },
    });
  }

  // Throughput and latency: every agent gets its tasks at once; all agents work in parallel.
  // A task can complete before its ack arrives, so completions are noted by id and matched afterwards.
  const sentAt = new Map<string, number>();
  const doneAt = new Map<string, number>();
  const acks: number[] = [];
  const total = AGENTS * TASKS_PER_AGENT;
  const allDone = new Promise<void>((resolve) => {
    const onDone = (p: any) => {
      doneAt.set(p.taskId, performance.now());
      if (doneAt.size === total) {
        socket.off('async.task.completed', onDone);
        resolve();
      }
    };
    socket.on('async.task.completed', onDone);
  });
  const start = performance.now();
  await Promise.all(
    Array.from({ length: AGENTS }, async (_, a) => {
      for (let t = 0; t < TASKS_PER_AGENT; t++) {
        const t0 = performance.now();
        const { taskId } = await call(socket, 'async.sendTask', {
          sessionId: sessionOf(a),
          agentId: `worker${a}`,
          prompt: `task ${t}`,
        });
        acks.push(performance.now() - t0);
        sentAt.set(taskId, t0);
      }
    }),
  );
  await allDone;
  const seconds = (performance.now() - start) / 1000;
  const endToEnd = [...sentAt].map(([id, t0]) => doneAt.get(id)! - t0);

  // Send-and-switch round trip: asker waits on answerer, once per task.
  await call(socket, 'async.createAgent', {
    sessionId,
    agentId: 'answerer',
    template: 'assistant',
    config: { script: [{ when: {}, do: [{ reply: 'answer' }] }] },
  });
  await call(socket, 'async.createAgent', {
    sessionId,
    agentId: 'asker',
    template: 'assistant',
    config: {
      script: [
        {
          when: {},
          do: [
            { tool: 'send_mail_with_switch', args: { to: 'answerer', subject: 'q', body: 'q' } },
            { reply: 'got it' },
          ],
        },
      ],
    },
  });
  const switchTimes: number[] = [];
  for (let i = 0; i < SWITCH_ROUNDS; i++) {
    const t0 = performance.now();
    let taskId: string | undefined;
    const seen = new Set<string>();
    await new Promise<void>((resolve) => {
      const on = (p: any) => {
        seen.add(p.taskId);
        if (taskId !== undefined && seen.has(taskId)) {
          socket.off('async.task.completed', on);
          resolve();
        }
      };
      socket.on('async.task.completed', on);
      void call(socket, 'async.sendTask', { sessionId, agentId: 'asker', prompt: `q${i}` }).then((r) => {
        taskId = r.taskId;
        on({ taskId: '' });
      });
    });
    switchTimes.push(performance.now() - t0);
  }

  socket.close();
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
  return {
    label,
    ackP50: pct(acks, 50),
    ackP99: pct(acks, 99),
    tasksPerSecond: total / seconds,
    taskEndToEndP50: pct(endToEnd, 50),
    switchRoundTripP50: pct(switchTimes, 50),
  };
}

async function freshDatabase(server: string): Promise<string> {
  const name = `mailroom_bench_${process.pid}`;
  const c = new Client({ connectionString: server });
  await c.connect();
  await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  const url = new URL(server);
  url.pathname = `/${name}`;
  return url.toString();
}

async function main(): Promise<void> {
  const results = [
    await run('embedded PGlite, 1 session', undefined, false),
    await run(`embedded PGlite, ${AGENTS} sessions`, undefined, true),
  ];
  const server = process.env.BENCH_DATABASE_URL;
  if (server) {
    results.push(await run('Postgres server, 1 session', await freshDatabase(server), false));
    results.push(await run(`Postgres server, ${AGENTS} sessions`, await freshDatabase(server), true));
  }
  const f = (n: number) => n.toFixed(1);
  const rows = results.map(
    (r) =>
      `| ${r.label} | ${f(r.tasksPerSecond)} | ${f(r.ackP50)} | ${f(r.ackP99)} | ${f(r.taskEndToEndP50)} | ${f(r.switchRoundTripP50)} |`,
  );
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()} ${release()}, Node ${process.version}`;
  const text = [
    '# Benchmarks',
    '',
    `Measured ${new Date().toISOString()} on ${machine}.`,
    `Command: \`npm run bench\` (with \`BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test\` for the Postgres row).`,
    '',
    `Workload: ${AGENTS} scripted agents (in one session, or one session each), ${TASKS_PER_AGENT} tasks each sent at once over socket.io`,
    `(${AGENTS * TASKS_PER_AGENT} tasks); then ${SWITCH_ROUNDS} sequential send_mail_with_switch round trips between two agents.`,
    'Times in milliseconds. The scripted model answers instantly, so this measures Mailroom itself: the',
    "durable enqueue, claim, history and push path. Every write to a session takes that session's lock",
    '(ADR 0002), so one busy session is serialized while separate sessions run in parallel on Postgres;',
    'the embedded PGlite serializes everything in the process (ADR 0003).',
    '',
    '| database | tasks/s | sendTask ack p50 | ack p99 | task end-to-end p50 | switch round trip p50 |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
  writeFileSync('BENCHMARKS.md', text);
  console.log(text);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

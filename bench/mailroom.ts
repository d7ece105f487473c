// Mailroom as the bench drives it: the whole service in this process on a random port, real socket.io
// clients, scripted agents whose model answers at once, every task durable before its ack.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, Socket } from 'socket.io-client';
import { createApp } from 'src/bootstrap';
import { loadConfig } from 'src/config/app-config';
import { measureCost } from './cost';
import { RuntimeResult, SEQUENTIAL, SHAPES, ShapeResult, warmUpOf } from './peers/shapes';
import { oneAtATime, percentile } from './stats';

export interface MailroomResult extends RuntimeResult {
  switchP50: number;
  /** Of the one-at-a-time units: from `async.sendTask` to its ack (the task committed), p50. */
  ackP50: number;
}

function call(socket: Socket, method: string, params: unknown): Promise<any> {
  return new Promise((resolve, reject) =>
    socket.emit(method, params, (reply: any) =>
      reply.error ? reject(new Error(`${method}: ${reply.error.message}`)) : resolve(reply.result),
    ),
  );
}

/** Resolves each task id's completion; completions that beat their ack are kept until asked for. */
class Completions {
  private readonly done = new Set<string>();
  private readonly waiting = new Map<string, () => void>();

  constructor(socket: Socket) {
    socket.on('async.task.completed', (p: { taskId: string }) => {
      const resolve = this.waiting.get(p.taskId);
      if (resolve) {
        this.waiting.delete(p.taskId);
        resolve();
      } else {
        this.done.add(p.taskId);
      }
    });
  }

  of(taskId: string): Promise<void> {
    if (this.done.delete(taskId)) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.set(taskId, resolve));
  }
}

const REPLY = [{ when: {}, do: [{ reply: 'ok {{prompt}}' }] }];

export async function measureMailroom(
  label: string,
  databaseUrl: string | undefined,
  sessionPerAgent: boolean,
): Promise<MailroomResult> {
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
  const completions = new Completions(socket);
  let round = 0;

  /** A fresh set of agents (in one session, or one session each); returns where agent i lives. */
  const team = async (agents: number) => {
    const base = `bench-${Date.now()}-${round++}`;
    const sessionOf = (i: number) => (sessionPerAgent ? `${base}-${i}` : base);
    for (let i = 0; i < agents; i++) {
      if (i === 0 || sessionPerAgent) {
        await call(socket, 'session.start', { sessionId: sessionOf(i) });
      }
      await call(socket, 'async.createAgent', {
        sessionId: sessionOf(i),
        agentId: `worker${i}`,
        template: 'assistant',
        config: { script: REPLY },
      });
    }
    return sessionOf;
  };
  const task = async (sessionId: string, agentId: string, prompt: string) =>
    (await call(socket, 'async.sendTask', { sessionId, agentId, prompt })).taskId as string;

  /** Each agent's tasks sent as fast as acks come back; the agents work through their queues at once. */
  const runShape = async (sessionOf: (i: number) => string, agents: number, perAgent: number) => {
    const ends: Array<Promise<void>> = [];
    const start = performance.now();
    await Promise.all(
      Array.from({ length: agents }, async (_, a) => {
        for (let n = 0; n < perAgent; n++) {
          ends.push(completions.of(await task(sessionOf(a), `worker${a}`, `task ${n}`)));
        }
      }),
    );
    await Promise.all(ends);
    return (performance.now() - start) / 1000;
  };

  const shapes: ShapeResult[] = [];
  for (const { agents, perAgent } of SHAPES) {
    const warm = warmUpOf({ agents, perAgent });
    await runShape(await team(warm.agents), warm.agents, warm.perAgent);
    const sessionOf = await team(agents);
    const done = measureCost();
    const seconds = await runShape(sessionOf, agents, perAgent);
    shapes.push({
      agents,
      perAgent,
      unitsPerSecond: (agents * perAgent) / seconds,
      cost: done(agents * perAgent),
    });
  }

  const one = await team(1);
  const acks: number[] = [];
  const times = await oneAtATime(SEQUENTIAL, async (n) => {
    const sent = performance.now();
    const taskId = await task(one(0), 'worker0', `t${n}`);
    acks.push(performance.now() - sent);
    return completions.of(taskId);
  });

  const sessionId = one(0);
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
  const switches = await oneAtATime(SEQUENTIAL, async (n) =>
    completions.of(await task(sessionId, 'asker', `q${n}`)),
  );

  socket.close();
  await app.close();
  rmSync(dataDir, { recursive: true, force: true });
  return {
    runtime: label,
    durable: true,
    shapes,
    latencyP50: percentile(times, 50),
    latencyP99: percentile(times, 99),
    switchP50: percentile(switches, 50),
    ackP50: percentile(acks, 50),
  };
}

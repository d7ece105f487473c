import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { ServerProcess, ensureBuilt } from '../support/server-process';
import { TestDatabase } from '../support/test-app';

type Running = ServerProcess & { url: string };

/** The real server (`node dist/main.js`) in its own process, on the suite's data, so that it can be killed with SIGKILL. */
function startServer(db: TestDatabase): Promise<Running> {
  return ServerProcess.start('crash', {
    DATA_DIR: db.dataDir,
    LEASE_TTL_MS: '2000', // on a Postgres server the restarted process takes the dead one's sessions at expiry
    ...(db.databaseUrl ? { DATABASE_URL: db.databaseUrl } : {}),
  });
}

describe('a killed server process', () => {
  let db: TestDatabase;
  let server: Running | undefined;
  let client: TestClient | undefined;

  beforeAll(async () => {
    ensureBuilt();
    db = await TestDatabase.create();
  });

  afterAll(async () => {
    client?.close();
    await server?.stop('SIGKILL');
    await db.destroy();
  });

  it('interrupts the item in hand and retries it (its effect once), and runs the acknowledged queue after restart', async () => {
    server = await startServer(db);
    client = await TestClient.connect(server.url);
    const sessionId = await startSession(client, newSessionId('crash'));
    await client.ok('async.createAgent', {
      sessionId,
      agentId: 'worker',
      template: 'assistant',
      config: {
        script: [
          {
            when: { match: '^slow' },
            // The effect (mail to the user) comes after a pause in which the process is killed.
            do: [
              {
                tool: 'send_mail',
                args: { to: 'user', subject: 'effect', body: '{{prompt}}' },
                delayMs: 3000,
              },
              { reply: 'slow done' },
            ],
          },
          { when: {}, do: [{ reply: 'done {{prompt}}' }] },
        ],
      },
    });
    const slow = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'slow job' });
    await client.waitFor('async.task.started', (p) => p.taskId === slow.taskId);
    const queued: string[] = [];
    for (let i = 0; i < 20; i++) {
      queued.push(
        (await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: `job ${i}` })).taskId,
      );
    }
    // Still in hand: neither its effect nor its end has happened when the process dies.
    const before = await client.ok('async.getHistory', { sessionId, limit: 1000 });
    const ofSlow = (events: Array<{ type: string; payload: any }>, type: string) =>
      events.filter((e) => e.type === type && e.payload.taskId === slow.taskId);
    expect(ofSlow(before.events, 'async.tool.called')).toEqual([]);
    expect(ofSlow(before.events, 'async.task.completed')).toEqual([]);

    client.close();
    await server.stop('SIGKILL'); // mid-step, with 20 acknowledged tasks queued behind it

    server = await startServer(db);
    client = await TestClient.connect(server.url);
    await client.ok('session.subscribe', { sessionId });
    for (const taskId of [slow.taskId, ...queued]) {
      const task = await client.ok('async.getTask', { sessionId, taskId });
      if (task.state !== 'done') {
        await client.waitForTaskEnd(taskId);
      }
    }
    const results = await Promise.all(
      [slow.taskId, ...queued].map((taskId) => client!.ok('async.getTask', { sessionId, taskId })),
    );
    expect(results.map((t) => t.state)).toEqual(Array(21).fill('done'));
    expect(results[0].result).toEqual({ final: 'slow done' });
    expect(results.slice(1).map((t) => t.result.final)).toEqual(queued.map((_, i) => `done job ${i}`));

    const { events } = await client.ok('async.getHistory', { sessionId, limit: 1000 });
    // The item in hand was interrupted and tried again: two starts (attempts 2), one end, one effect.
    expect(ofSlow(events, 'async.task.started')).toHaveLength(2);
    expect(ofSlow(events, 'async.task.completed')).toHaveLength(1);
    expect(ofSlow(events, 'async.tool.called')).toHaveLength(1);
    const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'worker' });
    expect(messages.filter((m: { subject: string }) => m.subject === 'effect')).toHaveLength(1);
    // Each queued task ran once.
    for (const taskId of queued) {
      expect(
        events.filter((e: any) => e.type === 'async.task.started' && e.payload.taskId === taskId),
      ).toHaveLength(1);
    }
    // The history is still gap-free across the crash.
    expect(events.map((e: { seq: number }) => e.seq)).toEqual(events.map((_: unknown, i: number) => i + 1));
  });
  it('loses no acknowledged task when killed while full batches of writes commit', async () => {
    client?.close();
    await server?.stop('SIGKILL'); // the previous test's server, on the same data
    server = await startServer(db);
    client = await TestClient.connect(server.url);
    const sessionId = await startSession(client, newSessionId('crash-batch'));
    for (const agentId of ['a', 'b', 'c', 'd']) {
      await client.ok('async.createAgent', {
        sessionId,
        agentId,
        template: 'assistant',
        config: { script: [{ when: {}, do: [{ reply: 'done {{prompt}}' }] }] },
      });
    }
    // Many writes at once, so that they wait for each other and commit in shared batches; the
    // process is killed once some are acknowledged and others are still in flight.
    const acked: string[] = [];
    let killed = false;
    let enoughAcked!: () => void;
    const enough = new Promise<void>((resolve) => (enoughAcked = resolve));
    const sends = Array.from({ length: 400 }, (_, i) =>
      client!
        .call('async.sendTask', { sessionId, agentId: 'abcd'[i % 4], prompt: `job ${i}` })
        .then((reply) => {
          if ('result' in reply && !killed) {
            acked.push((reply.result as { taskId: string }).taskId);
            if (acked.length === 100) {
              enoughAcked();
            }
          }
        }),
    );
    await enough;
    killed = true; // an ack read after this line may have crossed the kill: not counted
    await server.stop('SIGKILL');
    client.close();
    await Promise.race([Promise.all(sends), new Promise((r) => setTimeout(r, 1000))]);

    server = await startServer(db);
    client = await TestClient.connect(server.url);
    const tasks = await Promise.all(
      acked.map((taskId) => client!.call('async.getTask', { sessionId, taskId })),
    );
    expect(tasks.filter((t) => !('result' in t))).toEqual([]);
    expect(new Set(acked).size).toBe(acked.length);
  });
});

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
});

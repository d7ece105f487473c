import { Client } from 'pg';
import { DatabaseService, sql } from 'src/database/database.service';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp, WatchedClock } from '../support/test-app';

describe('Durability across a restart', () => {
  let sut: TestApp;
  let clock: WatchedClock;
  let client: TestClient;

  beforeAll(async () => {
    clock = new WatchedClock();
    sut = await startTestApp({ clock });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  /** Stops the app and starts it on the same data; the client reconnects (a new port) and resubscribes. */
  async function restart(...sessionIds: string[]): Promise<void> {
    client.close();
    await sut.stop();
    await sut.restart();
    client = await TestClient.connect(sut.url);
    for (const sessionId of sessionIds) {
      await client.ok('session.subscribe', { sessionId });
    }
  }

  /**
   * The session's first record of `type` that matches, whether it happened before this client
   * subscribed (read from the history, as a reconnecting client does) or is still to come.
   */
  async function record(sessionId: string, type: string, match: (p: any) => boolean = () => true) {
    const { events } = await client.ok('async.getHistory', { sessionId });
    const past = (events as any[])
      .map((e) => ({ ...e.payload, sessionId, seq: e.seq, at: e.at, type: e.type }))
      .find((p) => p.type === type && match(p));
    return past ?? client.waitFor(type, (p) => p.sessionId === sessionId && match(p));
  }

  const taskEnd = (sessionId: string, taskId: string) =>
    record(sessionId, 'async.task.completed', (p) => p.taskId === taskId);

  /** A raw connection to the app's data while the app is down, to leave it as a killed process would. */
  async function withDataOfStoppedApp(
    fn: (q: (text: string, params?: unknown[]) => Promise<unknown>) => Promise<void>,
  ) {
    const db = new DatabaseService(sut.config);
    await db.onModuleInit();
    try {
      await db.transaction((tx) => fn((text, params) => sql(tx).query(text, params)));
    } finally {
      await db.onApplicationShutdown();
    }
  }

  it('keeps sessions, agents, their states and queued tasks in order', async () => {
    const sessionId = await startSession(client, newSessionId(), { metadata: { team: 'durability' } });
    await createScripted(client, sessionId, 'worker', replyAll('done: {{prompt}}'), {}, { autoStart: false });
    await createScripted(client, sessionId, 'helper', replyAll('ok'), { wakeEvents: ['deploy'] });
    const sent: Record<string, string> = {};
    for (const [prompt, priority] of [
      ['first', 'normal'],
      ['second', 'low'],
      ['third', 'urgent'],
      ['fourth', 'normal'],
    ]) {
      sent[prompt] = (
        await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt, priority })
      ).taskId;
    }
    const sessionBefore = (await client.ok('session.list')).sessions.find(
      (s: any) => s.sessionId === sessionId,
    );
    const statesBefore = await client.ok('async.getAgentStates', { sessionId });
    expect(statesBefore.agents.worker).toMatchObject({ state: 'stopped', queue_size: 4 });

    await restart(sessionId);

    const sessionAfter = (await client.ok('session.list')).sessions.find(
      (s: any) => s.sessionId === sessionId,
    );
    expect(sessionAfter).toEqual({ ...sessionBefore, agentCount: 2 });
    await expect(client.ok('async.getAgentStates', { sessionId })).resolves.toEqual(statesBefore);
    for (const [prompt, taskId] of Object.entries(sent)) {
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        agentId: 'worker',
        state: 'queued',
        prompt,
      });
    }

    await client.ok('async.startAgent', { sessionId, agentId: 'worker' });
    for (const taskId of Object.values(sent)) {
      await taskEnd(sessionId, taskId);
    }
    const started = client
      .of('async.task.started')
      .filter((p) => p.sessionId === sessionId && p.agentId === 'worker')
      .map((p) => p.taskId);
    expect(started).toEqual([sent.third, sent.first, sent.fourth, sent.second]);
  });

  it("keeps a sleeping agent's deadline, which fires after the restart", async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'sleeper', replyAll('awake: {{prompt}}'));
    const slept = await client.ok('async.sleepAgent', {
      sessionId,
      agentId: 'sleeper',
      durationSeconds: 600,
    });
    expect(slept.sleepingUntil).toBe(new Date(clock.now() + 600_000).toISOString());
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'sleeper', prompt: 'later' });

    await restart(sessionId);

    const states = await client.ok('async.getAgentStates', { sessionId });
    expect(states.agents.sleeper).toMatchObject({
      state: 'sleeping',
      sleeping_until: slept.sleepingUntil,
      queue_size: 1,
    });
    clock.advance(599_000);
    await expect(client.ok('async.getTask', { sessionId, taskId: task.taskId })).resolves.toMatchObject({
      state: 'queued',
    });
    clock.advance(1_000);
    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'sleeper' && p.previous === 'sleeping',
      ),
    ).resolves.toMatchObject({ reason: 'timer' });
    await expect(taskEnd(sessionId, task.taskId)).resolves.toMatchObject({
      result: { final: 'awake: later' },
    });
  });

  it("keeps a sleeping agent's wake events", async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'watcher', replyAll('saw {{event}} {{data}}'), {
      wakeEvents: ['deploy'],
    });
    await client.ok('async.sleepAgent', {
      sessionId,
      agentId: 'watcher',
      wakeEvents: ['alert', 'deploy:done'],
    });

    await restart(sessionId);

    const states = await client.ok('async.getAgentStates', { sessionId });
    expect(states.agents.watcher).toMatchObject({
      state: 'sleeping',
      sleeping_until: null,
      wake_events: ['alert', 'deploy:done'],
    });
    await expect(client.ok('async.broadcastEvent', { sessionId, event: 'deploy' })).resolves.toEqual({
      event: 'deploy',
      delivered: [],
      woke: [],
    });
    await expect(
      client.ok('async.broadcastEvent', { sessionId, event: 'alert', data: { level: 2 } }),
    ).resolves.toEqual({ event: 'alert', delivered: ['watcher'], woke: ['watcher'] });
    const started = await client.waitFor(
      'async.task.started',
      (p) => p.sessionId === sessionId && p.kind === 'event',
    );
    await expect(taskEnd(sessionId, started.taskId)).resolves.toMatchObject({
      result: { final: 'saw alert {"level":2}' },
    });
  });

  it('puts back an item that was mid-step when the app stopped, and finishes it after the restart', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'slow', [
      { when: { kind: 'task' }, do: [{ reply: 'finished {{prompt}}', delayMs: 5_000 }] },
    ]);
    const thinking = clock.nextTimers(1, 5_000);
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'slow', prompt: 'the report' });
    await thinking;
    await expect(client.ok('async.getTask', { sessionId, taskId: task.taskId })).resolves.toMatchObject({
      state: 'running',
    });

    const thinkingAgain = clock.nextTimers(1, 5_000);
    await restart(sessionId);
    await thinkingAgain;
    clock.advance(5_000);

    await expect(taskEnd(sessionId, task.taskId)).resolves.toMatchObject({
      agentId: 'slow',
      result: { final: 'finished the report' },
    });
    await expect(client.ok('async.getTask', { sessionId, taskId: task.taskId })).resolves.toMatchObject({
      state: 'done',
      result: { final: 'finished the report' },
    });
    const { events } = await client.ok('async.getHistory', { sessionId });
    const ofTask = (events as any[]).filter((e) => e.payload.taskId === task.taskId).map((e) => e.type);
    // Streamed text is pushed, never stored: the history holds the two claims and the completion.
    expect(ofTask).toEqual(['async.task.started', 'async.task.started', 'async.task.completed']);
    // The shutdown put the item back: its agent's push says so, not task_cancelled.
    const reasons = (events as any[])
      .filter((e) => e.type === 'async.agent.stateChanged' && e.payload.agentId === 'slow')
      .map((e) => `${e.payload.previous}->${e.payload.state}:${e.payload.reason}`);
    expect(reasons).toContain('active->idle:requeued');
    expect(reasons.join(' ')).not.toContain('task_cancelled');
  });

  it('hands a retried item the recorded results of the tool calls it had committed, without redoing them', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'reporter', [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail', args: { to: 'user', subject: 'Started', body: 'on {{prompt}}' } },
          { tool: 'list_agents', args: {} },
          { reply: 'reported in {{result.agents.0.agentId}}', delayMs: 7_000 },
        ],
      },
    ]);
    const thinking = clock.nextTimers(1, 7_000);
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'reporter', prompt: 'the audit' });
    await thinking; // both calls committed; the model is "thinking" about its answer
    const first = await client.ok('async.listMail', { sessionId, agentId: 'reporter' });
    expect(first.messages).toHaveLength(1);

    const thinkingAgain = clock.nextTimers(1, 7_000);
    await restart(sessionId);
    await thinkingAgain;
    clock.advance(7_000);

    await expect(taskEnd(sessionId, task.taskId)).resolves.toMatchObject({
      result: { final: 'reported in reporter' },
    });
    const after = await client.ok('async.listMail', { sessionId, agentId: 'reporter' });
    expect(after.messages).toEqual(first.messages);
    const { events } = await client.ok('async.getHistory', { sessionId });
    const calls = (events as any[]).filter(
      (e) => e.type === 'async.tool.called' && e.payload.taskId === task.taskId,
    );
    expect(calls.map((e) => e.payload.tool)).toEqual(['send_mail', 'list_agents']);
    expect(calls[0].payload.result).toEqual({ messageId: first.messages[0].messageId });
    const started = (events as any[]).filter(
      (e) => e.type === 'async.task.started' && e.payload.taskId === task.taskId,
    );
    expect(started).toHaveLength(2);
  });

  it('hands a retried item the reply its send-and-switch had received, without asking again', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'helper', replyAll('forty-two'));
    await createScripted(client, sessionId, 'asker', [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail_with_switch', args: { to: 'helper', subject: 'Q', body: '{{prompt}}' } },
          { reply: 'helper says {{result.reply.body}}', delayMs: 7_000 },
        ],
      },
    ]);
    const thinking = clock.nextTimers(1, 7_000);
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'the answer?' });
    await thinking; // the reply came and the call committed; the model is "thinking" about its answer
    const first = await client.ok('async.listMail', { sessionId });
    expect(first.messages).toHaveLength(2); // the question and its reply

    const thinkingAgain = clock.nextTimers(1, 7_000);
    await restart(sessionId);
    await thinkingAgain;
    clock.advance(7_000);

    await expect(taskEnd(sessionId, task.taskId)).resolves.toMatchObject({
      result: { final: 'helper says forty-two' },
    });
    await expect(client.ok('async.listMail', { sessionId })).resolves.toEqual(first);
    const { events } = await client.ok('async.getHistory', { sessionId });
    const calls = (events as any[]).filter(
      (e) => e.type === 'async.tool.called' && e.payload.taskId === task.taskId,
    );
    expect(calls).toHaveLength(1);
    expect(calls[0].payload.result).toMatchObject({ reply: { from: 'helper', body: 'forty-two' } });
    const helperStarts = (events as any[]).filter(
      (e) => e.type === 'async.task.started' && e.payload.agentId === 'helper',
    );
    expect(helperStarts).toHaveLength(1);
    // The wait ended in the call's own transaction: its record is the next one after the caller's change back.
    const replied = (events as any[]).filter(
      (e) => e.type === 'async.agent.stateChanged' && e.payload.reason === 'reply_received',
    );
    expect(replied).toHaveLength(1);
    expect(replied[0].payload).toMatchObject({ agentId: 'asker', previous: 'waiting', state: 'active' });
    expect(calls[0].seq).toBe(replied[0].seq + 1);
  });

  it('requeues items a killed process left running, and fails one interrupted too often', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(
      client,
      sessionId,
      'survivor',
      replyAll('recovered {{prompt}}'),
      {},
      { autoStart: false },
    );
    await createScripted(client, sessionId, 'poisoned', replyAll('never'), {}, { autoStart: false });
    const kept = await client.ok('async.sendTask', { sessionId, agentId: 'survivor', prompt: 'retry me' });
    const poison = await client.ok('async.sendTask', { sessionId, agentId: 'poisoned', prompt: 'crash me' });

    client.close();
    await sut.stop();
    // What a process killed mid-step leaves behind: items running, their agents active.
    await withDataOfStoppedApp(async (q) => {
      await q(
        `UPDATE work_item SET state = 'running', started_at = now(), attempts = CASE WHEN id = $1 THEN 1 ELSE $3::int END
         WHERE id IN ($1, $2)`,
        [kept.taskId, poison.taskId, sut.config.maxAttempts],
      );
      await q(`UPDATE agent SET state = 'active' WHERE session_id = $1`, [sessionId]);
    });
    await sut.restart();
    client = await TestClient.connect(sut.url);
    await client.ok('session.subscribe', { sessionId });

    await expect(
      record(
        sessionId,
        'async.agent.stateChanged',
        (p) => p.agentId === 'survivor' && p.reason === 'recovered',
      ),
    ).resolves.toMatchObject({ previous: 'active', state: 'idle' });
    await expect(taskEnd(sessionId, kept.taskId)).resolves.toMatchObject({
      result: { final: 'recovered retry me' },
    });
    await expect(
      record(sessionId, 'async.task.failed', (p) => p.taskId === poison.taskId),
    ).resolves.toMatchObject({ agentId: 'poisoned', error: { code: 'interrupted' }, errorCount: 1 });
    await expect(client.ok('async.getTask', { sessionId, taskId: poison.taskId })).resolves.toMatchObject({
      state: 'failed',
      error: { code: 'interrupted' },
    });
  });

  it('continues the history sequence without a gap', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'scribe', replyAll('noted {{prompt}}'));
    const before = await client.ok('async.sendTask', { sessionId, agentId: 'scribe', prompt: 'one' });
    await client.waitForTaskEnd(before.taskId);
    const first = (await client.ok('async.getHistory', { sessionId })).events as any[];
    const lastSeq = first[first.length - 1].seq as number;

    await restart(sessionId);

    const after = await client.ok('async.sendTask', { sessionId, agentId: 'scribe', prompt: 'two' });
    const completed = await client.waitForTaskEnd(after.taskId);
    const all = (await client.ok('async.getHistory', { sessionId })).events as any[];
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
    expect(all.slice(0, first.length)).toEqual(first);
    const pushedSince = client.pushes
      .filter((p) => p.payload.sessionId === sessionId)
      .map((p) => p.payload.seq);
    expect(Math.min(...pushedSince)).toBe(lastSeq + 1);
    expect(all.find((e) => e.type === 'async.task.completed' && e.payload.taskId === after.taskId).seq).toBe(
      completed.payload.seq,
    );
    await expect(client.ok('async.getHistory', { sessionId, after: lastSeq })).resolves.toMatchObject({
      events: all.slice(first.length),
      nextAfter: all[all.length - 1].seq,
    });
  });

  it('never loses an acknowledged sendTask', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(
      client,
      sessionId,
      'parked',
      replyAll('parked {{prompt}}'),
      {},
      { autoStart: false },
    );
    await createScripted(client, sessionId, 'busy', replyAll('busy {{prompt}}'));
    const prompts = Array.from({ length: 8 }, (_, i) => `job ${i}`);
    const [parked, busy] = await Promise.all(
      ['parked', 'busy'].map((agentId) =>
        Promise.all(
          prompts.map((prompt) =>
            client.ok('async.sendTask', {
              sessionId,
              agentId,
              prompt,
              idempotencyKey: `${agentId}:${prompt}`,
            }),
          ),
        ),
      ),
    );

    // Stopped the moment the last acknowledgement arrived.
    await restart(sessionId);

    for (const [i, ack] of parked.entries()) {
      await expect(client.ok('async.getTask', { sessionId, taskId: ack.taskId })).resolves.toMatchObject({
        state: 'queued',
        prompt: prompts[i],
      });
    }
    await expect(
      client.ok('async.sendTask', {
        sessionId,
        agentId: 'parked',
        prompt: 'job 0',
        idempotencyKey: 'parked:job 0',
      }),
    ).resolves.toEqual({ taskId: parked[0].taskId, queued: true, queueSize: prompts.length });
    await client.ok('async.startAgent', { sessionId, agentId: 'parked' });
    for (const ack of [...parked, ...busy]) {
      await expect(taskEnd(sessionId, ack.taskId)).resolves.toMatchObject({
        result: { final: expect.stringMatching(/^(parked|busy) job \d$/) },
      });
    }
  });

  describe('health', () => {
    it('GET /health answers 200 while the database answers', async () => {
      const res = await fetch(`${sut.url}/health`);
      expect(res.status).toBe(200);
      await expect(res.json()).resolves.toMatchObject({ status: 'ok' });
    });

    it('answers 503, and RPC calls answer unavailable, when the database is gone', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'bystander', replyAll('ok'));

      await sut.app.get(DatabaseService).onApplicationShutdown();

      const res = await fetch(`${sut.url}/health`);
      expect(res.status).toBe(503);
      await expect(res.json()).resolves.toMatchObject({ status: 'unavailable' });
      for (const [method, params] of [
        ['async.getAgentStates', { sessionId }],
        ['async.sendTask', { sessionId, agentId: 'bystander', prompt: 'hello' }],
        ['session.start', { sessionId: newSessionId() }],
      ] as const) {
        await expect(client.fails(method, params)).resolves.toMatchObject({
          code: -32006,
          data: { reason: 'unavailable' },
        });
      }
      // The app itself still answers.
      await expect(client.ok('templates.list')).resolves.toMatchObject({ templates: expect.any(Array) });
      await expect(client.fails('no.such.method')).resolves.toMatchObject({ code: -32601 });

      await restart(sessionId);

      const healthy = await fetch(`${sut.url}/health`);
      expect(healthy.status).toBe(200);
      await expect(client.ok('async.getAgentStates', { sessionId })).resolves.toMatchObject({
        agents: { bystander: { state: 'idle' } },
      });
    });

    // A real outage needs a server to refuse connections; PGlite lives in the process (see the test above).
    const server = process.env.TEST_DATABASE_URL;
    /** Closes `database` to new connections and ends the ones it has: the app's pool loses it. */
    const shut = async (admin: Client, database: string) => {
      await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [
        database,
      ]);
    };
    if (server) {
      it('rides out a Postgres outage without a restart', async () => {
        const sessionId = await startSession(client, newSessionId());
        await createScripted(client, sessionId, 'patient', replyAll('served {{prompt}}'));
        const database = new URL(sut.config.databaseUrl!).pathname.slice(1);
        const admin = new Client({ connectionString: server });
        await admin.connect();
        try {
          await shut(admin, database);

          const res = await fetch(`${sut.url}/health`);
          expect(res.status).toBe(503);
          await expect(res.json()).resolves.toMatchObject({ status: 'unavailable' });
          await expect(
            client.fails('async.sendTask', { sessionId, agentId: 'patient', prompt: 'during' }),
          ).resolves.toMatchObject({ code: -32006, data: { reason: 'unavailable' } });
        } finally {
          await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
          await admin.end();
        }

        const healthy = await fetch(`${sut.url}/health`);
        expect(healthy.status).toBe(200);
        const task = await client.ok('async.sendTask', { sessionId, agentId: 'patient', prompt: 'after' });
        await expect(client.waitForTaskEnd(task.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
          payload: { result: { final: 'served after' } },
        });
      });

      it('answers unavailable, not internal_error, while its database is missing, and recovers', async () => {
        const sessionId = await startSession(client, newSessionId());
        await createScripted(client, sessionId, 'patient', replyAll('served {{prompt}}'));
        const database = new URL(sut.config.databaseUrl!).pathname.slice(1);
        const away = `${database}_away`;
        const admin = new Client({ connectionString: server });
        await admin.connect();
        try {
          // Renamed away: the server answers every new connection with 3D000, "does not exist".
          await shut(admin, database);
          await admin.query(`ALTER DATABASE ${database} RENAME TO ${away}`);
          await admin.query(`ALTER DATABASE ${away} ALLOW_CONNECTIONS true`);

          expect((await fetch(`${sut.url}/health`)).status).toBe(503);
          for (const [method, params] of [
            ['session.list', {}],
            ['async.sendTask', { sessionId, agentId: 'patient', prompt: 'during' }],
          ] as const) {
            await expect(client.fails(method, params)).resolves.toMatchObject({
              code: -32006,
              data: { reason: 'unavailable' },
            });
          }
        } finally {
          await shut(admin, away).catch(() => undefined);
          await admin.query(`ALTER DATABASE ${away} RENAME TO ${database}`).catch(() => undefined);
          await admin.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS true`);
          await admin.end();
        }

        expect((await fetch(`${sut.url}/health`)).status).toBe(200);
        const task = await client.ok('async.sendTask', { sessionId, agentId: 'patient', prompt: 'after' });
        await expect(client.waitForTaskEnd(task.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
          payload: { result: { final: 'served after' } },
        });
      });
    }
  });
});

import { SessionsService } from 'src/sessions/sessions.service';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { JsonRpcWsClient } from '../support/json-rpc-client';
import { startTestApp, TestApp } from '../support/test-app';

/**
 * The seed project's own clients: JSON-RPC 2.0 over `/ws`, sessions opened with `startSession`,
 * request ids that are numbers or strings such as "1796108878.650703", the guide's `async.*`
 * payloads as written, and pushes as JSON-RPC notifications on the same socket.
 */
describe("The seed project's dialect", () => {
  let sut: TestApp;

  beforeAll(async () => {
    sut = await startTestApp();
  });

  afterAll(async () => {
    await sut.close();
  });

  describe('the whole user guide through /ws', () => {
    let client: JsonRpcWsClient;

    beforeAll(async () => {
      client = await JsonRpcWsClient.connect(sut.url);
    });

    afterAll(() => client.close());

    it('starts a session, runs d through task, sleep, wake and broadcast, and stops it all', async () => {
      const started = await client.raw(
        JSON.stringify({
          jsonrpc: '2.0',
          id: '1796108878.650703',
          method: 'startSession',
          params: { userId: 'test_user', sessionParams: { language: 'en' } },
        }),
        '1796108878.650703',
      );
      expect(started).toEqual({
        jsonrpc: '2.0',
        id: '1796108878.650703',
        result: { sessionId: expect.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/), status: 'active' },
      });
      const { sessionId } = started.result;

      // The guide's createAgent payload, with a number id as those clients send.
      const created = await client.request(
        'async.createAgent',
        { sessionId, agentId: 'd', autoStart: true },
        2,
      );
      expect(created).toEqual({
        jsonrpc: '2.0',
        id: 2,
        result: { agentId: 'd', state: 'idle', template: 'assistant' },
      });
      // The calling socket was subscribed by startSession: pushes arrive as JSON-RPC notifications.
      await expect(
        client.notification('async.agent.stateChanged', (p) => p.reason === 'created'),
      ).resolves.toEqual({
        jsonrpc: '2.0',
        method: 'async.agent.stateChanged',
        params: {
          sessionId,
          agentId: 'd',
          state: 'idle',
          previous: null,
          reason: 'created',
          at: expect.any(String),
          seq: expect.any(Number),
        },
      });

      const { taskId, queued } = await client.ok('async.sendTask', {
        sessionId,
        agentId: 'd',
        prompt: 'Analyze the latest customer feedback data',
      });
      expect(queued).toBe(true);
      const completed = await client.notification('async.task.completed', (p) => p.taskId === taskId);
      expect(completed.params).toMatchObject({
        sessionId,
        agentId: 'd',
        result: { final: '(scripted) Received task: Analyze the latest customer feedback data' },
      });

      // Sleep with wake events, as the guide's monitor does.
      const asleep = await client.ok('async.sleepAgent', {
        sessionId,
        agentId: 'd',
        durationSeconds: 60,
        wakeEvents: ['alert', 'data_ready'],
      });
      expect(asleep).toEqual({
        agentId: 'd',
        state: 'sleeping',
        sleepingUntil: expect.any(String),
        wakeEvents: ['alert', 'data_ready'],
      });
      const states = await client.raw(
        JSON.stringify({ method: 'async.getAgentStates', params: { sessionId } }), // the guide's bare payload
        null,
      );
      expect(states.result.agents.d).toMatchObject({
        state: 'sleeping',
        current_task: null,
        queue_size: 0,
        sleeping_until: asleep.sleepingUntil,
        wake_events: ['alert', 'data_ready'],
      });

      const reason = 'User requested immediate check';
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'd', reason })).resolves.toEqual({
        agentId: 'd',
        state: 'idle',
        woke: true,
      });
      await client.notification('async.agent.stateChanged', (p) => p.reason === reason && p.state === 'idle');

      // Asleep again; a broadcast of one of its events wakes it and gives it the event.
      await client.ok('async.sleepAgent', { sessionId, agentId: 'd', wakeEvents: ['alert', 'data_ready'] });
      const data = { source: 'analyzer', timestamp: '2025-06-05T16:30:00Z' };
      await expect(
        client.ok('async.broadcastEvent', { sessionId, event: 'data_ready', data }),
      ).resolves.toEqual({
        event: 'data_ready',
        delivered: ['d'],
        woke: ['d'],
      });
      await expect(client.notification('async.event.broadcast')).resolves.toMatchObject({
        params: { sessionId, event: 'data_ready', data, woke: ['d'] },
      });
      const eventTask = await client.notification('async.task.started', (p) => p.kind === 'event');
      await expect(
        client.notification('async.task.completed', (p) => p.taskId === eventTask.params.taskId),
      ).resolves.toMatchObject({ params: { result: { final: '(scripted) Event data_ready received' } } });

      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'd' })).resolves.toEqual({
        agentId: 'd',
        state: 'stopped',
      });
      await expect(client.request('stopSession', { sessionId }, 'stop-1')).resolves.toEqual({
        jsonrpc: '2.0',
        id: 'stop-1',
        result: { sessionId, status: 'stopped' },
      });

      // Every push was a notification: no id, and each with the session's increasing seq.
      const seqs = client.notifications.map((n) => n.params.seq);
      expect(client.notifications.every((n) => n.jsonrpc === '2.0' && !('id' in n))).toBe(true);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    });
  });

  describe('startSession', () => {
    it('keeps userId and sessionParams and gives a fresh id each time', async () => {
      const client = await JsonRpcWsClient.connect(sut.url);
      try {
        const a = await client.ok('startSession', { userId: 'u1', sessionParams: { a: 1 } });
        const b = await client.ok('startSession', {});
        expect(a.sessionId).not.toEqual(b.sessionId);
        // No method returns a session's metadata; the service shows what was stored.
        const stored = await sut.app.get(SessionsService).get(a.sessionId);
        expect(stored.metadata).toEqual({ userId: 'u1', sessionParams: { a: 1 } });
        const socket = await TestClient.connect(sut.url);
        try {
          const { sessions } = await socket.ok('session.list');
          expect(sessions.map((s: any) => s.sessionId)).toEqual(
            expect.arrayContaining([a.sessionId, b.sessionId]),
          );
        } finally {
          socket.close();
        }
      } finally {
        client.close();
      }
    });

    it('validates its params like every method', async () => {
      const client = await JsonRpcWsClient.connect(sut.url);
      try {
        const reply = await client.request('startSession', { userId: 5, extra: true }, 9);
        expect(reply.error).toMatchObject({
          code: -32602,
          data: {
            reason: 'invalid_params',
            issues: expect.arrayContaining([
              expect.objectContaining({ path: 'userId' }),
              { path: 'extra', message: 'unknown param' },
            ]),
          },
        });
      } finally {
        client.close();
      }
    });

    it('answers on socket.io and POST /rpc too, and subscribes the socket.io connection', async () => {
      const socket = await TestClient.connect(sut.url);
      try {
        const { sessionId, status } = await socket.ok('startSession', { userId: 'io-user' });
        expect(status).toBe('active');
        await socket.ok('async.createAgent', { sessionId, agentId: 'd' });
        await expect(
          socket.waitFor('async.agent.stateChanged', (p) => p.sessionId === sessionId),
        ).resolves.toMatchObject({ agentId: 'd', reason: 'created' });
      } finally {
        socket.close();
      }
      const res = await fetch(`${sut.url}/rpc`, {
        method: 'POST',
        body: JSON.stringify({ jsonrpc: '2.0', id: 1796108878.650703, method: 'startSession', params: {} }),
      });
      await expect(res.json()).resolves.toEqual({
        jsonrpc: '2.0',
        id: 1796108878.650703,
        result: { sessionId: expect.any(String), status: 'active' },
      });
    });
  });

  describe('stopSession', () => {
    it('stops every agent, and answers stopped again, and for an unknown session', async () => {
      const socket = await TestClient.connect(sut.url);
      try {
        const { sessionId } = await socket.ok('startSession', {});
        await socket.ok('async.createAgent', { sessionId, agentId: 'writer' });
        await expect(socket.ok('stopSession', { sessionId })).resolves.toEqual({
          sessionId,
          status: 'stopped',
        });
        await expect(socket.ok('async.getAgentStates', { sessionId })).resolves.toMatchObject({
          agents: { writer: { state: 'stopped' } },
        });
        await expect(socket.ok('stopSession', { sessionId })).resolves.toEqual({
          sessionId,
          status: 'stopped',
        });
        const unknown = newSessionId('never-started');
        await expect(socket.ok('stopSession', { sessionId: unknown })).resolves.toEqual({
          sessionId: unknown,
          status: 'stopped',
        });
        await expect(socket.fails('stopSession', { sessionId: 'bad id!' })).resolves.toMatchObject({
          data: { reason: 'invalid_params' },
        });
      } finally {
        socket.close();
      }
    });
  });

  describe('with tokens', () => {
    let secured: TestApp;

    beforeAll(async () => {
      secured = await startTestApp({ env: { API_TOKENS: 'alice-token,bob-token' } });
    });

    afterAll(async () => {
      await secured.close();
    });

    it("owns startSession's sessions by token; another token's stopSession leaves them running", async () => {
      const alice = await JsonRpcWsClient.connect(secured.url, { authorization: 'Bearer alice-token' });
      const bob = await JsonRpcWsClient.connect(secured.url, { authorization: 'Bearer bob-token' });
      try {
        const { sessionId } = await alice.ok('startSession', { userId: 'alice' });
        await alice.ok('async.createAgent', { sessionId, agentId: 'd' });
        await expect(bob.ok('stopSession', { sessionId })).resolves.toEqual({ sessionId, status: 'stopped' });
        await expect(alice.ok('async.getAgentStates', { sessionId })).resolves.toMatchObject({
          agents: { d: { state: 'idle' } },
        });
        const peek = await bob.request('async.getAgentStates', { sessionId });
        expect(peek.error).toMatchObject({ code: -32002, data: { reason: 'session_not_found' } });
      } finally {
        alice.close();
        bob.close();
      }
    });
  });
});

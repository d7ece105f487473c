import type { Server } from 'socket.io';
import {
  AnyPush,
  connect,
  MailroomClient,
  MailroomError,
  MailroomSession,
  METHOD_NAMES,
  METHOD_PARAMS,
} from '@mailroom/client';
import { MethodsService } from 'src/gateway/methods.service';
import { RpcGateway } from 'src/gateway/rpc.gateway';
import { newSessionId } from '../factories/ids';
import { startTestApp, TestApp, WatchedClock } from '../support/test-app';

/** Streamed text that is not a history record (an `index`, and the `seq` of the record it follows). */
const isStreamed = (p: AnyPush) => p.name === 'async.task.output' && typeof p.payload.index === 'number';

/** Resolves once the session has delivered the record `seq`. */
function delivered(session: MailroomSession, seq: number): Promise<void> {
  return new Promise((resolve) => {
    if (session.seq >= seq) {
      resolve();
      return;
    }
    const off = session.onAny(() => {
      if (session.seq >= seq) {
        off();
        resolve();
      }
    });
  });
}

describe('@mailroom/client against the server', () => {
  let sut: TestApp;
  let clock: WatchedClock;
  let client: MailroomClient;

  beforeAll(async () => {
    clock = new WatchedClock();
    sut = await startTestApp({ clock });
    client = await connect(sut.url, { reconnectDelayMs: 50, reconnectDelayMaxMs: 200 });
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  it('the server validates every protocol method with the package schema, the very object', () => {
    const served = new Map(sut.app.get(MethodsService).methods.map((m) => [m.name, m.params]));
    for (const name of METHOD_NAMES) {
      expect(served.get(name)).toBe(METHOD_PARAMS[name]);
    }
  });

  it('calls are typed and errors carry the reason, the code and the issues', async () => {
    const session = await client.startSession({ sessionId: newSessionId() });
    await expect(session.call('async.createAgent', { agentId: 'a' })).resolves.toEqual({
      agentId: 'a',
      state: 'idle',
      template: 'assistant',
    });
    const states = await session.call('async.getAgentStates', {});
    expect(states.agents.a.state).toBe('idle');

    const missing = await client.call('async.getAgentStates', { sessionId: 'nope' }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(MailroomError);
    expect(missing).toMatchObject({ reason: 'session_not_found', code: -32002, isConnectionError: false });

    const bad = (await session
      .call('async.sendTask', { agentId: 'a', prompt: '' })
      .catch((e: unknown) => e)) as MailroomError;
    expect(bad.reason).toBe('invalid_params');
    expect(bad.issues.map((i) => i.path)).toEqual(['prompt']);
  });

  it('waitForTask resolves with the completed or the failed payload, also after the fact', async () => {
    const session = await client.startSession();
    expect(session.id).toMatch(/^session-/);
    await session.call('async.createAgent', {
      agentId: 'a',
      config: {
        script: [
          {
            when: { match: 'fail' },
            do: [{ tool: 'list_agents' }, { tool: 'list_agents' }, { reply: 'never' }],
          },
          { when: {}, do: [{ reply: 'done: {{prompt}}' }] },
        ],
        limits: { maxStepsPerTask: 1 },
      },
    });
    const ok = await session.call('async.sendTask', { agentId: 'a', prompt: 'hello' });
    const failing = await session.call('async.sendTask', { agentId: 'a', prompt: 'fail please' });

    await expect(session.waitForTask(failing.taskId)).resolves.toMatchObject({
      taskId: failing.taskId,
      agentId: 'a',
      error: { code: 'limit_exceeded' },
    });
    // `ok` ended before the failing one: its outcome is remembered.
    await expect(session.waitForTask(ok.taskId)).resolves.toMatchObject({
      sessionId: session.id,
      result: { final: 'done: hello' },
      usage: { promptTokens: expect.any(Number), completionTokens: expect.any(Number) },
    });
  });

  it('a handle that subscribes late replays the history first', async () => {
    const sessionId = newSessionId();
    await client.call('session.start', { sessionId });
    await client.call('async.createAgent', { sessionId, agentId: 'a' });
    const other = await connect(sut.url);
    try {
      const session = other.session(sessionId);
      const seen: AnyPush[] = [];
      session.onAny((p) => seen.push(p));
      await session.subscribe();
      expect(seen.map((p) => [p.payload.seq, p.name])).toEqual([[1, 'async.agent.stateChanged']]);
      const { taskId } = await session.call('async.sendTask', { agentId: 'a', prompt: 'x' });
      await expect(session.waitForTask(taskId)).resolves.toMatchObject({
        result: { final: expect.any(String) },
      });
    } finally {
      other.close();
    }
  });

  it('a call made while the connection is down is sent once it is back', async () => {
    const disconnected = new Promise<void>((resolve) =>
      client.onConnection((e) => (e.type === 'disconnected' ? resolve() : undefined)),
    );
    const gateway: any = sut.app.get(RpcGateway);
    (gateway.server as Server).sockets.sockets.forEach((s) => s.conn.close());
    await disconnected;
    expect(client.connected).toBe(false);
    await expect(client.call('templates.list', {})).resolves.toMatchObject({
      templates: expect.arrayContaining([expect.objectContaining({ name: 'assistant' })]),
    });
  });

  describe('a connection cut mid-run', () => {
    const DELAY = 1000;
    const TASKS = 6;

    // `disconnect(true)`: the server hangs up (socket.io leaves the reconnection to the client);
    // `conn.close()`: the transport drops under the socket (socket.io reconnects by itself).
    it.each([
      [
        'the server disconnects the socket',
        (io: Server) => io.sockets.sockets.forEach((s) => s.disconnect(true)),
      ],
      ['the transport closes', (io: Server) => io.sockets.sockets.forEach((s) => s.conn.close())],
    ])('%s: every push arrives once, in order, replayed from the history', async (_how, cut) => {
      const gateway: any = sut.app.get(RpcGateway);
      const io: Server = gateway.server;
      const reconnected = new Promise<void>((resolve) =>
        client.onConnection((e) => (e.type === 'reconnected' ? resolve() : undefined)),
      );
      const session = client.session(newSessionId());
      const received: AnyPush[] = [];
      session.onAny((p) => received.push(p));
      await session.start();
      await session.call('async.createAgent', {
        agentId: 'worker',
        config: {
          script: [{ when: {}, do: [{ tool: 'list_agents', delayMs: DELAY }, { reply: 'did {{prompt}}' }] }],
        },
      });

      let armed = clock.nextTimers(1, DELAY);
      const taskIds: string[] = [];
      for (let i = 1; i <= TASKS; i++) {
        taskIds.push(
          (await session.call('async.sendTask', { agentId: 'worker', prompt: `job ${i}` })).taskId,
        );
      }
      for (let i = 1; i <= TASKS; i++) {
        await armed; // task i is mid-step
        if (i === 2) {
          cut(io); // tasks 2.. run while the client is away
        }
        if (i < TASKS) {
          armed = clock.nextTimers(1, DELAY);
        }
        clock.advance(DELAY);
      }
      await reconnected;
      for (const taskId of taskIds) {
        await expect(session.waitForTask(taskId)).resolves.toMatchObject({
          result: { final: expect.any(String) },
        });
      }

      const { events } = await session.call('async.getHistory', { limit: 1000 });
      const last = events[events.length - 1].seq;
      await delivered(session, last);
      const records = received.filter((p) => !isStreamed(p));
      expect(records.map((p) => p.payload.seq)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      expect(records.map((p) => p.name)).toEqual(events.map((e) => e.type));
      expect(records.map((p) => p.payload)).toEqual(
        events.map((e) => ({ ...e.payload, sessionId: session.id, seq: e.seq, at: e.at })),
      );
      const completed = received
        .filter((p) => p.name === 'async.task.completed')
        .map((p) => p.payload.taskId);
      expect(completed).toEqual(taskIds);
    });
  });
});

import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { sessionProbe } from '../support/session-probe';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

const MAX_QUEUE = 3;

describe('wake-ups: broadcasts to many sleepers and sleep timers due together', () => {
  let sut: TestApp;
  let clock: ArmedTimersClock;
  let client: TestClient;

  beforeAll(async () => {
    clock = new ArmedTimersClock();
    sut = await startTestApp({ clock, env: { MAX_QUEUE_SIZE: String(MAX_QUEUE) } });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  const { of, statesOf, sendTask } = sessionProbe(() => client);

  const historyOf = async (sessionId: string) =>
    ((await client.ok('async.getHistory', { sessionId, limit: 1000 })).events as any[]).filter(
      (e) => e.type === 'async.agent.stateChanged' || e.type === 'async.event.broadcast',
    );

  /** Agents `${prefix}00`… in creation order, listening to `go`. */
  async function team(sessionId: string, prefix: string, n: number) {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}${String(i).padStart(2, '0')}`);
    for (const agentId of ids) {
      await createScripted(client, sessionId, agentId, replyAll('{{agentId}} got {{event}}'), {
        wakeEvents: ['go'],
      });
    }
    return ids;
  }

  it('wakes every sleeper once, recording their state changes in the session’s order before the broadcast', async () => {
    const sessionId = await startSession(client, newSessionId());
    const agents = await team(sessionId, 'a', 24);
    const sleepers = agents.filter((_, i) => i % 3 !== 1);
    await createScripted(
      client,
      sessionId,
      'off',
      replyAll('no'),
      { wakeEvents: ['go'] },
      { autoStart: false },
    );
    for (const agentId of [...sleepers].reverse()) {
      await client.ok('async.sleepAgent', { sessionId, agentId });
    }
    const before = (await historyOf(sessionId)).length;

    const reply = await client.ok('async.broadcastEvent', { sessionId, event: 'go', data: { n: 1 } });

    expect(reply).toEqual({ event: 'go', delivered: agents, woke: sleepers });
    const made = (await historyOf(sessionId)).slice(before, before + sleepers.length + 1);
    expect(made.map((e) => [e.type, e.payload])).toEqual([
      ...sleepers.map((agentId) => [
        'async.agent.stateChanged',
        { agentId, state: 'idle', previous: 'sleeping', reason: 'event:go' },
      ]),
      ['async.event.broadcast', { event: 'go', data: { n: 1 }, woke: sleepers }],
    ]);
    await client.waitFor(
      'async.task.completed',
      () => of('async.task.completed', sessionId).length >= agents.length,
    );
    const started = of('async.task.started', sessionId);
    expect(started.map((p) => p.agentId).sort()).toEqual(agents);
    expect(started.every((p) => p.kind === 'event')).toBe(true);
    expect((await statesOf(sessionId)).off).toMatchObject({ state: 'stopped', queue_size: 0 });
  });

  it('answers a broadcast before it pushes the wake-ups it recorded, which follow in the session’s order', async () => {
    const sessionId = await startSession(client, newSessionId());
    const agents = await team(sessionId, 'o', 6);
    for (const agentId of agents) {
      await client.ok('async.sleepAgent', { sessionId, agentId });
    }
    // In the order the socket delivers them: the pushes, and the answer as its ack arrives.
    const seen: Array<{ name: string; seq?: number }> = [];
    const listen = (name: string, payload: any) => {
      if (payload?.sessionId === sessionId) {
        seen.push({ name, seq: payload.seq });
      }
    };
    client.socket.onAny(listen);
    try {
      await new Promise((resolve) =>
        client.socket.emit('async.broadcastEvent', { sessionId, event: 'go' }, (reply: unknown) => {
          seen.push({ name: 'answer' });
          resolve(reply);
        }),
      );
      await client.waitFor('async.event.broadcast', () => of('async.event.broadcast', sessionId).length > 0);
    } finally {
      client.socket.offAny(listen);
    }

    expect(seen[0]).toEqual({ name: 'answer' });
    const pushed = seen.slice(1);
    expect(pushed.slice(0, agents.length + 1).map((p) => p.name)).toEqual([
      ...agents.map(() => 'async.agent.stateChanged'),
      'async.event.broadcast',
    ]);
    const seqs = pushed.map((p) => p.seq!);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('pushes what an agent’s broadcast_event recorded before the text the agent streams next', async () => {
    const sessionId = await startSession(client, newSessionId());
    const [listener] = await team(sessionId, 'h', 1);
    await client.ok('async.sleepAgent', { sessionId, agentId: listener });
    await createScripted(client, sessionId, 'herald', [
      {
        when: { kind: 'task' },
        do: [{ tool: 'broadcast_event', args: { event: 'go' } }, { reply: 'announced' }],
      },
    ]);
    const seen: Array<{ name: string; seq: number; taskId?: string }> = [];
    const listen = (name: string, payload: any) => {
      if (payload?.sessionId === sessionId) {
        seen.push({ name, seq: payload.seq, taskId: payload.taskId });
      }
    };
    client.socket.onAny(listen);
    try {
      const { taskId } = await sendTask(sessionId, 'herald', 'announce');
      await client.waitForTaskEnd(taskId);
      const called = seen.find((p) => p.name === 'async.tool.called' && p.taskId === taskId)!;
      const output = seen.find((p) => p.name === 'async.task.output' && p.taskId === taskId)!;
      const broadcast = seen.find((p) => p.name === 'async.event.broadcast')!;

      expect(seen.indexOf(broadcast)).toBeLessThan(seen.indexOf(called));
      expect(seen.indexOf(called)).toBeLessThan(seen.indexOf(output));
      expect(output.seq).toBeGreaterThanOrEqual(called.seq);
    } finally {
      client.socket.offAny(listen);
    }
  });

  it('refuses the whole broadcast with limit_exceeded when one listener’s queue is full, as enqueue does', async () => {
    const sessionId = await startSession(client, newSessionId());
    const [first, full, last] = await team(sessionId, 'q', 3);
    for (const agentId of [first, full]) {
      await client.ok('async.sleepAgent', { sessionId, agentId });
    }
    for (let i = 0; i < MAX_QUEUE; i++) {
      await sendTask(sessionId, full, `backlog ${i}`);
    }
    const before = await historyOf(sessionId);

    const reply = await client.call('async.broadcastEvent', { sessionId, event: 'go' });

    expect(reply).toMatchObject({
      error: {
        data: { reason: 'limit_exceeded' },
        message: expect.stringContaining(`The queue of agent '${full}' is full (${MAX_QUEUE} items)`),
      },
    });
    await expect(historyOf(sessionId)).resolves.toEqual(before);
    const states = await statesOf(sessionId);
    expect(states[first]).toMatchObject({ state: 'sleeping', queue_size: 0 });
    expect(states[full]).toMatchObject({ state: 'sleeping', queue_size: MAX_QUEUE });
    expect(states[last]).toMatchObject({ queue_size: 0 });
  });

  it('wakes the sleepers of a session that are due together in one transaction, each once', async () => {
    const sessionId = await startSession(client, newSessionId());
    const agents = await team(sessionId, 't', 12);
    const lifecycle = sut.app.get(AgentLifecycleService);
    // What one wake-up statement woke is recorded once, whether it was merged with others or not.
    const recorded = jest.spyOn(lifecycle, 'recordWoken');
    try {
      const deadlines = new Set<string>();
      for (const agentId of agents) {
        const slept = await client.ok('async.sleepAgent', { sessionId, agentId, durationSeconds: 90 });
        deadlines.add(slept.sleepingUntil);
      }
      expect(deadlines.size).toBe(1); // the fake clock stood still: one deadline for all
      await clock.whenArmed(90_000);
      expect(clock.armed(90_000)).toBe(1);

      clock.advance(90_000);
      for (const agentId of agents) {
        await client.waitFor(
          'async.agent.stateChanged',
          (p) => p.sessionId === sessionId && p.agentId === agentId && p.previous === 'sleeping',
        );
      }
      const timerWakes = recorded.mock.calls.filter((c) => c[1] === sessionId && c[3] === 'timer');
      expect(timerWakes).toHaveLength(1);
      expect(timerWakes[0][2].map((w) => w.agentId).sort()).toEqual(agents);
      const woke = of('async.agent.stateChanged', sessionId).filter((p) => p.previous === 'sleeping');
      expect(woke).toHaveLength(agents.length);
      expect(woke.every((p) => p.reason === 'timer' && p.state === 'idle')).toBe(true);
      const states = await statesOf(sessionId);
      expect(agents.every((a) => states[a].sleeping_until === null)).toBe(true);
    } finally {
      recorded.mockRestore();
    }
  });
});

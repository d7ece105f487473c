import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { useAppWithClient } from '../support/app-with-client';

/**
 * Work queued for an idle agent with nothing else queued, on the node that runs its loop, is
 * claimed by the statement that queues it (WorkHandOff, ADR 0020): by the time the client has its
 * ack, the task is already running, and clients see what a queueing followed by a claim showed.
 */
describe('work handed to an idle agent by the statement that queues it', () => {
  const t = useAppWithClient();

  const HOLD = [
    // A task 'hold…' waits on the test's clock, so what the agent does meanwhile can be seen.
    { when: { match: '^hold' }, do: [{ reply: 'held {{prompt}}', delayMs: 1_000 }] },
    { when: {}, do: [{ reply: 'did {{prompt}}' }] },
  ];

  /** Waits until the app has armed a new clock timer (a scripted `delayMs` has begun) without moving time. */
  async function timerArmed(baseline: number): Promise<void> {
    for (let i = 0; i < 200_000 && t.app.clock.pending() <= baseline; i++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(t.app.clock.pending()).toBeGreaterThan(baseline);
  }

  const taskState = async (sessionId: string, taskId: string) =>
    (await t.client.ok<{ state: string }>('async.getTask', { sessionId, taskId })).state;

  it('runs a task sent to an idle agent from its ack on, and records its start after its queueing', async () => {
    const sessionId = await startSession(t.client, newSessionId('hand-off'));
    await createScripted(t.client, sessionId, 'worker', HOLD);
    const baseline = t.app.clock.pending();
    const sent = await t.client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'hold one' });
    expect(sent).toEqual({ taskId: expect.any(String), queued: true, queueSize: 1 });
    await expect(taskState(sessionId, sent.taskId)).resolves.toBe('running');
    const { agents } = await t.client.ok('async.getAgentStates', { sessionId });
    expect(agents.worker).toMatchObject({ state: 'active', current_task: 'task', queue_size: 0 });
    await timerArmed(baseline);
    t.app.clock.advance(1_000);
    await expect(t.client.waitForTaskEnd(sent.taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
    });

    const { events } = await t.client.ok('async.getHistory', { sessionId, after: 0, limit: 1000 });
    const story = (events as Array<{ type: string; payload: any }>)
      .filter((r) => r.payload.agentId === 'worker')
      .map((r) =>
        r.type === 'async.agent.stateChanged'
          ? `${String(r.payload.state)} (${String(r.payload.reason)})`
          : r.type,
      );
    expect(story.slice(story.indexOf('active (task)'))).toEqual([
      'active (task)',
      'async.task.started',
      'async.task.completed',
      'idle (task_done)',
    ]);
  });

  it('replies to the call before it pushes the start of the task it handed off, as when the start was a commit of its own', async () => {
    const sessionId = await startSession(t.client, newSessionId('hand-off'));
    await createScripted(t.client, sessionId, 'worker', [{ when: {}, do: [{ reply: 'at once' }] }]);
    const { taskId, seenBefore } = await new Promise<{ taskId: string; seenBefore: string[] }>((resolve) =>
      t.client.socket.emit(
        'async.sendTask',
        { sessionId, agentId: 'worker', prompt: 'go' },
        (reply: { result: { taskId: string } }) =>
          resolve({
            taskId: reply.result.taskId,
            // Read as the reply is handled: what came before it on the connection.
            seenBefore: t.client.pushes
              .filter(
                (p) =>
                  p.payload?.sessionId === sessionId &&
                  (p.payload?.taskId === reply.result.taskId || p.payload?.state === 'active'),
              )
              .map((p) => `${p.name} ${String(p.payload.state ?? '')}`),
          }),
      ),
    );
    expect(seenBefore).toEqual([]);
    await t.client.waitForTaskEnd(taskId);
    const after = t.client.pushes
      .filter((p) => p.payload?.sessionId === sessionId && p.payload?.taskId === taskId)
      .map((p) => p.name);
    expect(after[0]).toBe('async.task.started');
    expect(after.at(-1)).toBe('async.task.completed');
  });

  it('queues a task for an agent at work, which takes it when done with the one in hand', async () => {
    const sessionId = await startSession(t.client, newSessionId('hand-off'));
    await createScripted(t.client, sessionId, 'worker', HOLD);
    const baseline = t.app.clock.pending();
    const first = await t.client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'hold one' });
    await timerArmed(baseline);
    const second = await t.client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'two' });
    expect(second).toMatchObject({ queueSize: 1 });
    await expect(taskState(sessionId, first.taskId)).resolves.toBe('running');
    await expect(taskState(sessionId, second.taskId)).resolves.toBe('queued');
    t.app.clock.advance(1_000);
    await expect(t.client.waitForTaskEnd(second.taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
      payload: { result: { final: 'did two' } },
    });
  });

  it('hands mail to an idle agent at once, and leaves a sleeping agent’s task queued', async () => {
    const sessionId = await startSession(t.client, newSessionId('hand-off'));
    await createScripted(t.client, sessionId, 'reader', HOLD);
    await createScripted(t.client, sessionId, 'sleeper', HOLD);
    await t.client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper' });
    await t.client.ok('async.sendMail', { sessionId, to: 'reader', subject: 'hi', body: 'hold: read me' });
    const asleep = await t.client.ok('async.sendTask', { sessionId, agentId: 'sleeper', prompt: 'later' });
    const { agents } = await t.client.ok('async.getAgentStates', { sessionId });
    expect(agents.reader).toMatchObject({ state: 'active', current_task: 'mailbox_message' });
    expect(agents.sleeper).toMatchObject({ state: 'sleeping', queue_size: 1 });
    await expect(taskState(sessionId, asleep.taskId)).resolves.toBe('queued');
    await t.client.ok('async.wakeAgent', { sessionId, agentId: 'sleeper' });
    await expect(t.client.waitForTaskEnd(asleep.taskId)).resolves.toMatchObject({
      payload: { result: { final: 'did later' } },
    });
  });
});

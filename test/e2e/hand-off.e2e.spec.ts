import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

/**
 * Work queued for an idle agent with nothing else queued, on the node that runs its loop, is
 * claimed by the statement that queues it (WorkHandOff, ADR 0020): by the time the client has its
 * ack, the task is already running, and clients see what a queueing followed by a claim showed.
 */
describe('work handed to an idle agent by the statement that queues it', () => {
  let sut: TestApp;
  let client: TestClient;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  const HOLD = [
    // Each task waits on the test's clock, so what the agent does meanwhile can be seen.
    { when: {}, do: [{ reply: 'did {{prompt}}', delayMs: 1_000 }] },
  ];

  const taskState = async (sessionId: string, taskId: string) =>
    (await client.ok<{ state: string }>('async.getTask', { sessionId, taskId })).state;

  it('runs a task sent to an idle agent from its ack on, and records its start after its queueing', async () => {
    const sessionId = await startSession(client, newSessionId('hand-off'));
    await createScripted(client, sessionId, 'worker', HOLD);
    const sent = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'one' });
    expect(sent).toEqual({ taskId: expect.any(String), queued: true, queueSize: 1 });
    await expect(taskState(sessionId, sent.taskId)).resolves.toBe('running');
    const { agents } = await client.ok('async.getAgentStates', { sessionId });
    expect(agents.worker).toMatchObject({ state: 'active', current_task: 'task', queue_size: 0 });
    sut.clock.advance(1_000);
    await expect(client.waitForTaskEnd(sent.taskId)).resolves.toMatchObject({ name: 'async.task.completed' });

    const { events } = await client.ok('async.getHistory', { sessionId, after: 0, limit: 1000 });
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
    const sessionId = await startSession(client, newSessionId('hand-off'));
    await createScripted(client, sessionId, 'worker', [{ when: {}, do: [{ reply: 'at once' }] }]);
    const { taskId, seenBefore } = await new Promise<{ taskId: string; seenBefore: string[] }>((resolve) =>
      client.socket.emit(
        'async.sendTask',
        { sessionId, agentId: 'worker', prompt: 'go' },
        (reply: { result: { taskId: string } }) =>
          resolve({
            taskId: reply.result.taskId,
            // Read as the reply is handled: what came before it on the connection.
            seenBefore: client.pushes
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
    await client.waitForTaskEnd(taskId);
    const after = client.pushes
      .filter((p) => p.payload?.sessionId === sessionId && p.payload?.taskId === taskId)
      .map((p) => p.name);
    expect(after[0]).toBe('async.task.started');
    expect(after.at(-1)).toBe('async.task.completed');
  });

  it('queues a task for an agent at work, which takes it when done with the one in hand', async () => {
    const sessionId = await startSession(client, newSessionId('hand-off'));
    await createScripted(client, sessionId, 'worker', HOLD);
    const first = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'one' });
    const second = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'two' });
    expect(second).toMatchObject({ queueSize: 1 });
    await expect(taskState(sessionId, first.taskId)).resolves.toBe('running');
    await expect(taskState(sessionId, second.taskId)).resolves.toBe('queued');
    sut.clock.advance(1_000);
    await client.waitFor('async.task.started', (p) => p.taskId === second.taskId);
    sut.clock.advance(1_000);
    await expect(client.waitForTaskEnd(second.taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
      payload: { result: { final: 'did two' } },
    });
  });

  it('hands mail to an idle agent at once, and leaves a sleeping agent’s task queued', async () => {
    const sessionId = await startSession(client, newSessionId('hand-off'));
    await createScripted(client, sessionId, 'reader', HOLD);
    await createScripted(client, sessionId, 'sleeper', HOLD);
    await client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper' });
    await client.ok('async.sendMail', { sessionId, to: 'reader', subject: 'hi', body: 'read me' });
    const asleep = await client.ok('async.sendTask', { sessionId, agentId: 'sleeper', prompt: 'later' });
    const { agents } = await client.ok('async.getAgentStates', { sessionId });
    expect(agents.reader).toMatchObject({ state: 'active', current_task: 'mailbox_message' });
    expect(agents.sleeper).toMatchObject({ state: 'sleeping', queue_size: 1 });
    await expect(taskState(sessionId, asleep.taskId)).resolves.toBe('queued');
    await client.ok('async.wakeAgent', { sessionId, agentId: 'sleeper' });
    await client.waitFor('async.task.started', (p) => p.taskId === asleep.taskId);
    sut.clock.advance(1_000);
    await client.waitForTaskEnd(asleep.taskId);
  });
});

import { TaskOutputs } from 'src/agents/task-outputs.service';
import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { FakeOpenAI } from '../support/fake-openai';
import { sessionProbe } from '../support/session-probe';
import { startTestApp, TestApp } from '../support/test-app';

const ANSWER =
  'Streaming means the reader sees the answer grow as the model writes it, ' +
  'not all at once at the end; each piece is pushed, none is stored, and the final answer ' +
  'is the durable record of the task.';

/** Streamed model text, paced by a real (fake) model that pauses between its pieces. */
describe(TaskOutputs.name, () => {
  let fake: FakeOpenAI;
  let sut: TestApp;
  let client: TestClient;
  const { of, sendTask, completed } = sessionProbe(() => client);

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    sut = await startTestApp({
      systemClock: true,
      env: {
        MODEL_PROVIDER: 'openai',
        OPENAI_BASE_URL: fake.baseURL,
        OPENAI_API_KEY: 'test',
        OPENAI_MODEL: 'fake-model',
      },
    });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client?.close();
    await sut?.close();
    await fake?.close();
  });

  it('pushes text as the model produces it, in order, joined equal to the answer, and stores none of it', async () => {
    const sessionId = await startSession(client, newSessionId());
    await client.ok('async.createAgent', { sessionId, agentId: 'writer', template: 'assistant' });
    fake.enqueue({ text: ANSWER, pieceDelayMs: 15 });

    const { taskId } = await sendTask(sessionId, 'writer', 'Explain streaming');
    const second = await client.waitFor('async.task.output', (p) => p.taskId === taskId && p.index === 1);
    const running = await client.ok('async.getTask', { sessionId, taskId });
    const done = await completed(taskId);

    const pieces = of('async.task.output', sessionId, 'writer').filter((p) => p.taskId === taskId);
    expect(pieces.length).toBeGreaterThan(2);
    // The fake sends pieces of 3-8 characters; pushes are at most one per 50 ms, so fewer.
    expect(pieces.length).toBeLessThan(Math.ceil(ANSWER.length / 8));
    expect(pieces.map((p) => p.index)).toEqual(pieces.map((_, i) => i));
    expect(pieces.map((p) => p.delta).join('')).toBe(done.result.final);
    expect(done.result.final).toBe(ANSWER);
    expect(second.delta.length).toBeGreaterThan(0);

    // While it ran, getTask showed the text so far.
    expect(running.state).toBe('running');
    expect(ANSWER.startsWith(running.output)).toBe(true);
    expect(running.output.length).toBeGreaterThanOrEqual(pieces[0].delta.length + second.delta.length);

    // Each piece carries the seq of the latest record before it: here, the task's start.
    const { events } = await client.ok('async.getHistory', { sessionId });
    const startedSeq = events.find(
      (e: any) => e.type === 'async.task.started' && e.payload.taskId === taskId,
    ).seq;
    expect(new Set(pieces.map((p) => p.seq))).toEqual(new Set([startedSeq]));
    expect(events.filter((e: any) => e.type === 'async.task.output')).toEqual([]);

    const after = await client.ok('async.getTask', { sessionId, taskId });
    expect(after).toMatchObject({ state: 'done', result: { final: ANSWER } });
    expect(after.output).toBeUndefined();
  });

  it('pushes the text before a tool call ahead of the call, and numbers the pieces across model turns', async () => {
    const sessionId = await startSession(client, newSessionId());
    await client.ok('async.createAgent', { sessionId, agentId: 'caller', template: 'assistant' });
    fake.enqueue(
      { text: 'Let me look around first. ', toolCalls: [{ name: 'list_agents', arguments: '{}' }] },
      { text: 'Only me here.', pieceDelayMs: 5 },
    );

    const { taskId } = await sendTask(sessionId, 'caller', 'Who is here?');
    const done = await completed(taskId);

    const pieces = of('async.task.output', sessionId, 'caller').filter((p) => p.taskId === taskId);
    expect(pieces.map((p) => p.index)).toEqual(pieces.map((_, i) => i));
    expect(pieces.map((p) => p.delta).join('')).toBe('Let me look around first. Only me here.');
    expect(done.result.final).toBe('Only me here.');
    const call = of('async.tool.called', sessionId, 'caller')[0];
    const before = pieces
      .filter((p) => p.seq < call.seq)
      .map((p) => p.delta)
      .join('');
    expect(before).toBe('Let me look around first. ');
  });
});

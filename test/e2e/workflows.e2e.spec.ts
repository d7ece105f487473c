import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

describe("The guide's example workflows on their templates", () => {
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

  it('runs parallel analysis and report: analyzer → writer ⇄ reviewer → user', async () => {
    const sessionId = await startSession(client, newSessionId());
    for (const agentId of ['analyzer', 'writer', 'reviewer']) {
      const created = await client.ok('async.createAgent', { sessionId, agentId, autoStart: true });
      expect(created).toEqual({ agentId, state: 'idle', template: agentId });
    }

    const analysis = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'analyzer',
      prompt: 'Analyze customer sentiment from feedback.csv',
    });
    const prep = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'writer',
      prompt: 'Prepare report template for sentiment analysis',
    });
    expect(analysis).toMatchObject({ queued: true, queueSize: expect.any(Number) });

    const toUser = await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.to === 'user',
    );
    expect(toUser.message).toMatchObject({ from: 'writer', subject: 'Report approved' });
    expect(toUser.message.body).toContain('Approved');

    await expect(client.waitForTaskEnd(analysis.taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
    });
    await expect(client.waitForTaskEnd(prep.taskId)).resolves.toMatchObject({ name: 'async.task.completed' });
  });
});

import WebSocket from 'ws';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { Sample, scrape, sum } from '../support/prometheus';
import { startTestApp, TestApp } from '../support/test-app';

const mailHelper = [
  {
    when: { kind: 'task' },
    do: [
      { tool: 'send_mail', args: { to: 'helper', subject: 'Need data', body: 'numbers please' } },
      { reply: 'asked' },
    ],
  },
];

describe('GET /metrics', () => {
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

  it('serves the Prometheus text format, and the counters move with real work', async () => {
    const before = await scrape(sut.url);
    const delta = (after: Sample[], name: string, labels?: Record<string, string>) =>
      sum(after, name, labels) - sum(before, name, labels);

    const sessionId = await startSession(client, newSessionId('metrics'));
    await createScripted(client, sessionId, 'lead', mailHelper);
    await createScripted(client, sessionId, 'helper', replyAll('here'));
    await createScripted(
      client,
      sessionId,
      'short',
      [{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'x' }] }],
      {
        limits: { maxStepsPerTask: 1 },
      },
    );
    await createScripted(client, sessionId, 'sleeper', replyAll('awake'));
    await createScripted(client, sessionId, 'parked', replyAll('later'), {}, { autoStart: false });
    await client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper', wakeEvents: ['ping'] });
    for (const prompt of ['one', 'two']) {
      await client.ok('async.sendTask', { sessionId, agentId: 'parked', prompt });
    }

    const lead = await client.ok('async.sendTask', { sessionId, agentId: 'lead', prompt: 'go' });
    await expect(client.waitForTaskEnd(lead.taskId)).resolves.toMatchObject({ name: 'async.task.completed' });
    const mailTask = await client.waitFor(
      'async.task.started',
      (p) => p.sessionId === sessionId && p.agentId === 'helper',
    );
    await expect(client.waitForTaskEnd(mailTask.taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
    });
    const short = await client.ok('async.sendTask', { sessionId, agentId: 'short', prompt: 'go' });
    await expect(client.waitForTaskEnd(short.taskId)).resolves.toMatchObject({ name: 'async.task.failed' });
    await client.ok('async.broadcastEvent', { sessionId, event: 'ping' });
    const woken = await client.waitFor(
      'async.task.started',
      (p) => p.sessionId === sessionId && p.agentId === 'sleeper',
    );
    await client.waitForTaskEnd(woken.taskId);

    const ws = new WebSocket(`${sut.url.replace('http', 'ws')}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const after = await scrape(sut.url);
    ws.close();

    expect(delta(after, 'mailroom_tasks_started_total', { kind: 'task' })).toBe(2);
    expect(delta(after, 'mailroom_tasks_started_total', { kind: 'mailbox_message' })).toBe(1);
    expect(delta(after, 'mailroom_tasks_started_total', { kind: 'event' })).toBe(1);
    expect(delta(after, 'mailroom_tasks_completed_total', { kind: 'task' })).toBe(1);
    expect(delta(after, 'mailroom_tasks_completed_total', { kind: 'mailbox_message' })).toBe(1);
    expect(delta(after, 'mailroom_tasks_failed_total', { kind: 'task', code: 'limit_exceeded' })).toBe(1);
    expect(delta(after, 'mailroom_task_duration_seconds_count')).toBe(4);
    expect(delta(after, 'mailroom_task_duration_seconds_count', { outcome: 'failed' })).toBe(1);
    // lead: a tool step and a reply; helper, short (stopped by its limit after one) and sleeper: one each.
    expect(
      delta(after, 'mailroom_model_call_duration_seconds_count', { provider: 'scripted', model: 'scripted' }),
    ).toBe(5);
    expect(delta(after, 'mailroom_model_tokens_total', { type: 'input' })).toBeGreaterThan(0);
    expect(delta(after, 'mailroom_model_tokens_total', { type: 'output' })).toBeGreaterThan(0);
    expect(
      delta(after, 'mailroom_tool_call_duration_seconds_count', { tool: 'send_mail', outcome: 'ok' }),
    ).toBe(1);
    expect(delta(after, 'mailroom_wake_latency_seconds_count', { reason: 'event' })).toBe(1);
    expect(
      delta(after, 'mailroom_db_transaction_duration_seconds_count', { outcome: 'commit' }),
    ).toBeGreaterThan(10);

    expect(sum(after, 'mailroom_queue_depth')).toBe(2);
    expect(sum(after, 'mailroom_agents', { state: 'stopped' })).toBe(1);
    expect(sum(after, 'mailroom_agents')).toBe(5);
    expect(sum(after, 'mailroom_owned_agents')).toBeGreaterThanOrEqual(4);
    expect(sum(after, 'mailroom_connected_clients', { transport: 'socket.io' })).toBe(1);
    expect(sum(after, 'mailroom_connected_clients', { transport: 'ws' })).toBe(1);
    // The process metrics come along.
    expect(sum(after, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });
});

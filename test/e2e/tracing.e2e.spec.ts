import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';
import { parentId, recordSpans, spanId, traceId } from '../support/tracing';

const MARKER = 'PROMPT-MARKER-9d41';

describe('OpenTelemetry spans', () => {
  const spans = recordSpans();
  let sut: TestApp;
  let client: TestClient;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
    await spans.stop();
  });

  it('trace a two-agent mail workflow: work items, model calls, tool calls, transactions, linked across the mail', async () => {
    const sessionId = await startSession(client, newSessionId('traces'));
    await createScripted(client, sessionId, 'lead', [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail', args: { to: 'helper', subject: 'Need data', body: 'numbers please' } },
          { tool: 'no_such_tool' },
          { reply: 'asked' },
        ],
      },
    ]);
    await createScripted(client, sessionId, 'helper', replyAll('here'));

    const task = await client.ok('async.sendTask', { sessionId, agentId: 'lead', prompt: `go ${MARKER}` });
    const isItem = (agentId: string) => (s: ReadableSpan) =>
      s.name === `invoke_agent ${agentId}` && s.attributes['mailroom.session.id'] === sessionId;
    const lead = await spans.waitForSpan(isItem('lead'));
    const helper = await spans.waitForSpan(isItem('helper'));
    const all = spans.exporter.getFinishedSpans().filter((s) => traceId(s) === traceId(lead));
    const items = all.filter((s) => s.name.startsWith('invoke_agent')).map(spanId);
    expect(items.sort()).toEqual([spanId(lead), spanId(helper)].sort());
    const childrenOf = (parent: ReadableSpan) => all.filter((s) => parentId(s) === spanId(parent));

    // The client's call is the root; the task it queued continues its trace.
    const rpc = all.find((s) => spanId(s) === parentId(lead))!;
    expect(rpc).toMatchObject({
      name: 'rpc async.sendTask',
      kind: SpanKind.SERVER,
      attributes: { 'rpc.system': 'jsonrpc', 'rpc.method': 'async.sendTask' },
    });
    expect(parentId(rpc)).toBeUndefined();
    expect(childrenOf(rpc).map((s) => s.name)).toContain('db.transaction');
    expect(lead.kind).toBe(SpanKind.CONSUMER);
    expect(lead.attributes).toMatchObject({
      'gen_ai.operation.name': 'invoke_agent',
      'gen_ai.agent.name': 'lead',
      'mailroom.task.id': task.taskId,
      'mailroom.task.kind': 'task',
    });

    // Its model calls, by the GenAI semantic conventions.
    const calls = childrenOf(lead).filter((s) => s.name === 'chat scripted');
    expect(calls).toHaveLength(3);
    for (const call of calls) {
      expect(call.kind).toBe(SpanKind.CLIENT);
      expect(call.attributes).toMatchObject({
        'gen_ai.operation.name': 'chat',
        'gen_ai.system': 'scripted',
        'gen_ai.request.model': 'scripted',
        'gen_ai.usage.input_tokens': expect.any(Number),
        'gen_ai.usage.output_tokens': expect.any(Number),
      });
      expect(call.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
    }

    // Its tool calls; a refused one is an error span.
    const [sendMail] = childrenOf(lead).filter((s) => s.name === 'execute_tool send_mail');
    expect(sendMail.attributes).toMatchObject({
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': 'send_mail',
    });
    expect(sendMail.status.code).not.toBe(SpanStatusCode.ERROR);
    const [refused] = childrenOf(lead).filter((s) => s.name === 'execute_tool no_such_tool');
    expect(refused.status).toMatchObject({
      code: SpanStatusCode.ERROR,
      message: expect.stringContaining('unknown tool'),
    });

    // The transaction that queued the mail, under the tool call.
    expect(childrenOf(sendMail).map((s) => s.name)).toContain('db.transaction');
    expect(childrenOf(lead).filter((s) => s.name === 'db.transaction').length).toBeGreaterThan(0);
    // A loop's claim is no trace of its own: every transaction span belongs to a call or an item.
    const roots = spans.exporter.getFinishedSpans().filter((s) => parentId(s) === undefined);
    expect(new Set(roots.map((s) => s.name.split(' ')[0]))).toEqual(new Set(['rpc']));

    // Across the mailbox: the helper's item continues the trace as the child of the send_mail call.
    expect(traceId(helper)).toBe(traceId(lead));
    expect(parentId(helper)).toBe(spanId(sendMail));
    expect(helper.attributes).toMatchObject({
      'mailroom.task.kind': 'mailbox_message',
      'mailroom.mail.from': 'lead',
    });
    expect(childrenOf(helper).map((s) => s.name)).toContain('chat scripted');

    // Content stays out of spans.
    expect(JSON.stringify(all.map((s) => s.attributes))).not.toContain(MARKER);
    expect(lead.status.code).not.toBe(SpanStatusCode.ERROR);
  });

  it("mark a failed work item's span as an error with the failure's code", async () => {
    const sessionId = await startSession(client, newSessionId('traces'));
    await createScripted(
      client,
      sessionId,
      'short',
      [{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'x' }] }],
      {
        limits: { maxStepsPerTask: 1 },
      },
    );
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'short', prompt: 'go' });
    const item = await spans.waitForSpan((s) => s.attributes['mailroom.task.id'] === task.taskId);
    expect(item.status).toEqual({ code: SpanStatusCode.ERROR, message: 'limit_exceeded' });
  });
});

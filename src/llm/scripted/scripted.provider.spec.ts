import { FakeClock } from 'src/common/fake-clock';
import { ChatMessage, ModelChunk, ModelRequest, WorkContext } from '../model-provider';
import { Script, scriptSchema } from './script.schema';
import { NO_RULE_MATCHED, ScriptedProvider } from './scripted.provider';

/** A script as a template or `config.script` gives it: validated, with its defaults. */
const rules = (raw: unknown[]): Script => scriptSchema.parse(raw);

const task = (prompt: string): WorkContext => ({ agentId: 'a1', kind: 'task', prompt });

function request(
  script: Script,
  work: WorkContext,
  turn: ChatMessage[] = [],
  signal?: AbortSignal,
): ModelRequest {
  return {
    messages: [
      { role: 'system', content: 'system prompt' },
      // An earlier, finished work item: its tool calls must not count for this one.
      { role: 'user', content: 'earlier item' },
      { role: 'assistant', content: null, toolCalls: [{ id: 'old', name: 'send_mail', arguments: '{}' }] },
      { role: 'tool', toolCallId: 'old', name: 'send_mail', content: '{"messageId":"old"}' },
      { role: 'assistant', content: 'earlier answer' },
      { role: 'user', content: work.prompt },
      ...turn,
    ],
    tools: [],
    signal: signal ?? new AbortController().signal,
    work,
    script,
  };
}

async function collect(stream: AsyncIterable<ModelChunk>): Promise<ModelChunk[]> {
  const chunks: ModelChunk[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
  }
  return chunks;
}

/** The one text or tool call the provider answered with (usage aside). */
async function answer(sut: ScriptedProvider, req: ModelRequest) {
  const chunks = await collect(sut.stream(req));
  expect(chunks[chunks.length - 1]).toMatchObject({ type: 'usage' });
  const out = chunks.filter((c) => c.type !== 'usage');
  expect(out).toHaveLength(1);
  return out[0];
}

/** The conversation after the model called `tool` and got `result`. */
const afterTool = (tool: string, result: unknown, id = `call-${tool}`): ChatMessage[] => [
  { role: 'assistant', content: null, toolCalls: [{ id, name: tool, arguments: '{}' }] },
  { role: 'tool', toolCallId: id, name: tool, content: JSON.stringify(result) },
];

describe(ScriptedProvider.name, () => {
  let clock: FakeClock;
  let sut: ScriptedProvider;

  beforeEach(() => {
    clock = new FakeClock();
    sut = new ScriptedProvider(clock);
  });

  it('uses the first rule whose kind and match fit', async () => {
    const script = rules([
      { when: { kind: 'mailbox_message' }, do: [{ reply: 'mail rule' }] },
      { when: { kind: 'task', match: 'report$' }, do: [{ reply: 'report rule' }] },
      { when: { kind: 'task', match: 'report' }, do: [{ reply: 'second report rule' }] },
      { when: {}, do: [{ reply: 'catch-all for {{kind}}' }] },
    ]);
    await expect(answer(sut, request(script, task('Write the report')))).resolves.toEqual({
      type: 'text',
      delta: 'report rule',
    });
    await expect(answer(sut, request(script, task('report draft')))).resolves.toEqual({
      type: 'text',
      delta: 'second report rule',
    });
    await expect(
      answer(sut, request(script, { agentId: 'a1', kind: 'event', prompt: 'alert', event: 'alert' })),
    ).resolves.toEqual({ type: 'text', delta: 'catch-all for event' });
  });

  it('matches the regex case-insensitively against the prompt', async () => {
    const script = rules([{ when: { match: '^sentiment\\b' }, do: [{ reply: 'matched' }] }]);
    await expect(answer(sut, request(script, task('SENTIMENT of feedback')))).resolves.toEqual({
      type: 'text',
      delta: 'matched',
    });
    await expect(answer(sut, request(script, task('no sentiment here')))).resolves.toEqual({
      type: 'text',
      delta: NO_RULE_MATCHED,
    });
  });

  it('answers "(scripted) no rule matched" without a script or a matching rule', async () => {
    await expect(answer(sut, request([], task('anything')))).resolves.toEqual({
      type: 'text',
      delta: '(scripted) no rule matched',
    });
    await expect(answer(sut, { ...request([], task('anything')), script: undefined })).resolves.toEqual({
      type: 'text',
      delta: NO_RULE_MATCHED,
    });
  });

  it('takes one tool step per call, as far as the conversation of this item has got', async () => {
    const script = rules([
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail', args: { to: 'writer', subject: 'Results', body: 'For: {{prompt}}' } },
          { tool: 'check_mail', args: { note: '{{result.messageId}}' } },
          { reply: 'Sent {{result.count}} / {{prompt}}' },
        ],
      },
    ]);
    const work = task('feedback.csv');

    const first = await answer(sut, request(script, work));
    expect(first).toMatchObject({ type: 'tool_call', call: { name: 'send_mail' } });
    expect(first.type === 'tool_call' && JSON.parse(first.call.arguments)).toEqual({
      to: 'writer',
      subject: 'Results',
      body: 'For: feedback.csv',
    });

    const afterSend = afterTool('send_mail', { messageId: 'm-42' });
    const second = await answer(sut, request(script, work, afterSend));
    expect(second).toMatchObject({ type: 'tool_call', call: { name: 'check_mail' } });
    expect(second.type === 'tool_call' && JSON.parse(second.call.arguments)).toEqual({ note: 'm-42' });

    const afterCheck = [...afterSend, ...afterTool('check_mail', { messages: [], count: 0 })];
    await expect(answer(sut, request(script, work, afterCheck))).resolves.toEqual({
      type: 'text',
      delta: 'Sent 0 / feedback.csv',
    });
  });

  it('gives every tool call its own id', async () => {
    const script = rules([{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'done' }] }]);
    const a = await answer(sut, request(script, task('x')));
    const b = await answer(sut, request(script, task('x')));
    expect(a.type === 'tool_call' && b.type === 'tool_call' && a.call.id !== b.call.id).toBe(true);
  });

  it('ends with "(scripted) done" when a rule has no reply step left', async () => {
    const script = rules([{ when: {}, do: [{ tool: 'list_agents', args: {} }] }]);
    await expect(
      answer(sut, request(script, task('x'), afterTool('list_agents', { agents: [] }))),
    ).resolves.toEqual({ type: 'text', delta: '(scripted) done' });
  });

  it('reports usage of at least one completion token', async () => {
    const chunks = await collect(sut.stream(request(rules([{ when: {}, do: [{ reply: '' }] }]), task('x'))));
    expect(chunks).toEqual([
      { type: 'text', delta: '' },
      { type: 'usage', usage: { promptTokens: expect.any(Number), completionTokens: 1 } },
    ]);
    expect(chunks[1].type === 'usage' && chunks[1].usage.promptTokens).toBeGreaterThan(0);
  });

  it('waits delayMs on the clock before taking the step', async () => {
    const script = rules([{ when: {}, do: [{ reply: 'slow', delayMs: 1_000 }] }]);
    let settled = false;
    const pending = answer(sut, request(script, task('x'))).finally(() => (settled = true));

    await Promise.resolve();
    expect(clock.pending()).toBe(1);
    clock.advance(999);
    await Promise.resolve();
    expect(settled).toBe(false);
    clock.advance(1);
    await expect(pending).resolves.toEqual({ type: 'text', delta: 'slow' });
    expect(clock.pending()).toBe(0);
  });

  it('stops waiting when the request is aborted', async () => {
    const controller = new AbortController();
    const script = rules([{ when: {}, do: [{ reply: 'never', delayMs: 60_000 }] }]);
    const pending = collect(sut.stream(request(script, task('x'), [], controller.signal)));
    await Promise.resolve();
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(clock.pending()).toBe(0);
  });
});

import OpenAI from 'openai';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
} from 'openai/resources/chat/completions';
import { FakeOpenAI } from '../support/fake-openai';

/** Collects a rejection so several of its fields can be checked. */
async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

async function collect(stream: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const chunks: ChatCompletionChunk[] = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
  }
  return chunks;
}

/** What a provider does with the tool call deltas: merge them by index. */
function reassemble(chunks: ChatCompletionChunk[]) {
  const calls: Array<{ id?: string; name?: string; arguments: string }> = [];
  for (const chunk of chunks) {
    for (const delta of chunk.choices[0]?.delta.tool_calls ?? []) {
      const call = (calls[delta.index] ??= { arguments: '' });
      call.id ??= delta.id;
      call.name ??= delta.function?.name;
      call.arguments += delta.function?.arguments ?? '';
    }
  }
  return calls;
}

describe(FakeOpenAI.name, () => {
  let sut: FakeOpenAI;
  let client: OpenAI;

  const streaming = (patch: Partial<ChatCompletionCreateParamsStreaming> = {}) =>
    ({
      model: 'gpt-fake',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
      stream_options: { include_usage: true },
      ...patch,
    }) satisfies ChatCompletionCreateParamsStreaming;

  beforeEach(async () => {
    sut = await FakeOpenAI.start();
    client = new OpenAI({ apiKey: 'test', baseURL: sut.baseURL, maxRetries: 0 });
  });

  afterEach(() => sut.close());

  describe('streaming', () => {
    it('streams the text as several deltas that join to it, role first and stop last', async () => {
      const text = 'Hello there, this answer comes in many small pieces.';
      sut.enqueue({ text });

      const chunks = await collect(await client.chat.completions.create(streaming()));

      const withChoice = chunks.filter((c) => c.choices.length > 0);
      const contents = withChoice.map((c) => c.choices[0].delta.content ?? '').filter((s) => s !== '');
      expect(contents.join('')).toBe(text);
      expect(contents.length).toBeGreaterThan(3);
      expect(contents.every((piece) => piece.length <= 8)).toBe(true);
      expect(withChoice[0].choices[0].delta.role).toBe('assistant');
      expect(withChoice.at(-1)!.choices[0].finish_reason).toBe('stop');
      expect(withChoice.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
      expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'gpt-fake')).toBe(true);
    });

    it('streams tool calls in pieces that reassemble by index, malformed arguments kept as sent', async () => {
      sut.enqueue({
        toolCalls: [
          { id: 'call_a', name: 'send_mail', arguments: '{"to":"coder","subject":"Fix the build please"}' },
          { name: 'sleep', arguments: '{"seconds": 3' },
        ],
      });

      const chunks = await collect(await client.chat.completions.create(streaming()));

      const calls = reassemble(chunks);
      expect(calls).toEqual([
        { id: 'call_a', name: 'send_mail', arguments: '{"to":"coder","subject":"Fix the build please"}' },
        { id: expect.stringMatching(/^call_/), name: 'sleep', arguments: '{"seconds": 3' },
      ]);
      const argumentChunks = chunks.filter((c) => c.choices[0]?.delta.tool_calls?.[0].index === 0);
      expect(argumentChunks.length).toBeGreaterThan(3);
      expect(argumentChunks.filter((c) => c.choices[0].delta.tool_calls![0].id !== undefined)).toHaveLength(
        1,
      );
      const last = chunks.filter((c) => c.choices.length > 0).at(-1)!;
      expect(last.choices[0].finish_reason).toBe('tool_calls');
    });

    it('ends with a usage chunk without choices when include_usage is asked', async () => {
      sut.enqueue({ text: 'Counted.', usage: { prompt_tokens: 12, completion_tokens: 3 } });

      const chunks = await collect(await client.chat.completions.create(streaming()));

      expect(chunks.at(-1)).toMatchObject({
        choices: [],
        usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
      });
      expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    });

    it('computes a usage when none is scripted, and sends none when include_usage is not asked', async () => {
      sut.enqueue({ text: 'Some answer.' }, { text: 'Another answer.' });

      const counted = await collect(await client.chat.completions.create(streaming()));
      const uncounted = await collect(
        await client.chat.completions.create(streaming({ stream_options: undefined })),
      );

      expect(counted.at(-1)!.usage).toEqual({
        prompt_tokens: expect.any(Number),
        completion_tokens: expect.any(Number),
        total_tokens: expect.any(Number),
      });
      expect(counted.at(-1)!.usage!.completion_tokens).toBeGreaterThan(0);
      expect(uncounted.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
    });

    it('ends the stream with an error when the reply drops mid-stream', async () => {
      sut.enqueue({ text: 'This answer will never arrive in full, the socket dies.', dropMidStream: true });

      const chunks: ChatCompletionChunk[] = [];
      const stream = await client.chat.completions.create(streaming());
      const err = await caught(
        (async () => {
          for await (const chunk of stream) {
            chunks.push(chunk);
          }
        })(),
      );

      // undici's own error, not wrapped in an OpenAI error class (and from another realm under jest)
      expect(err).not.toBeInstanceOf(OpenAI.OpenAIError);
      expect(err).toMatchObject({
        name: 'TypeError',
        message: 'terminated',
        cause: { code: 'UND_ERR_SOCKET' },
      });
      expect(chunks.length).toBeGreaterThan(0);
      expect(chunks.some((c) => c.choices[0]?.finish_reason)).toBe(false);
      await sut.waitForIdle();
      expect(sut.requests[0].aborted).toBe(true);
    });

    it('holds a stalled stream open until the caller aborts, and the client then just stops iterating', async () => {
      sut.enqueue({
        text: 'This answer stops halfway and waits for the caller to give up.',
        stallMidStream: true,
      });
      const controller = new AbortController();
      const stream = await client.chat.completions.create(streaming(), { signal: controller.signal });

      const chunks: ChatCompletionChunk[] = [];
      for await (const chunk of stream) {
        chunks.push(chunk);
        if (chunks.length === 2) {
          controller.abort();
        }
      }

      // openai v6 swallows the AbortError inside the stream: the loop ends as if the answer were complete.
      expect(chunks.length).toBeGreaterThanOrEqual(2);
      expect(chunks.some((c) => c.choices[0]?.finish_reason)).toBe(false);
      await sut.waitForIdle();
      expect(sut.requests[0].aborted).toBe(true);
    });
  });

  describe('non-streaming', () => {
    it('answers a chat.completion body with the text, tool calls and usage', async () => {
      sut.enqueue({
        text: 'Calling a tool.',
        toolCalls: [{ id: 'call_1', name: 'read_mail', arguments: '{"limit":5}' }],
        usage: { prompt_tokens: 20, completion_tokens: 7 },
      });

      const completion = await client.chat.completions.create({
        model: 'gpt-fake',
        messages: [{ role: 'user', content: 'Check my mail' }],
      });

      expect(completion).toMatchObject({
        object: 'chat.completion',
        model: 'gpt-fake',
        choices: [
          {
            index: 0,
            finish_reason: 'tool_calls',
            message: {
              role: 'assistant',
              content: 'Calling a tool.',
              tool_calls: [
                { id: 'call_1', type: 'function', function: { name: 'read_mail', arguments: '{"limit":5}' } },
              ],
            },
          },
        ],
        usage: { prompt_tokens: 20, completion_tokens: 7, total_tokens: 27 },
      });
    });

    it('answers "(fake) ok" when nothing is queued and no handler is set', async () => {
      const completion = await client.chat.completions.create({
        model: 'gpt-fake',
        messages: [{ role: 'user', content: 'Anyone there?' }],
      });

      expect(completion.choices[0]).toMatchObject({
        finish_reason: 'stop',
        message: { role: 'assistant', content: '(fake) ok' },
      });
      expect(completion.choices[0].message.tool_calls).toBeUndefined();
    });
  });

  describe('requests', () => {
    it('records the body and headers the client sent', async () => {
      sut.enqueue({ text: 'ok' });

      await collect(
        await client.chat.completions.create(
          streaming({
            temperature: 0.2,
            max_tokens: 256,
            tools: [
              {
                type: 'function',
                function: { name: 'sleep', parameters: { type: 'object', properties: {} } },
              },
            ],
          }),
        ),
      );

      expect(sut.requests).toHaveLength(1);
      expect(sut.requests[0]).toMatchObject({
        method: 'POST',
        path: '/v1/chat/completions',
        headers: { authorization: 'Bearer test', 'content-type': 'application/json' },
        body: {
          model: 'gpt-fake',
          messages: [{ role: 'user', content: 'Hi' }],
          stream: true,
          stream_options: { include_usage: true },
          temperature: 0.2,
          max_tokens: 256,
          tools: [{ type: 'function', function: { name: 'sleep' } }],
        },
        aborted: false,
      });
      expect(sut.requests[0].headers['x-stainless-retry-count']).toBe('0');
    });

    it('serves /chat/completions without the /v1 prefix too', async () => {
      const bare = new OpenAI({ apiKey: 'test', baseURL: sut.baseURL.replace(/\/v1$/, ''), maxRetries: 0 });

      const completion = await bare.chat.completions.create({ model: 'm', messages: [] });

      expect(completion.choices[0].message.content).toBe('(fake) ok');
      expect(sut.requests[0].path).toBe('/chat/completions');
    });

    it('takes queued replies first, in order, then asks the handler', async () => {
      sut.enqueue({ text: 'first' }, { text: 'second' });
      sut.setHandler((req) => ({ text: `handled ${req.body.messages?.length} messages` }));
      const ask = async () =>
        (await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }))
          .choices[0].message.content;

      await expect(ask()).resolves.toBe('first');
      await expect(ask()).resolves.toBe('second');
      await expect(ask()).resolves.toBe('handled 1 messages');
    });

    it('counts concurrent requests in inFlight and keeps the peak in maxInFlight', async () => {
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      sut.setHandler(async () => {
        await gate;
        return { text: 'released' };
      });

      const calls = [1, 2, 3].map(() => client.chat.completions.create({ model: 'm', messages: [] }));
      await sut.waitForRequests(3);

      expect(sut.inFlight).toBe(3);
      expect(sut.maxInFlight).toBe(3);
      open();
      const answers = await Promise.all(calls);
      expect(answers.map((a) => a.choices[0].message.content)).toEqual(['released', 'released', 'released']);
      await sut.waitForIdle();
      expect(sut.inFlight).toBe(0);
      expect(sut.maxInFlight).toBe(3);
    });
  });

  describe('errors', () => {
    it('answers 429 with retry-after as an APIError the client does not retry', async () => {
      sut.enqueue({ status: 429, retryAfter: '7' });

      const err = await caught(client.chat.completions.create(streaming()));

      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      const apiError = err as InstanceType<typeof OpenAI.APIError>;
      expect(apiError.status).toBe(429);
      expect(apiError.headers?.get('retry-after')).toBe('7');
      expect(apiError.code).toBe('rate_limit_exceeded');
      expect(apiError.message).toMatch(/^429 /);
      expect(sut.requests).toHaveLength(1);
    });

    it('answers 500 as an InternalServerError', async () => {
      sut.enqueue({ status: 500 });

      const err = await caught(client.chat.completions.create({ model: 'm', messages: [] }));

      expect(err).toBeInstanceOf(OpenAI.InternalServerError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
      expect((err as InstanceType<typeof OpenAI.APIError>).type).toBe('server_error');
    });

    it('answers after a numeric hang', async () => {
      sut.enqueue({ text: 'late', hangMs: 20 });

      const completion = await client.chat.completions.create({ model: 'm', messages: [] });

      expect(completion.choices[0].message.content).toBe('late');
    });

    it('ends a forever hang when the caller aborts its signal', async () => {
      sut.enqueue({ hangMs: 'forever' });
      const controller = new AbortController();

      const call = client.chat.completions.create(streaming(), { signal: controller.signal });
      await sut.waitForRequests(1);
      controller.abort();

      await expect(call).rejects.toBeInstanceOf(OpenAI.APIUserAbortError);
      await sut.waitForIdle();
      expect(sut.requests[0].aborted).toBe(true);
    });

    it('ends a forever hang when the fake closes', async () => {
      sut.enqueue({ hangMs: 'forever' });

      const call = client.chat.completions.create(streaming());
      await sut.waitForRequests(1);
      await sut.close();

      await expect(call).rejects.toBeInstanceOf(OpenAI.APIConnectionError);
      expect(sut.inFlight).toBe(0);
    });
  });
});

import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OpenAiProvider } from 'src/llm/openai/openai.provider';
import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { FakeOpenAI, FakeReply, RecordedRequest } from '../support/fake-openai';
import { sessionProbe } from '../support/session-probe';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

const openAiEnv = (fake: FakeOpenAI, extra: Record<string, string> = {}): Record<string, string> => ({
  MODEL_PROVIDER: 'openai',
  OPENAI_BASE_URL: fake.baseURL,
  OPENAI_API_KEY: 'test',
  OPENAI_MODEL: 'fake-model',
  LLM_CONCURRENCY: '2',
  ...extra,
});

const messagesOf = (req: RecordedRequest) => req.body.messages ?? [];
const systemOf = (req: RecordedRequest): string => messagesOf(req)[0]?.content ?? '';
const lastOf = (req: RecordedRequest) => messagesOf(req).at(-1);

/** Harness shared by the suites: one client, helpers that filter pushes by session. */
function harness(get: () => { client: TestClient }) {
  const client = () => get().client;
  return {
    ...sessionProbe(client),
    /** An agent on the `assistant` template (every tool) whose model is the fake. */
    createAgent: (
      sessionId: string,
      agentId: string,
      config: Record<string, unknown> = {},
      extra: Record<string, unknown> = {},
    ) =>
      client().ok('async.createAgent', {
        sessionId,
        agentId,
        template: 'assistant',
        ...(Object.keys(config).length ? { config } : {}),
        ...extra,
      }),
  };
}

describe(OpenAiProvider.name, () => {
  describe('tool calls, streaming, budgets and request fields', () => {
    let fake: FakeOpenAI;
    let sut: TestApp;
    let client: TestClient;
    let templatesDir: string;
    const h = harness(() => ({ client }));

    beforeAll(async () => {
      fake = await FakeOpenAI.start();
      // The real templates, plus one that names its own model, temperature and maxTokens.
      templatesDir = mkdtempSync(join(tmpdir(), 'mailroom-templates-'));
      const real = join(__dirname, '..', '..', 'templates');
      for (const file of readdirSync(real).filter((f) => f.endsWith('.yaml'))) {
        copyFileSync(join(real, file), join(templatesDir, file));
      }
      writeFileSync(
        join(templatesDir, 'tuned.yaml'),
        [
          'name: tuned',
          'description: A template with its own model settings.',
          'systemPrompt: You are tuned.',
          'tools: [list_agents]',
          'model: tuned-model',
          'temperature: 0.25',
          'maxTokens: 321',
          '',
        ].join('\n'),
      );
      sut = await startTestApp({
        env: openAiEnv(fake, { CONVERSATION_WINDOW: '2', TEMPLATES_DIR: templatesDir }),
      });
      client = await TestClient.connect(sut.url);
    });

    afterEach(async () => {
      await fake.waitForIdle();
      fake.setHandler(() => ({ text: '(fake) ok' }));
    });

    afterAll(async () => {
      client.close();
      await sut.close();
      await fake.close();
      rmSync(templatesDir, { recursive: true, force: true });
    });

    describe('tool calls', () => {
      it('runs a tool call, sends its result back to the model, and completes with the next answer', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'alice');
        await h.createAgent(sessionId, 'bob', {}, { autoStart: false });
        const args = { to: 'bob', subject: 'Build', body: 'Please fix the build.' };
        fake.enqueue(
          { toolCalls: [{ id: 'call_mail_1', name: 'send_mail', arguments: JSON.stringify(args) }] },
          { text: 'Mailed bob about the build.' },
        );
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'alice', 'Ask bob to fix the build');

        await expect(h.completed(taskId)).resolves.toMatchObject({
          agentId: 'alice',
          result: { final: 'Mailed bob about the build.' },
        });
        expect(fake.requests).toHaveLength(first + 2);
        const [ask, answer] = fake.requests.slice(first);
        const toolCalled = h.of('async.tool.called', sessionId, 'alice');
        expect(toolCalled).toEqual([
          expect.objectContaining({
            taskId,
            tool: 'send_mail',
            args,
            result: { messageId: expect.any(String) },
          }),
        ]);
        expect(messagesOf(answer).slice(0, -2)).toEqual(messagesOf(ask));
        expect(messagesOf(answer).slice(-2)).toEqual([
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: 'call_mail_1',
                type: 'function',
                function: { name: 'send_mail', arguments: JSON.stringify(args) },
              },
            ],
          },
          {
            role: 'tool',
            tool_call_id: 'call_mail_1',
            content: JSON.stringify({ messageId: toolCalled[0].result.messageId }),
          },
        ]);
        const inbox = await client.ok('async.listMail', { sessionId, agentId: 'bob' });
        expect(inbox.messages).toEqual([
          expect.objectContaining({
            messageId: toolCalled[0].result.messageId,
            from: 'alice',
            to: 'bob',
            subject: 'Build',
          }),
        ]);
      });

      it("stores what Postgres cannot hold in a model's text (U+0000, unpaired surrogates) as U+FFFD, failing nothing", async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'alice');
        await h.createAgent(sessionId, 'bob', {}, { autoStart: false });
        const args = { to: 'bob', subject: 'Nul\u0000', body: 'a\u0000b \ud800' };
        fake.enqueue(
          { toolCalls: [{ id: 'call_nul_1', name: 'send_mail', arguments: JSON.stringify(args) }] },
          { text: 'done\u0000 \udc00' },
        );

        const { taskId } = await h.sendTask(sessionId, 'alice', 'Mail bob something odd');

        await expect(h.completed(taskId)).resolves.toMatchObject({ result: { final: 'done\uFFFD \uFFFD' } });
        const [called] = h.of('async.tool.called', sessionId, 'alice');
        expect(called).toMatchObject({
          args: { to: 'bob', subject: 'Nul\uFFFD', body: 'a\uFFFDb \uFFFD' },
          result: { messageId: expect.any(String) },
        });
        const inbox = await client.ok('async.listMail', { sessionId, agentId: 'bob' });
        expect(inbox.messages).toEqual([
          expect.objectContaining({ subject: 'Nul\uFFFD', body: 'a\uFFFDb \uFFFD', from: 'alice' }),
        ]);
        await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
          state: 'done',
          result: { final: 'done\uFFFD \uFFFD' },
        });
      });

      it("gives the model the agent's tools as function tools whose JSON Schema matches their args", async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'lister', { tools: ['send_mail', 'list_agents'] });
        fake.enqueue({ text: 'ok' });
        const first = fake.requests.length;

        await h.completed((await h.sendTask(sessionId, 'lister', 'Anything')).taskId);

        const { tools } = fake.requests[first].body;
        expect(tools?.map((t) => [t.type, t.function.name])).toEqual([
          ['function', 'send_mail'],
          ['function', 'list_agents'],
        ]);
        const [sendMail, listAgents] = tools!;
        expect(sendMail.function.description).toEqual(expect.stringContaining('mail'));
        expect(sendMail.function.parameters).toMatchObject({
          type: 'object',
          properties: {
            to: expect.any(Object),
            subject: { type: 'string' },
            body: { type: 'string' },
            priority: { enum: ['low', 'normal', 'high', 'urgent'] },
          },
          additionalProperties: false,
        });
        const required = (sendMail.function.parameters as { required: string[] }).required;
        expect([...required].sort()).toEqual(['body', 'subject', 'to']);
        expect(listAgents.function.parameters).toMatchObject({ type: 'object', properties: {} });
      });

      it('runs every tool call of one turn, and returns malformed arguments to the model as an error it corrects', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'alice');
        await h.createAgent(sessionId, 'bob', {}, { autoStart: false });
        const mail = (subject: string) => JSON.stringify({ to: 'bob', subject, body: 'hello' });
        fake.enqueue(
          {
            toolCalls: [
              { id: 'call_a', name: 'list_agents', arguments: '{}' },
              { id: 'call_b', name: 'send_mail', arguments: mail('First') },
            ],
          },
          { toolCalls: [{ id: 'call_c', name: 'send_mail', arguments: '{"to": "bob", "subject": ' }] },
          { toolCalls: [{ id: 'call_d', name: 'send_mail', arguments: mail('Second') }] },
          { text: 'Both mails sent.' },
        );
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'alice', 'Mail bob twice');

        await expect(h.completed(taskId)).resolves.toMatchObject({ result: { final: 'Both mails sent.' } });
        expect(fake.requests).toHaveLength(first + 4);
        const [, second, third] = fake.requests.slice(first);
        const results = messagesOf(second).slice(-2);
        expect(results).toEqual([
          { role: 'tool', tool_call_id: 'call_a', content: expect.stringContaining('"agentId":"bob"') },
          { role: 'tool', tool_call_id: 'call_b', content: expect.stringContaining('"messageId"') },
        ]);
        expect(lastOf(third)).toEqual({
          role: 'tool',
          tool_call_id: 'call_c',
          content: expect.stringContaining('arguments are not valid JSON'),
        });
        expect(JSON.parse(lastOf(third)!.content as string)).toEqual({ error: expect.any(String) });
        expect(h.of('async.tool.called', sessionId, 'alice').map((p) => p.tool)).toEqual([
          'list_agents',
          'send_mail',
          'send_mail',
          'send_mail',
        ]);
        const inbox = await client.ok('async.listMail', { sessionId, agentId: 'bob' });
        expect(inbox.messages.map((m: any) => m.subject).sort()).toEqual(['First', 'Second']);
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({
          alice: { state: 'idle', error_count: 0 },
        });
      });
    });

    describe('streaming', () => {
      it('pushes the streamed text as coalesced deltas that join to the final answer, and counts the usage', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'writer1');
        const text =
          'Summary: the build is green again.\n' +
          '- cause: a flaky test that depended on the wall clock and the time zone of the machine\n' +
          '- fix: the test now takes an injected clock and sets the zone explicitly, so it cannot drift\n' +
          'Nothing else is needed.';
        fake.enqueue({ text, usage: { prompt_tokens: 321, completion_tokens: 54 } });

        const { taskId } = await h.sendTask(sessionId, 'writer1', 'Report on the build');

        const done = await h.completed(taskId);
        expect(done).toMatchObject({
          result: { final: text },
          usage: { promptTokens: 321, completionTokens: 54 },
        });
        const deltas = h.of('async.task.output', sessionId, 'writer1').filter((p) => p.taskId === taskId);
        expect(deltas.map((p) => p.delta).join('')).toBe(text);
        // The fake sends pieces of at most 8 characters; the pushes gather them.
        expect(deltas.length).toBeGreaterThan(1);
        expect(deltas.length).toBeLessThan(Math.ceil(text.length / 8));
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({ writer1: { tokens_used: 375 } });
        const { sessions } = await client.ok('session.list', {});
        expect(sessions.find((s: any) => s.sessionId === sessionId)).toMatchObject({ tokensUsed: 375 });
        await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
          state: 'done',
          usage: { promptTokens: 321, completionTokens: 54 },
        });
      });

      it('asks for a streamed answer with usage, and adds up the usage of every call of a task', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'counter');
        fake.enqueue(
          {
            toolCalls: [{ name: 'list_agents', arguments: '{}' }],
            usage: { prompt_tokens: 100, completion_tokens: 7 },
          },
          { text: 'Counted.', usage: { prompt_tokens: 120, completion_tokens: 3 } },
        );
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'counter', 'Count');

        await expect(h.completed(taskId)).resolves.toMatchObject({
          usage: { promptTokens: 220, completionTokens: 10 },
        });
        for (const req of fake.requests.slice(first)) {
          expect(req.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
          expect(req.headers.authorization).toBe('Bearer test');
        }
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({ counter: { tokens_used: 230 } });
      });
    });

    describe('budgets', () => {
      /**
       * Two agents whose model mails the peer named in its system prompt on every work item, then
       * answers once the mail is sent: left alone, they would mail each other forever.
       */
      const pingPong = (usage = { prompt_tokens: 50, completion_tokens: 10 }) =>
        fake.setHandler((req): FakeReply => {
          const peer = /Peer: ([\w.-]+)\./.exec(systemOf(req))?.[1];
          if (!peer) {
            return { text: 'not in the game', usage };
          }
          if (lastOf(req)?.role === 'tool') {
            return { text: `mailed ${peer}`, usage };
          }
          const args = { to: peer, subject: 'Your turn', body: 'Ping!' };
          return { toolCalls: [{ name: 'send_mail', arguments: JSON.stringify(args) }], usage };
        });

      const createPair = async (sessionId: string, limits: Record<string, number>) => {
        for (const [agentId, peer] of [
          ['ping', 'pong'],
          ['pong', 'ping'],
        ]) {
          await h.createAgent(sessionId, agentId, {
            systemPrompt: `You play mail ping-pong. Peer: ${peer}.`,
            limits,
          });
        }
      };

      it('stops two agents that mail each other forever once their maxTokens is spent', async () => {
        const sessionId = await startSession(client, newSessionId());
        pingPong();
        // 60 tokens a call, 2 calls a work item: the third item takes each agent to 360 >= 300.
        await createPair(sessionId, { maxTokens: 300 });

        const { taskId } = await h.sendTask(sessionId, 'ping', 'Start the game');

        const stopped = (p: any) => p.state === 'stopped';
        await expect(h.stateChange(sessionId, 'ping', stopped)).resolves.toMatchObject({
          reason: 'limit_exceeded',
        });
        await expect(h.stateChange(sessionId, 'pong', stopped)).resolves.toMatchObject({
          reason: 'limit_exceeded',
        });
        await h.completed(taskId);
        expect(h.of('async.task.completed', sessionId, 'ping')).toHaveLength(3);
        expect(h.of('async.task.completed', sessionId, 'pong')).toHaveLength(3);
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({
          ping: { state: 'stopped', tokens_used: 360, queue_size: 1 },
          pong: { state: 'stopped', tokens_used: 360, queue_size: 0 },
        });
      });

      it('stops an agent that mails faster than maxMailPerMinute, which ends the ping-pong', async () => {
        const sessionId = await startSession(client, newSessionId());
        pingPong();
        await createPair(sessionId, { maxMailPerMinute: 3 });

        await h.sendTask(sessionId, 'ping', 'Start the game');

        await expect(h.stateChange(sessionId, 'ping', (p) => p.state === 'stopped')).resolves.toMatchObject({
          reason: 'limit_exceeded',
        });
        const failure = await client.waitFor(
          'async.task.failed',
          (p) => p.sessionId === sessionId && p.agentId === 'ping',
        );
        expect(failure.error).toEqual({
          code: 'limit_exceeded',
          message: expect.stringMatching(/mail rate/),
        });
        // pong's third item (the one whose mail ping could not answer) ends normally.
        await client.waitFor(
          'async.task.completed',
          (p) =>
            p.sessionId === sessionId &&
            p.agentId === 'pong' &&
            h.of('async.task.completed', sessionId, 'pong').length >= 3,
        );
        const states = await h.statesOf(sessionId);
        expect(states.ping).toMatchObject({ state: 'stopped' });
        expect(states.pong).toMatchObject({ state: 'idle', queue_size: 0 });
        const mail = await client.ok('async.listMail', { sessionId });
        expect(mail.messages).toHaveLength(6);
      });

      it('fails a task that passes maxTokensPerTask with limit_exceeded, and the agent stays up', async () => {
        const sessionId = await startSession(client, newSessionId());
        fake.setHandler(() => ({
          toolCalls: [{ name: 'list_agents', arguments: '{}' }],
          usage: { prompt_tokens: 50, completion_tokens: 10 },
        }));
        await h.createAgent(sessionId, 'spender', { limits: { maxTokensPerTask: 100 } });
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'spender', 'Spend');

        await expect(h.failed(taskId)).resolves.toMatchObject({
          error: { code: 'limit_exceeded', message: expect.stringContaining('100') },
        });
        expect(fake.requests).toHaveLength(first + 2);
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({
          spender: { state: 'idle', tokens_used: 120, error_count: 1 },
        });
      });

      it('fails a task that passes maxStepsPerTask with limit_exceeded after exactly that many model calls', async () => {
        const sessionId = await startSession(client, newSessionId());
        fake.setHandler(() => ({ toolCalls: [{ name: 'list_agents', arguments: '{}' }] }));
        await h.createAgent(sessionId, 'looper', { limits: { maxStepsPerTask: 3 } });
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'looper', 'Loop');

        await expect(h.failed(taskId)).resolves.toMatchObject({
          error: { code: 'limit_exceeded', message: expect.stringContaining('step limit') },
        });
        expect(fake.requests).toHaveLength(first + 3);
        expect(h.of('async.tool.called', sessionId, 'looper')).toHaveLength(3);
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({ looper: { state: 'idle' } });
      });
    });

    describe('request fields', () => {
      it("sends the template's model, temperature and maxTokens, which config overrides", async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'plain');
        await client.ok('async.createAgent', { sessionId, agentId: 'tuned' });
        await client.ok('async.createAgent', {
          sessionId,
          agentId: 'custom',
          template: 'tuned',
          config: { model: 'custom-model', temperature: 0.9, maxTokens: 77 },
        });

        const bodies: Record<string, RecordedRequest['body']> = {};
        for (const agentId of ['plain', 'tuned', 'custom']) {
          const first = fake.requests.length;
          await h.completed((await h.sendTask(sessionId, agentId, 'Hello')).taskId);
          bodies[agentId] = fake.requests[first].body;
        }

        expect(bodies.plain.model).toBe('fake-model');
        expect(bodies.plain).not.toHaveProperty('temperature');
        expect(bodies.plain).not.toHaveProperty('max_tokens');
        expect(bodies.tuned).toMatchObject({ model: 'tuned-model', temperature: 0.25, max_tokens: 321 });
        expect(bodies.custom).toMatchObject({ model: 'custom-model', temperature: 0.9, max_tokens: 77 });
        expect(bodies.tuned.messages?.[0]).toEqual({ role: 'system', content: 'You are tuned.' });
      });

      it('sends an earlier empty answer back as empty text, never as a null content without tool calls', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'terse');
        fake.enqueue({ text: '' }, { text: 'Now with words.' });
        const first = fake.requests.length;

        await expect(
          h.completed((await h.sendTask(sessionId, 'terse', 'Say nothing')).taskId),
        ).resolves.toMatchObject({ result: { final: '' } });
        await h.completed((await h.sendTask(sessionId, 'terse', 'Say something')).taskId);

        // Chat Completions requires an assistant message's content unless it has tool_calls.
        expect(messagesOf(fake.requests[first + 1]).slice(1)).toEqual([
          { role: 'user', content: 'Say nothing' },
          { role: 'assistant', content: '' },
          { role: 'user', content: 'Say something' },
        ]);
      });

      it('keeps the system prompt first when the conversation window drops older turns', async () => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'forgetful', { systemPrompt: 'You are forgetful.' });
        const first = fake.requests.length;
        fake.enqueue({ text: 'one' }, { text: 'two' }, { text: 'three' });

        for (const prompt of ['Task one', 'Task two', 'Task three']) {
          await h.completed((await h.sendTask(sessionId, 'forgetful', prompt)).taskId);
        }

        const [one, two, three] = fake.requests.slice(first);
        expect(messagesOf(one)).toEqual([
          { role: 'system', content: 'You are forgetful.' },
          { role: 'user', content: 'Task one' },
        ]);
        expect(messagesOf(two)).toEqual([
          { role: 'system', content: 'You are forgetful.' },
          { role: 'user', content: 'Task one' },
          { role: 'assistant', content: 'one' },
          { role: 'user', content: 'Task two' },
        ]);
        // CONVERSATION_WINDOW=2: the first task's turns are gone, the system prompt is not.
        expect(messagesOf(three)).toEqual([
          { role: 'system', content: 'You are forgetful.' },
          { role: 'user', content: 'Task two' },
          { role: 'assistant', content: 'two' },
          { role: 'user', content: 'Task three' },
        ]);
      });
    });
  });

  describe('retries, backoff and timeouts on the injected clock', () => {
    const BASE_MS = 1_000;
    const TIMEOUT_MS = 30_000;
    let fake: FakeOpenAI;
    let sut: TestApp;
    let clock: ArmedTimersClock;
    let client: TestClient;
    const h = harness(() => ({ client }));

    beforeAll(async () => {
      fake = await FakeOpenAI.start();
      clock = new ArmedTimersClock();
      sut = await startTestApp({
        clock,
        env: openAiEnv(fake, {
          LLM_MAX_RETRIES: '2',
          LLM_RETRY_BASE_MS: String(BASE_MS),
          LLM_TIMEOUT_MS: String(TIMEOUT_MS),
        }),
      });
      client = await TestClient.connect(sut.url);
    });

    afterEach(() => fake.waitForIdle());

    afterAll(async () => {
      client.close();
      await sut.close();
      await fake.close();
    });

    it('waits out retry-after on the clock, backs off after a 500, and then completes', async () => {
      const sessionId = await startSession(client, newSessionId());
      await h.createAgent(sessionId, 'patient');
      fake.enqueue({ status: 429, retryAfter: '2' }, { status: 500 }, { text: 'Third time lucky.' });
      const first = fake.requests.length;

      const { taskId } = await h.sendTask(sessionId, 'patient', 'Try hard');

      await clock.whenArmed(2_000);
      expect(fake.requests).toHaveLength(first + 1);
      clock.advance(1_999);
      expect(clock.armed(2_000)).toBe(1);
      expect(fake.requests).toHaveLength(first + 1);
      clock.advance(1);
      await fake.waitForRequests(first + 2);
      // The second failure has no retry-after: equal-jitter backoff, within [base, 2 * base] for retry 2.
      const backoff = await clock.armedWithin(BASE_MS, 2 * BASE_MS);
      expect(fake.requests).toHaveLength(first + 2);
      clock.advance(backoff);

      await expect(h.completed(taskId)).resolves.toMatchObject({ result: { final: 'Third time lucky.' } });
      expect(fake.requests).toHaveLength(first + 3);
      // Our retries, not the client's: every request is the client's first try.
      expect(fake.requests.slice(first).map((r) => r.headers['x-stainless-retry-count'])).toEqual([
        '0',
        '0',
        '0',
      ]);
      expect(h.of('async.task.failed', sessionId)).toEqual([]);
    });

    it("fails with 'unavailable' once the retries run out, and the agent's next task still runs", async () => {
      const sessionId = await startSession(client, newSessionId());
      await h.createAgent(sessionId, 'unlucky');
      fake.enqueue({ status: 503 }, { status: 503 }, { status: 503 });
      const first = fake.requests.length;

      const { taskId } = await h.sendTask(sessionId, 'unlucky', 'Try');

      // Exponential backoff with jitter: retry 1 waits base/2..base, retry 2 waits base..2*base.
      await fake.waitForRequests(first + 1);
      clock.advance(await clock.armedWithin(BASE_MS / 2, BASE_MS));
      await fake.waitForRequests(first + 2);
      clock.advance(await clock.armedWithin(BASE_MS, 2 * BASE_MS));
      const failure = await h.failed(taskId);
      expect(failure).toMatchObject({ error: { code: 'unavailable' }, errorCount: 1 });
      expect(failure.error.message).toMatch(/after 3 attempts/);
      expect(failure.error.message).toMatch(/503/);
      expect(fake.requests).toHaveLength(first + 3);
      await expect(h.statesOf(sessionId)).resolves.toMatchObject({
        unlucky: { state: 'idle', error_count: 1, last_error: failure.error.message },
      });

      fake.enqueue({ text: 'Back in business.' });
      const next = await h.sendTask(sessionId, 'unlucky', 'Try again');
      await expect(h.completed(next.taskId)).resolves.toMatchObject({
        result: { final: 'Back in business.' },
      });
    });

    it.each([400, 401])(
      "fails a %d at once with 'model_error', after exactly one request",
      async (status) => {
        const sessionId = await startSession(client, newSessionId());
        await h.createAgent(sessionId, 'refused');
        fake.enqueue({ status });
        const first = fake.requests.length;

        const { taskId } = await h.sendTask(sessionId, 'refused', 'Anything');

        const failure = await h.failed(taskId);
        expect(failure.error).toEqual({
          code: 'model_error',
          message: expect.stringContaining(String(status)),
        });
        expect(fake.requests).toHaveLength(first + 1);
        await expect(h.statesOf(sessionId)).resolves.toMatchObject({ refused: { state: 'idle' } });
      },
    );

    it('abandons an answer that does not come within LLM_TIMEOUT_MS on the clock, and retries', async () => {
      const sessionId = await startSession(client, newSessionId());
      await h.createAgent(sessionId, 'waiter');
      fake.enqueue({ hangMs: 'forever' }, { text: 'Sorry for the wait.' });
      const first = fake.requests.length;

      const { taskId } = await h.sendTask(sessionId, 'waiter', 'Answer slowly');

      await fake.waitForRequests(first + 1);
      await clock.whenArmed(TIMEOUT_MS);
      clock.advance(TIMEOUT_MS - 1);
      expect(clock.armed(TIMEOUT_MS)).toBe(1);
      expect(fake.inFlight).toBe(1);
      clock.advance(1);
      clock.advance(await clock.armedWithin(BASE_MS / 2, BASE_MS));

      await expect(h.completed(taskId)).resolves.toMatchObject({ result: { final: 'Sorry for the wait.' } });
      expect(fake.requests).toHaveLength(first + 2);
      await fake.waitForIdle();
      expect(fake.requests[first].aborted).toBe(true);
      expect(fake.requests[first + 1].aborted).toBe(false);
    });
    it("gives up with 'unavailable' when a stream stalls after text went out, without repeating it", async () => {
      const sessionId = await startSession(client, newSessionId());
      await h.createAgent(sessionId, 'staller');
      // The second piece holds a newline, so the first output push goes out before the stall.
      const text = 'Hi.\nthen a long answer that stops halfway through and never comes back to finish.';
      fake.enqueue({ text, stallMidStream: true });
      const first = fake.requests.length;

      const { taskId } = await h.sendTask(sessionId, 'staller', 'Start talking');

      const output = await client.waitFor(
        'async.task.output',
        (p) => p.sessionId === sessionId && p.taskId === taskId,
      );
      expect(text.startsWith(output.delta)).toBe(true);
      await clock.advanceWhenArmed(TIMEOUT_MS);

      const failure = await h.failed(taskId);
      expect(failure.error).toEqual({ code: 'unavailable', message: expect.stringMatching(/broke off/) });
      expect(fake.requests).toHaveLength(first + 1);
    });
  });

  describe('LLM_CONCURRENCY', () => {
    let fake: FakeOpenAI;
    let sut: TestApp;
    let client: TestClient;
    const h = harness(() => ({ client }));

    beforeAll(async () => {
      fake = await FakeOpenAI.start();
      sut = await startTestApp({ env: openAiEnv(fake, { LLM_CONCURRENCY: '2' }) });
      client = await TestClient.connect(sut.url);
    });

    afterAll(async () => {
      client.close();
      await sut.close();
      await fake.close();
    });

    it('keeps at most LLM_CONCURRENCY model calls in flight across agents, and runs them all', async () => {
      const sessionId = await startSession(client, newSessionId());
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      fake.setHandler(async (req) => {
        await gate;
        return { text: `done: ${String(lastOf(req)?.content)}` };
      });
      const agentIds = ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'];
      for (const agentId of agentIds) {
        await h.createAgent(sessionId, agentId);
      }

      const tasks = [];
      for (const agentId of agentIds) {
        tasks.push({ agentId, ...(await h.sendTask(sessionId, agentId, `work of ${agentId}`)) });
      }

      await fake.waitForRequests(2);
      // Every agent has taken its task; only two of them hold a model call.
      await client.waitFor(
        'async.task.started',
        (p) => p.sessionId === sessionId && h.of('async.task.started', sessionId).length >= 6,
      );
      expect(fake.inFlight).toBe(2);
      expect(fake.requests).toHaveLength(2);
      await expect(h.statesOf(sessionId)).resolves.toEqual(
        Object.fromEntries(agentIds.map((id) => [id, expect.objectContaining({ state: 'active' })])),
      );

      release();
      for (const { agentId, taskId } of tasks) {
        await expect(h.completed(taskId)).resolves.toMatchObject({
          agentId,
          result: { final: `done: work of ${agentId}` },
        });
      }
      expect(fake.requests).toHaveLength(6);
      expect(fake.maxInFlight).toBe(2);
    });

    it('makes no model call for an agent stopped while it waits for a slot; its task runs after startAgent', async () => {
      const sessionId = await startSession(client, newSessionId());
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      fake.setHandler(async (req) => {
        await gate;
        return { text: `done: ${String(lastOf(req)?.content)}` };
      });
      const first = fake.requests.length;
      const agentIds = ['busy1', 'busy2', 'queued'];
      for (const agentId of agentIds) {
        await h.createAgent(sessionId, agentId);
      }
      const tasks: Record<string, string> = {};
      for (const agentId of agentIds) {
        tasks[agentId] = (await h.sendTask(sessionId, agentId, `work of ${agentId}`)).taskId;
      }
      await fake.waitForRequests(first + 2);
      await client.waitFor('async.task.started', (p) => p.sessionId === sessionId && p.agentId === 'queued');

      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'queued' })).resolves.toMatchObject({
        state: 'stopped',
      });
      release();
      await h.completed(tasks.busy1);
      await h.completed(tasks.busy2);
      await client.ok('async.startAgent', { sessionId, agentId: 'queued' });

      await expect(h.completed(tasks.queued)).resolves.toMatchObject({
        result: { final: 'done: work of queued' },
      });
      const asked = fake.requests.slice(first).filter((r) => lastOf(r)?.content === 'work of queued');
      expect(asked).toHaveLength(1);
    });
  });
});

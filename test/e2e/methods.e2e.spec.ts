import { randomUUID } from 'node:crypto';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { RpcErrorBody, TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

/** docs/protocol.md's error table, written out here so the test does not trust the server's own copy. */
const CODES = {
  method_not_found: -32601,
  invalid_params: -32602,
  session_not_found: -32002,
  agent_not_found: -32003,
  conflict: -32004,
  limit_exceeded: -32005,
} as const;
type Reason = keyof typeof CODES;

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const ID = /^[A-Za-z0-9_.-]{1,64}$/;
const NOTIFICATIONS = [
  'async.agent.stateChanged',
  'async.task.started',
  'async.task.output',
  'async.task.completed',
  'async.task.failed',
  'async.mail.sent',
  'async.event.broadcast',
  'async.tool.called',
];
const TEMPLATE_NAMES = [
  'analyzer',
  'assistant',
  'coder',
  'feedback-analyzer',
  'integrator',
  'monitor',
  'planner',
  'reviewer',
  'writer',
];
const AGENT_STATE_FIELDS = [
  'current_task',
  'error_count',
  'last_active_at',
  'last_error',
  'queue_size',
  'sleeping_until',
  'state',
  'template',
  'tokens_used',
  'wake_events',
];
const MAIL_FIELDS = [
  'body',
  'createdAt',
  'from',
  'hops',
  'messageId',
  'priority',
  'readAt',
  'replyTo',
  'sessionId',
  'status',
  'subject',
  'threadId',
  'to',
];

const sorted = (xs: readonly string[]) => [...xs].sort();

describe('Every client method over socket.io', () => {
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

  const now = () => new Date(sut.clock.now()).toISOString();

  /**
   * Calls `method`, expects the protocol error `reason` (code and data.reason), and checks the
   * server still answers a good request afterwards. With `paths`, `data.issues` names exactly those params.
   */
  async function rejects(
    method: string,
    params: unknown,
    reason: Reason,
    paths?: string[],
  ): Promise<RpcErrorBody> {
    const error = await client.fails(method, params);
    expect(error).toMatchObject({ code: CODES[reason], message: expect.any(String), data: { reason } });
    if (paths) {
      expect(sorted((error.data.issues ?? []).map((i) => i.path))).toEqual(sorted(paths));
      for (const issue of error.data.issues ?? []) {
        expect(issue.message).toEqual(expect.any(String));
      }
    }
    await expect(client.ok('templates.list', {})).resolves.toHaveProperty('templates');
    return error;
  }

  /** The push `name` of this session for which `match` holds. */
  const push = (sessionId: string, name: string | string[], match: (p: any) => boolean = () => true) =>
    client.waitFor(name, (p) => p.sessionId === sessionId && match(p));

  const pushesOf = (sessionId: string, name: string) =>
    client.of(name).filter((p) => p.sessionId === sessionId);

  const task = (sessionId: string, agentId: string, prompt: string, extra: Record<string, unknown> = {}) =>
    client.ok('async.sendTask', { sessionId, agentId, prompt, ...extra });

  const states = async (sessionId: string) =>
    (await client.ok('async.getAgentStates', { sessionId })).agents as Record<string, any>;

  /** Waits until the app has armed a new clock timer (a scripted `delayMs` has begun) without moving time. */
  async function timerArmed(baseline: number): Promise<void> {
    for (let i = 0; i < 200_000 && sut.clock.pending() <= baseline; i++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(sut.clock.pending()).toBeGreaterThan(baseline);
  }

  describe('session.start', () => {
    it('creates a session with a random id when none is given', async () => {
      const first = await client.ok('session.start', {});
      const second = await client.ok('session.start');
      expect(first).toEqual({ sessionId: expect.stringMatching(ID), createdAt: now() });
      expect(second.sessionId).toMatch(ID);
      expect(second.sessionId).not.toEqual(first.sessionId);
      const { sessions } = await client.ok('session.list', {});
      expect(sessions).toContainEqual({
        sessionId: first.sessionId,
        createdAt: first.createdAt,
        agentCount: 0,
        tokensUsed: 0,
      });
    });

    it('is idempotent: starting an existing session returns it unchanged, agents kept', async () => {
      const sessionId = newSessionId();
      const first = await client.ok('session.start', { sessionId, metadata: { owner: 'ops', n: 1 } });
      expect(first).toEqual({ sessionId, createdAt: now() });
      await client.ok('async.createAgent', { sessionId, agentId: 'keeper' });
      sut.clock.advance(5_000);

      const again = await client.ok('session.start', { sessionId, metadata: { owner: 'someone else' } });
      expect(again).toEqual(first);
      const { sessions } = await client.ok('session.list', {});
      expect(sessions.filter((s: any) => s.sessionId === sessionId)).toEqual([
        { sessionId, createdAt: first.createdAt, agentCount: 1, tokensUsed: expect.any(Number) },
      ]);
    });

    it('subscribes the calling socket, also when the session already existed', async () => {
      const sessionId = await startSession(client, newSessionId());
      const other = await TestClient.connect(sut.url);
      try {
        await other.ok('session.start', { sessionId });
        await client.ok('async.createAgent', { sessionId, agentId: 'a1' });
        await expect(
          other.waitFor('async.agent.stateChanged', (p) => p.sessionId === sessionId && p.agentId === 'a1'),
        ).resolves.toMatchObject({ state: 'idle', previous: null, reason: 'created' });
      } finally {
        other.close();
      }
    });

    it('accepts metadata and session limits, and rejects malformed ones', async () => {
      await expect(
        client.ok('session.start', {
          sessionId: newSessionId(),
          metadata: { team: 'a', nested: { deep: [1, 2] } },
          limits: { maxTokens: 1000 },
        }),
      ).resolves.toEqual({ sessionId: expect.any(String), createdAt: expect.stringMatching(ISO) });
      await rejects('session.start', { sessionId: newSessionId(), metadata: 'text' }, 'invalid_params', [
        'metadata',
      ]);
      await rejects('session.start', { metadata: [1, 2] }, 'invalid_params', ['metadata']);
      await rejects('session.start', { limits: { maxTokens: 0 } }, 'invalid_params', ['limits.maxTokens']);
      await rejects('session.start', { sessionId: 'has space' }, 'invalid_params', ['sessionId']);
      await rejects('session.start', { sessionId: 'x'.repeat(65) }, 'invalid_params', ['sessionId']);
      await rejects('session.start', { sessionId: '' }, 'invalid_params', ['sessionId']);
    });
  });

  describe('session.subscribe', () => {
    it('delivers the session to a second connection, and only the sessions it subscribed to', async () => {
      const watched = await startSession(client, newSessionId());
      const unwatched = await startSession(client, newSessionId());
      const other = await TestClient.connect(sut.url);
      try {
        await expect(other.ok('session.subscribe', { sessionId: watched })).resolves.toEqual({
          sessionId: watched,
        });
        // Calling async.* methods on a session does not subscribe (decision 9).
        await other.ok('async.createAgent', { sessionId: unwatched, agentId: 'quiet' });
        await other.ok('async.getAgentStates', { sessionId: unwatched });
        await client.ok('async.createAgent', { sessionId: watched, agentId: 'loud' });

        await expect(
          other.waitFor('async.agent.stateChanged', (p) => p.sessionId === watched),
        ).resolves.toMatchObject({ agentId: 'loud', state: 'idle' });
        // One connection's pushes arrive in order: had `unwatched` been pushed, it would be here already.
        expect(other.pushes.filter((p) => p.payload?.sessionId === unwatched)).toEqual([]);
      } finally {
        other.close();
      }
    });

    it('rejects an unknown session with session_not_found', async () => {
      await rejects('session.subscribe', { sessionId: newSessionId('ghost') }, 'session_not_found');
      await rejects('session.subscribe', {}, 'invalid_params', ['sessionId']);
    });
  });

  describe('session.list', () => {
    it('lists each session with its createdAt and agentCount', async () => {
      const sessionId = newSessionId();
      const { createdAt } = await client.ok('session.start', { sessionId });
      const entry = async () =>
        ((await client.ok('session.list', {})).sessions as any[]).find((s) => s.sessionId === sessionId);

      await expect(entry()).resolves.toEqual({ sessionId, createdAt, agentCount: 0, tokensUsed: 0 });
      await client.ok('async.createAgent', { sessionId, agentId: 'one' });
      await client.ok('async.createAgent', { sessionId, agentId: 'two', autoStart: false });
      await expect(entry()).resolves.toEqual({ sessionId, createdAt, agentCount: 2, tokensUsed: 0 });
      await rejects('session.list', { sessionId }, 'invalid_params', ['sessionId']);
    });
  });

  describe('session.stop', () => {
    it('stops every agent and leaves the history, states and mail readable', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'busy', replyAll('ok'));
      await createScripted(client, sessionId, 'dozy', replyAll('ok'));
      await createScripted(client, sessionId, 'off', replyAll('ok'), {}, { autoStart: false });
      await client.ok('async.sleepAgent', { sessionId, agentId: 'dozy' });
      const { messageId } = await client.ok('async.sendMail', {
        sessionId,
        to: 'off',
        subject: 'hi',
        body: 'there',
      });

      await expect(client.ok('session.stop', { sessionId })).resolves.toEqual({ sessionId, stopped: true });

      const agents = await states(sessionId);
      expect(Object.fromEntries(Object.entries(agents).map(([id, s]) => [id, s.state]))).toEqual({
        busy: 'stopped',
        dozy: 'stopped',
        off: 'stopped',
      });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.agentId === 'busy' && p.state === 'stopped'),
      ).resolves.toMatchObject({ previous: 'idle' });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.agentId === 'dozy' && p.state === 'stopped'),
      ).resolves.toMatchObject({ previous: 'sleeping' });
      const { events } = await client.ok('async.getHistory', { sessionId });
      expect(
        events.filter((e: any) => e.payload.state === 'stopped').map((e: any) => e.payload.agentId),
      ).toEqual(expect.arrayContaining(['busy', 'dozy', 'off']));
      const mail = await client.ok('async.listMail', { sessionId });
      expect(mail.messages.map((m: any) => m.messageId)).toEqual([messageId]);
      // Stopping twice is harmless.
      await expect(client.ok('session.stop', { sessionId })).resolves.toEqual({ sessionId, stopped: true });
    });
  });

  describe('async.createAgent', () => {
    it('picks the template named like the agent, without trailing digits, else assistant', async () => {
      const sessionId = await startSession(client, newSessionId());
      const cases: Array<[string, string]> = [
        ['writer', 'writer'],
        ['monitor', 'monitor'],
        ['coder1', 'coder'],
        ['coder-2', 'coder'],
        ['somebody', 'assistant'],
      ];
      for (const [agentId, template] of cases) {
        await expect(client.ok('async.createAgent', { sessionId, agentId })).resolves.toEqual({
          agentId,
          state: 'idle',
          template,
        });
      }
      const agents = await states(sessionId);
      for (const [agentId, template] of cases) {
        expect(agents[agentId].template).toBe(template);
      }
      // The template's own wake events come with it.
      expect(agents.monitor.wake_events).toEqual(['alert', 'hourly_check']);
    });

    it('uses an explicit template over the name, and rejects an unknown one', async () => {
      const sessionId = await startSession(client, newSessionId());
      await expect(
        client.ok('async.createAgent', { sessionId, agentId: 'helper', template: 'reviewer' }),
      ).resolves.toEqual({ agentId: 'helper', state: 'idle', template: 'reviewer' });
      await expect(
        client.ok('async.createAgent', { sessionId, agentId: 'writer', template: 'assistant' }),
      ).resolves.toEqual({ agentId: 'writer', state: 'idle', template: 'assistant' });

      await rejects(
        'async.createAgent',
        { sessionId, agentId: 'nobody', template: 'no-such-template' },
        'invalid_params',
        ['template'],
      );
      expect(Object.keys(await states(sessionId)).sort()).toEqual(['helper', 'writer']);
    });

    it('pushes the creation, and with autoStart false keeps the agent stopped with its work queued', async () => {
      const sessionId = await startSession(client, newSessionId());
      await expect(
        createScripted(client, sessionId, 'later', replyAll('ran'), {}, { autoStart: false }),
      ).resolves.toEqual({ agentId: 'later', state: 'stopped', template: 'assistant' });
      await createScripted(client, sessionId, 'now', replyAll('ran'));
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.agentId === 'later'),
      ).resolves.toMatchObject({ state: 'stopped', previous: null, reason: 'created' });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.agentId === 'now'),
      ).resolves.toMatchObject({ state: 'idle', previous: null, reason: 'created' });

      const { taskId } = await task(sessionId, 'later', 'wait for me');
      const done = await task(sessionId, 'now', 'go');
      await client.waitForTaskEnd(done.taskId);
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        state: 'queued',
      });
      expect((await states(sessionId)).later).toMatchObject({ state: 'stopped', queue_size: 1 });

      await expect(client.ok('async.startAgent', { sessionId, agentId: 'later' })).resolves.toEqual({
        agentId: 'later',
        state: 'idle',
      });
      await expect(client.waitForTaskEnd(taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'ran' } },
      });
    });

    it('lays config over the template: description, script, tools, wakeEvents', async () => {
      const sessionId = await startSession(client, newSessionId());
      await client.ok('async.createAgent', {
        sessionId,
        agentId: 'custom',
        config: {
          description: 'A custom description',
          systemPrompt: 'You are custom.',
          model: 'scripted',
          tools: ['list_agents'],
          wakeEvents: ['ping'],
          script: [
            {
              when: { kind: 'task', match: '^look' },
              do: [{ tool: 'list_agents' }, { reply: 'saw {{prompt}}' }],
            },
            {
              when: { kind: 'task', match: '^mail' },
              do: [
                { tool: 'send_mail', args: { to: 'user', subject: 's', body: 'b' } },
                { reply: '{{result.error}}' },
              ],
            },
            { when: {}, do: [{ reply: 'custom: {{prompt}}' }] },
          ],
        },
      });
      expect((await states(sessionId)).custom).toMatchObject({
        template: 'assistant',
        wake_events: ['ping'],
      });

      const plain = await task(sessionId, 'custom', 'hello');
      await expect(client.waitForTaskEnd(plain.taskId)).resolves.toMatchObject({
        payload: { result: { final: 'custom: hello' } },
      });

      const look = await task(sessionId, 'custom', 'look around');
      await expect(client.waitForTaskEnd(look.taskId)).resolves.toMatchObject({
        payload: { result: { final: 'saw look around' } },
      });
      const listed = await push(sessionId, 'async.tool.called', (p) => p.taskId === look.taskId);
      expect(listed.result.agents).toEqual([
        { agentId: 'custom', state: 'active', description: 'A custom description' },
      ]);

      // send_mail is not in its tools: the model gets an error back, the task still ends.
      const mail = await task(sessionId, 'custom', 'mail someone');
      const ended = await client.waitForTaskEnd(mail.taskId);
      expect(ended.name).toBe('async.task.completed');
      expect(ended.payload.result.final).toContain('send_mail');

      const broadcast = await client.ok('async.broadcastEvent', { sessionId, event: 'ping' });
      expect(broadcast).toEqual({ event: 'ping', delivered: ['custom'], woke: [] });
    });

    it('refuses a script regex that may backtrack catastrophically, and runs an ordinary one', async () => {
      const sessionId = await startSession(client, newSessionId());
      const ordinary = { when: { match: '^deploy (\\w+) now$' }, do: [{ reply: 'deploying' }] };
      const error = await rejects(
        'async.createAgent',
        {
          sessionId,
          agentId: 'redos',
          config: { script: [{ when: { match: '(a+)+$' }, do: [{ reply: 'never' }] }, ordinary] },
        },
        'invalid_params',
        ['config.script.0.when.match'],
      );
      expect(error.data.issues![0].message).toMatch(/backtrack/);
      await rejects(
        'async.createAgent',
        {
          sessionId,
          agentId: 'redos',
          config: {
            script: [ordinary, { when: { kind: 'task', match: '(x*)*y' }, do: [{ reply: 'never' }] }],
          },
        },
        'invalid_params',
        ['config.script.1.when.match'],
      );
      expect(await states(sessionId)).toEqual({});

      await createScripted(client, sessionId, 'regular', [ordinary, { when: {}, do: [{ reply: 'other' }] }]);
      const hit = await task(sessionId, 'regular', 'Deploy api NOW');
      const miss = await task(sessionId, 'regular', 'deploy the api now');
      await expect(client.waitForTaskEnd(hit.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'deploying' } },
      });
      await expect(client.waitForTaskEnd(miss.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'other' } },
      });
    });

    it('lays config.limits over the defaults: step limit fails the task, a spent token budget stops the agent', async () => {
      const sessionId = await startSession(client, newSessionId());
      const twoSteps = [{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'listed' }] }];
      await createScripted(client, sessionId, 'short', twoSteps, { limits: { maxStepsPerTask: 1 } });
      await createScripted(client, sessionId, 'enough', twoSteps, { limits: { maxStepsPerTask: 2 } });
      await createScripted(client, sessionId, 'thrifty', replyAll('once'), { limits: { maxTokens: 1 } });

      const failing = await task(sessionId, 'short', 'do it');
      await expect(client.waitForTaskEnd(failing.taskId)).resolves.toMatchObject({
        name: 'async.task.failed',
        payload: { agentId: 'short', error: { code: 'limit_exceeded' }, errorCount: 1 },
      });
      const passing = await task(sessionId, 'enough', 'do it');
      await expect(client.waitForTaskEnd(passing.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
      });
      expect((await states(sessionId)).short).toMatchObject({
        state: 'idle',
        error_count: 1,
        last_error: expect.any(String),
      });

      const spent = await task(sessionId, 'thrifty', 'spend');
      await expect(client.waitForTaskEnd(spent.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
      });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.agentId === 'thrifty' && p.state === 'stopped'),
      ).resolves.toMatchObject({ reason: 'limit_exceeded' });
    });

    it('rejects a malformed config with the path of each issue', async () => {
      const sessionId = await startSession(client, newSessionId());
      const create = (config: unknown) => ({ sessionId, agentId: 'bad', config });
      await rejects('async.createAgent', create({ limits: { maxStepsPerTask: 0 } }), 'invalid_params', [
        'config.limits.maxStepsPerTask',
      ]);
      await rejects('async.createAgent', create({ tools: ['send_mail', 'teleport'] }), 'invalid_params', [
        'config.tools.1',
      ]);
      await rejects('async.createAgent', create({ wakeEvents: ['bad event'] }), 'invalid_params', [
        'config.wakeEvents.0',
      ]);
      await rejects(
        'async.createAgent',
        create({ script: [{ when: { match: '(' }, do: [{ reply: 'x' }] }] }),
        'invalid_params',
        ['config.script.0.when.match'],
      );
      const unknown = await rejects('async.createAgent', create({ colour: 'blue' }), 'invalid_params', [
        'config.colour',
      ]);
      expect(unknown.data.issues).toEqual([{ path: 'config.colour', message: 'unknown param' }]);
      await rejects('async.createAgent', create('not an object'), 'invalid_params', ['config']);
      expect(await states(sessionId)).toEqual({});
    });

    it('rejects a duplicate agentId with conflict and keeps the first agent', async () => {
      const sessionId = await startSession(client, newSessionId());
      await client.ok('async.createAgent', { sessionId, agentId: 'twin', template: 'reviewer' });
      await rejects('async.createAgent', { sessionId, agentId: 'twin' }, 'conflict');
      await rejects('async.createAgent', { sessionId, agentId: 'twin', template: 'writer' }, 'conflict');
      expect(await states(sessionId)).toEqual({ twin: expect.objectContaining({ template: 'reviewer' }) });
      // The same id in another session is another agent.
      const elsewhere = await startSession(client, newSessionId());
      await expect(
        client.ok('async.createAgent', { sessionId: elsewhere, agentId: 'twin' }),
      ).resolves.toEqual({
        agentId: 'twin',
        state: 'idle',
        template: 'assistant',
      });
    });

    it('rejects a malformed agentId with invalid_params at path agentId', async () => {
      const sessionId = await startSession(client, newSessionId());
      for (const agentId of ['', 'has space', 'semi;colon', 'x'.repeat(65), 42, null]) {
        await rejects('async.createAgent', { sessionId, agentId }, 'invalid_params', ['agentId']);
      }
      await rejects('async.createAgent', { sessionId }, 'invalid_params', ['agentId']);
      await expect(
        client.ok('async.createAgent', { sessionId, agentId: 'Ok_1.2-3' + 'y'.repeat(56) }),
      ).resolves.toMatchObject({ state: 'idle' });
    });
  });

  describe('async.startAgent and async.stopAgent', () => {
    it('stops an agent with its work kept queued, and starts it again to run that work', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'worker', replyAll('did {{prompt}}'));

      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'worker' })).resolves.toEqual({
        agentId: 'worker',
        state: 'stopped',
      });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.state === 'stopped'),
      ).resolves.toMatchObject({ agentId: 'worker', previous: 'idle' });
      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'worker' })).resolves.toEqual({
        agentId: 'worker',
        state: 'stopped',
      });

      const { taskId } = await task(sessionId, 'worker', 'the job');
      expect((await states(sessionId)).worker).toMatchObject({ state: 'stopped', queue_size: 1 });
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        state: 'queued',
      });

      await expect(client.ok('async.startAgent', { sessionId, agentId: 'worker' })).resolves.toEqual({
        agentId: 'worker',
        state: 'idle',
      });
      await expect(client.waitForTaskEnd(taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'did the job' } },
      });
    });

    it('leaves a running agent as it is on startAgent, without a state change', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'runner', replyAll('ok'));
      const before = (await client.ok('async.getHistory', { sessionId })).events.length;
      await expect(client.ok('async.startAgent', { sessionId, agentId: 'runner' })).resolves.toEqual({
        agentId: 'runner',
        state: 'idle',
      });
      expect((await client.ok('async.getHistory', { sessionId })).events).toHaveLength(before);
    });

    it('rejects an unknown agent with agent_not_found', async () => {
      const sessionId = await startSession(client, newSessionId());
      await rejects('async.startAgent', { sessionId, agentId: 'nobody' }, 'agent_not_found');
      await rejects('async.stopAgent', { sessionId, agentId: 'nobody' }, 'agent_not_found');
      await rejects('async.stopAgent', { sessionId }, 'invalid_params', ['agentId']);
    });
  });

  describe('async.sleepAgent and async.wakeAgent', () => {
    it('sleeps for a duration with work waiting, and wakes on wakeAgent (woke true, then false)', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'nap', replyAll('awake: {{prompt}}'));
      const until = new Date(sut.clock.now() + 30_000).toISOString();

      await expect(
        client.ok('async.sleepAgent', { sessionId, agentId: 'nap', durationSeconds: 30 }),
      ).resolves.toEqual({ agentId: 'nap', state: 'sleeping', sleepingUntil: until, wakeEvents: [] });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.state === 'sleeping'),
      ).resolves.toMatchObject({ agentId: 'nap', previous: 'idle' });
      expect((await states(sessionId)).nap).toMatchObject({ state: 'sleeping', sleeping_until: until });

      const { taskId } = await task(sessionId, 'nap', 'later');
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        state: 'queued',
      });

      await expect(
        client.ok('async.wakeAgent', { sessionId, agentId: 'nap', reason: 'coffee' }),
      ).resolves.toEqual({ agentId: 'nap', state: 'idle', woke: true });
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.previous === 'sleeping'),
      ).resolves.toMatchObject({ agentId: 'nap', state: 'idle' });
      await expect(client.waitForTaskEnd(taskId)).resolves.toMatchObject({
        payload: { result: { final: 'awake: later' } },
      });
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'nap' })).resolves.toEqual({
        agentId: 'nap',
        state: 'idle',
        woke: false,
      });
      expect((await states(sessionId)).nap.sleeping_until).toBeNull();
    });

    it('wakes by itself when the duration has passed on the clock', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'timed', replyAll('ok'));
      await client.ok('async.sleepAgent', { sessionId, agentId: 'timed', durationSeconds: 60 });

      sut.clock.advance(59_999);
      expect((await states(sessionId)).timed.state).toBe('sleeping');
      sut.clock.advance(1);
      await expect(
        push(sessionId, 'async.agent.stateChanged', (p) => p.previous === 'sleeping'),
      ).resolves.toMatchObject({ agentId: 'timed', state: 'idle' });
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'timed' })).resolves.toMatchObject({
        woke: false,
      });
    });

    it('keeps the wake events when none are given and replaces them when given', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'ears', replyAll('heard {{event}}'), { wakeEvents: ['first'] });

      await expect(client.ok('async.sleepAgent', { sessionId, agentId: 'ears' })).resolves.toEqual({
        agentId: 'ears',
        state: 'sleeping',
        sleepingUntil: null,
        wakeEvents: ['first'],
      });
      await client.ok('async.wakeAgent', { sessionId, agentId: 'ears' });

      await expect(
        client.ok('async.sleepAgent', { sessionId, agentId: 'ears', wakeEvents: ['second', 'third'] }),
      ).resolves.toEqual({
        agentId: 'ears',
        state: 'sleeping',
        sleepingUntil: null,
        wakeEvents: ['second', 'third'],
      });
      expect((await states(sessionId)).ears.wake_events).toEqual(['second', 'third']);
      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'first' })).resolves.toEqual({
        event: 'first',
        delivered: [],
        woke: [],
      });
      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'third' })).resolves.toEqual({
        event: 'third',
        delivered: ['ears'],
        woke: ['ears'],
      });
    });

    it('rejects sleeping a stopped agent with conflict, bad params, and unknown agents', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'off', replyAll('ok'), {}, { autoStart: false });
      await rejects('async.sleepAgent', { sessionId, agentId: 'off' }, 'conflict');
      expect((await states(sessionId)).off.state).toBe('stopped');
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'off' })).resolves.toEqual({
        agentId: 'off',
        state: 'stopped',
        woke: false,
      });

      await rejects('async.sleepAgent', { sessionId, agentId: 'off', durationSeconds: 0 }, 'invalid_params', [
        'durationSeconds',
      ]);
      await rejects(
        'async.sleepAgent',
        { sessionId, agentId: 'off', durationSeconds: '5' },
        'invalid_params',
        ['durationSeconds'],
      );
      await rejects(
        'async.sleepAgent',
        { sessionId, agentId: 'off', wakeEvents: ['ok', 'no spaces'] },
        'invalid_params',
        ['wakeEvents.1'],
      );
      await rejects('async.wakeAgent', { sessionId, agentId: 'off', reason: 7 }, 'invalid_params', [
        'reason',
      ]);
      await rejects('async.sleepAgent', { sessionId, agentId: 'nobody' }, 'agent_not_found');
      await rejects('async.wakeAgent', { sessionId, agentId: 'nobody' }, 'agent_not_found');
    });
  });

  describe('async.sendTask', () => {
    it('answers with the taskId and the queue size', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'q', replyAll('ok'), {}, { autoStart: false });
      const replies = [];
      for (const prompt of ['one', 'two', 'three']) {
        replies.push(await task(sessionId, 'q', prompt));
      }
      expect(replies).toEqual(
        [1, 2, 3].map((queueSize) => ({ taskId: expect.any(String), queued: true, queueSize })),
      );
      expect(new Set(replies.map((r) => r.taskId)).size).toBe(3);
      expect((await states(sessionId)).q.queue_size).toBe(3);
    });

    it('runs queued tasks by priority, then first in first out', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'prio', replyAll('{{prompt}}'), {}, { autoStart: false });
      const sent: Record<string, string> = {};
      for (const [prompt, priority] of [
        ['low', 'low'],
        ['normal-1', undefined],
        ['urgent', 'urgent'],
        ['high', 'high'],
        ['normal-2', 'normal'],
      ] as const) {
        sent[prompt] = (await task(sessionId, 'prio', prompt, priority ? { priority } : {})).taskId;
      }
      await expect(
        client.ok('async.getTask', { sessionId, taskId: sent['normal-1'] }),
      ).resolves.toMatchObject({
        priority: 'normal',
      });
      await client.ok('async.startAgent', { sessionId, agentId: 'prio' });
      for (const taskId of Object.values(sent)) {
        await client.waitForTaskEnd(taskId);
      }
      const started = pushesOf(sessionId, 'async.task.started').map((p) => p.taskId);
      expect(started).toEqual(['urgent', 'high', 'normal-1', 'normal-2', 'low'].map((k) => sent[k]));
    });

    it('returns the same task for a repeated idempotencyKey without queueing a second one', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'idem', replyAll('{{prompt}}'), {}, { autoStart: false });
      await createScripted(client, sessionId, 'other', replyAll('{{prompt}}'), {}, { autoStart: false });

      const first = await task(sessionId, 'idem', 'original', { idempotencyKey: 'k-1' });
      const again = await task(sessionId, 'idem', 'changed', { idempotencyKey: 'k-1' });
      expect(first).toEqual({ taskId: expect.any(String), queued: true, queueSize: 1 });
      expect(again).toEqual({ taskId: first.taskId, queued: true, queueSize: 1 });
      const second = await task(sessionId, 'idem', 'another', { idempotencyKey: 'k-2' });
      expect(second).toEqual({ taskId: expect.any(String), queued: true, queueSize: 2 });
      expect(second.taskId).not.toBe(first.taskId);
      // Keys are per agent.
      const elsewhere = await task(sessionId, 'other', 'original', { idempotencyKey: 'k-1' });
      expect(elsewhere.taskId).not.toBe(first.taskId);
      expect((await states(sessionId)).idem.queue_size).toBe(2);

      await client.ok('async.startAgent', { sessionId, agentId: 'idem' });
      await expect(client.waitForTaskEnd(first.taskId)).resolves.toMatchObject({
        payload: { result: { final: 'original' } },
      });
      await client.waitForTaskEnd(second.taskId);
      expect(pushesOf(sessionId, 'async.task.started').map((p) => p.taskId)).toEqual([
        first.taskId,
        second.taskId,
      ]);
      await expect(task(sessionId, 'idem', 'after it ran', { idempotencyKey: 'k-1' })).resolves.toEqual({
        taskId: first.taskId,
        queued: true,
        queueSize: 0,
      });
    });

    it('rejects bad params and unknown agents', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'a', replyAll('ok'), {}, { autoStart: false });
      await rejects(
        'async.sendTask',
        { sessionId, agentId: 'a', prompt: 'x', priority: 'asap' },
        'invalid_params',
        ['priority'],
      );
      await rejects('async.sendTask', { sessionId, agentId: 'a', prompt: '' }, 'invalid_params', ['prompt']);
      await rejects('async.sendTask', { sessionId, agentId: 'a' }, 'invalid_params', ['prompt']);
      await rejects('async.sendTask', { sessionId, agentId: 'a', prompt: { text: 'x' } }, 'invalid_params', [
        'prompt',
      ]);
      await rejects(
        'async.sendTask',
        { sessionId, agentId: 'a', prompt: 'x', idempotencyKey: '' },
        'invalid_params',
        ['idempotencyKey'],
      );
      await rejects('async.sendTask', { sessionId, agentId: 'ghost', prompt: 'x' }, 'agent_not_found');
      expect((await states(sessionId)).a.queue_size).toBe(0);
    });
  });

  describe('async.getAgentStates', () => {
    it('reports exactly the AgentState fields, idle, active and after work', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'slow', [
        { when: {}, do: [{ reply: 'took a while', delayMs: 1_000 }] },
      ]);
      await expect(client.ok('async.getAgentStates', { sessionId })).resolves.toEqual({
        agents: {
          slow: {
            state: 'idle',
            current_task: null,
            queue_size: 0,
            sleeping_until: null,
            wake_events: [],
            error_count: 0,
            last_error: null,
            last_active_at: null,
            template: 'assistant',
            tokens_used: 0,
          },
        },
      });

      const baseline = sut.clock.pending();
      const startedAt = now();
      const { taskId } = await task(sessionId, 'slow', 'think');
      await push(sessionId, 'async.task.started', (p) => p.taskId === taskId);
      await timerArmed(baseline);
      const busy = (await states(sessionId)).slow;
      expect(sorted(Object.keys(busy))).toEqual(AGENT_STATE_FIELDS);
      expect(busy).toMatchObject({
        state: 'active',
        current_task: 'task',
        queue_size: 0,
        last_active_at: startedAt,
      });
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        state: 'running',
        startedAt,
      });

      sut.clock.advance(1_000);
      await client.waitForTaskEnd(taskId);
      const after = (await states(sessionId)).slow;
      expect(sorted(Object.keys(after))).toEqual(AGENT_STATE_FIELDS);
      expect(after).toMatchObject({ state: 'idle', current_task: null, last_active_at: startedAt });
      expect(after.tokens_used).toBeGreaterThan(0);
    });

    it('is empty for a session without agents', async () => {
      const sessionId = await startSession(client, newSessionId());
      await expect(client.ok('async.getAgentStates', { sessionId })).resolves.toEqual({ agents: {} });
    });
  });

  describe('async.broadcastEvent', () => {
    it('delivers to running listeners, wakes the sleepers, skips the stopped and the deaf', async () => {
      const sessionId = await startSession(client, newSessionId());
      const echo = replyAll('{{event}} {{data}}');
      await createScripted(client, sessionId, 'awake', echo, { wakeEvents: ['go'] });
      await createScripted(client, sessionId, 'asleep', echo, { wakeEvents: ['go', 'other'] });
      await createScripted(client, sessionId, 'off', echo, { wakeEvents: ['go'] }, { autoStart: false });
      await createScripted(client, sessionId, 'deaf', echo);
      await client.ok('async.sleepAgent', { sessionId, agentId: 'asleep' });

      const reply = await client.ok('async.broadcastEvent', { sessionId, event: 'go', data: { n: 1 } });
      expect(sorted(Object.keys(reply))).toEqual(['delivered', 'event', 'woke']);
      expect(reply.event).toBe('go');
      expect(sorted(reply.delivered)).toEqual(['asleep', 'awake']);
      expect(reply.woke).toEqual(['asleep']);
      await expect(push(sessionId, 'async.event.broadcast')).resolves.toMatchObject({
        event: 'go',
        data: { n: 1 },
        woke: ['asleep'],
      });
      for (const agentId of ['awake', 'asleep']) {
        const started = await push(sessionId, 'async.task.started', (p) => p.agentId === agentId);
        expect(started.kind).toBe('event');
        await expect(client.waitForTaskEnd(started.taskId)).resolves.toMatchObject({
          payload: { result: { final: 'go {"n":1}' } },
        });
      }
      expect((await states(sessionId)).off.queue_size).toBe(0);
      expect((await states(sessionId)).deaf.queue_size).toBe(0);

      await expect(
        client.ok('async.broadcastEvent', { sessionId, event: 'nobody.listens:here' }),
      ).resolves.toEqual({
        event: 'nobody.listens:here',
        delivered: [],
        woke: [],
      });
      await expect(
        push(sessionId, 'async.event.broadcast', (p) => p.event === 'nobody.listens:here'),
      ).resolves.toMatchObject({ data: {}, woke: [] });
    });

    it('rejects a malformed event name', async () => {
      const sessionId = await startSession(client, newSessionId());
      await rejects('async.broadcastEvent', { sessionId, event: 'has space' }, 'invalid_params', ['event']);
      await rejects('async.broadcastEvent', { sessionId, event: '' }, 'invalid_params', ['event']);
      await rejects('async.broadcastEvent', { sessionId }, 'invalid_params', ['event']);
    });
  });

  describe('async.getTask', () => {
    it('shows a task queued, then done with its result and usage', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'doer', replyAll('done: {{prompt}}'), {}, { autoStart: false });
      const createdAt = now();
      const { taskId } = await task(sessionId, 'doer', 'the thing', { priority: 'high' });

      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toEqual({
        taskId,
        agentId: 'doer',
        kind: 'task',
        state: 'queued',
        prompt: 'the thing',
        priority: 'high',
        hops: 0,
        createdAt,
      });
      sut.clock.advance(2_000);
      const startedAt = now();
      await client.ok('async.startAgent', { sessionId, agentId: 'doer' });
      const end = await client.waitForTaskEnd(taskId);

      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toEqual({
        taskId,
        agentId: 'doer',
        kind: 'task',
        state: 'done',
        prompt: 'the thing',
        priority: 'high',
        hops: 0,
        result: { final: 'done: the thing' },
        createdAt,
        startedAt,
        finishedAt: startedAt,
        usage: end.payload.usage,
      });
      expect(end.payload.usage).toEqual({
        promptTokens: expect.any(Number),
        completionTokens: expect.any(Number),
      });
    });

    it('shows a failed task with its error', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'fails',
        [{ when: {}, do: [{ tool: 'list_agents' }, { reply: 'x' }] }],
        {
          limits: { maxStepsPerTask: 1 },
        },
      );
      const { taskId } = await task(sessionId, 'fails', 'try');
      await client.waitForTaskEnd(taskId);
      await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
        taskId,
        state: 'failed',
        error: { code: 'limit_exceeded', message: expect.any(String) },
        finishedAt: expect.stringMatching(ISO),
      });
    });

    it('rejects an unknown taskId, or one of another session, with invalid_params at taskId', async () => {
      const sessionId = await startSession(client, newSessionId());
      const other = await startSession(client, newSessionId());
      await createScripted(client, other, 'x', replyAll('ok'), {}, { autoStart: false });
      const foreign = (await task(other, 'x', 'mine')).taskId;
      for (const taskId of [randomUUID(), 'not-a-uuid', foreign]) {
        const error = await rejects('async.getTask', { sessionId, taskId }, 'invalid_params', ['taskId']);
        expect(error.data.issues).toEqual([{ path: 'taskId', message: expect.any(String) }]);
      }
      await rejects('async.getTask', { sessionId }, 'invalid_params', ['taskId']);
      await rejects('async.getTask', { sessionId, taskId: 5 }, 'invalid_params', ['taskId']);
    });
  });

  describe('async.cancelTask', () => {
    it('cancels a queued task, which then never runs; a finished task keeps its state', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'c', replyAll('{{prompt}}'), {}, { autoStart: false });
      const doomed = (await task(sessionId, 'c', 'doomed')).taskId;
      const kept = (await task(sessionId, 'c', 'kept')).taskId;

      await expect(client.ok('async.cancelTask', { sessionId, taskId: doomed })).resolves.toEqual({
        taskId: doomed,
        state: 'cancelled',
      });
      await expect(client.ok('async.getTask', { sessionId, taskId: doomed })).resolves.toMatchObject({
        state: 'cancelled',
        finishedAt: expect.stringMatching(ISO),
      });
      expect((await states(sessionId)).c.queue_size).toBe(1);
      await expect(client.ok('async.cancelTask', { sessionId, taskId: doomed })).resolves.toEqual({
        taskId: doomed,
        state: 'cancelled',
      });

      await client.ok('async.startAgent', { sessionId, agentId: 'c' });
      await expect(client.waitForTaskEnd(kept)).resolves.toMatchObject({ name: 'async.task.completed' });
      expect(pushesOf(sessionId, 'async.task.started').map((p) => p.taskId)).toEqual([kept]);
      await expect(client.ok('async.cancelTask', { sessionId, taskId: kept })).resolves.toEqual({
        taskId: kept,
        state: 'done',
      });
      await expect(client.ok('async.getTask', { sessionId, taskId: doomed })).resolves.toMatchObject({
        state: 'cancelled',
      });
    });

    it('rejects an unknown taskId with invalid_params at taskId', async () => {
      const sessionId = await startSession(client, newSessionId());
      await rejects('async.cancelTask', { sessionId, taskId: randomUUID() }, 'invalid_params', ['taskId']);
      await rejects('async.cancelTask', { sessionId, taskId: 'nope' }, 'invalid_params', ['taskId']);
      await rejects('async.cancelTask', { sessionId, taskId: '' }, 'invalid_params', ['taskId']);
    });
  });

  describe('async.sendMail and async.listMail', () => {
    it('delivers mail from the user, pushes it, and the recipient reads it as a mailbox_message', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'reader', replyAll('read {{subject}} from {{from}}'));
      const createdAt = now();
      const sent = await client.ok('async.sendMail', {
        sessionId,
        to: 'reader',
        subject: 'Hello',
        body: 'Body text',
        priority: 'urgent',
      });
      expect(sent).toEqual({ messageId: expect.any(String) });
      const { message } = await push(sessionId, 'async.mail.sent');
      expect(sorted(Object.keys(message))).toEqual(MAIL_FIELDS);
      expect(message).toEqual({
        messageId: sent.messageId,
        sessionId,
        from: 'user',
        to: 'reader',
        subject: 'Hello',
        body: 'Body text',
        priority: 'urgent',
        status: 'unread',
        replyTo: null,
        threadId: expect.any(String),
        hops: 0,
        createdAt,
        readAt: null,
      });

      const started = await push(sessionId, 'async.task.started', (p) => p.agentId === 'reader');
      expect(started.kind).toBe('mailbox_message');
      await expect(client.waitForTaskEnd(started.taskId)).resolves.toMatchObject({
        payload: { result: { final: 'read Hello from user' } },
      });
      const { messages } = await client.ok('async.listMail', { sessionId });
      expect(messages).toEqual([{ ...message, status: 'read', readAt: expect.stringMatching(ISO) }]);

      const reply = await client.ok('async.sendMail', {
        sessionId,
        to: 'reader',
        subject: 'Re: Hello',
        body: 'more',
        replyTo: sent.messageId,
      });
      const threaded = await push(
        sessionId,
        'async.mail.sent',
        (p) => p.message.messageId === reply.messageId,
      );
      expect(threaded.message).toMatchObject({
        replyTo: sent.messageId,
        threadId: message.threadId,
        priority: 'normal',
      });
    });

    it('filters by agentId (to or from) and status', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'reads', replyAll('ok'));
      await createScripted(client, sessionId, 'off', replyAll('ok'), {}, { autoStart: false });
      await createScripted(client, sessionId, 'writes', [
        {
          when: {},
          do: [
            { tool: 'send_mail', args: { to: 'off', subject: 'from writes', body: 'x' } },
            { reply: 'sent' },
          ],
        },
      ]);
      const toReads = (await client.ok('async.sendMail', { sessionId, to: 'reads', subject: 's', body: 'b' }))
        .messageId;
      const started = await push(sessionId, 'async.task.started', (p) => p.agentId === 'reads');
      await client.waitForTaskEnd(started.taskId);
      const toOff = [];
      for (const subject of ['o1', 'o2']) {
        toOff.push(
          (await client.ok('async.sendMail', { sessionId, to: 'off', subject, body: 'b' })).messageId,
        );
      }
      const { taskId } = await task(sessionId, 'writes', 'go');
      await client.waitForTaskEnd(taskId);
      const fromWrites = (await push(sessionId, 'async.mail.sent', (p) => p.message.from === 'writes'))
        .message.messageId;

      const ids = async (filter: Record<string, unknown>) =>
        ((await client.ok('async.listMail', { sessionId, ...filter })).messages as any[]).map(
          (m) => m.messageId,
        );
      await expect(ids({})).resolves.toEqual([fromWrites, toOff[1], toOff[0], toReads]);
      await expect(ids({ agentId: 'reads' })).resolves.toEqual([toReads]);
      await expect(ids({ agentId: 'off' })).resolves.toEqual([fromWrites, toOff[1], toOff[0]]);
      await expect(ids({ agentId: 'writes' })).resolves.toEqual([fromWrites]);
      await expect(ids({ agentId: 'user' })).resolves.toEqual([toOff[1], toOff[0], toReads]);
      await expect(ids({ status: 'unread' })).resolves.toEqual([fromWrites, toOff[1], toOff[0]]);
      await expect(ids({ status: 'read' })).resolves.toEqual([toReads]);
      await expect(ids({ status: 'archived' })).resolves.toEqual([]);
      await expect(ids({ agentId: 'off', status: 'read' })).resolves.toEqual([]);
      await expect(ids({ agentId: 'nobody' })).resolves.toEqual([]);
    });

    it('pages newest first with limit and nextBefore', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'box', replyAll('ok'), {}, { autoStart: false });
      const sent: string[] = [];
      for (let i = 1; i <= 5; i++) {
        sent.push(
          (await client.ok('async.sendMail', { sessionId, to: 'box', subject: `m${i}`, body: 'b' }))
            .messageId,
        );
      }
      const newestFirst = [...sent].reverse();

      const page1 = await client.ok('async.listMail', { sessionId, limit: 2 });
      expect(page1.messages.map((m: any) => m.messageId)).toEqual(newestFirst.slice(0, 2));
      expect(page1.nextBefore).toEqual(expect.any(Number));
      const page2 = await client.ok('async.listMail', { sessionId, limit: 2, before: page1.nextBefore });
      expect(page2.messages.map((m: any) => m.messageId)).toEqual(newestFirst.slice(2, 4));
      const page3 = await client.ok('async.listMail', { sessionId, limit: 2, before: page2.nextBefore });
      expect(page3).toEqual({
        messages: [expect.objectContaining({ messageId: sent[0] })],
        nextBefore: null,
      });

      const all = await client.ok('async.listMail', { sessionId, limit: 5 });
      expect(all.messages.map((m: any) => m.messageId)).toEqual(newestFirst);
      expect(all.nextBefore).toBeNull();
      const byDefault = await client.ok('async.listMail', { sessionId });
      expect(byDefault.messages).toHaveLength(5);
      // A null `before` (the last page's nextBefore, handed back) is no `before`: the first page.
      await expect(client.ok('async.listMail', { sessionId, limit: 2, before: null })).resolves.toEqual(
        page1,
      );
      // So is a null replyTo (what Mail.replyTo holds for mail that answers nothing): a new thread.
      const fresh = await client.ok('async.sendMail', {
        sessionId,
        to: 'box',
        subject: 'm6',
        body: 'b',
        replyTo: null,
      });
      const [newest] = (await client.ok('async.listMail', { sessionId, limit: 1 })).messages;
      expect(newest).toMatchObject({ messageId: fresh.messageId, replyTo: null, threadId: fresh.messageId });
    });

    it('rejects mail to unknown agents or to user, and bad filters', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'box', replyAll('ok'), {}, { autoStart: false });
      const mail = { sessionId, to: 'box', subject: 's', body: 'b' };
      await rejects('async.sendMail', { ...mail, to: 'ghost' }, 'agent_not_found');
      await rejects('async.sendMail', { ...mail, to: 'user' }, 'invalid_params', ['to']);
      await rejects('async.sendMail', { ...mail, replyTo: randomUUID() }, 'invalid_params', ['replyTo']);
      await rejects('async.sendMail', { ...mail, priority: 'meh' }, 'invalid_params', ['priority']);
      await rejects('async.sendMail', { sessionId, to: 'box', body: 'b' }, 'invalid_params', ['subject']);
      await rejects('async.sendMail', { sessionId, to: 'box', subject: 's' }, 'invalid_params', ['body']);
      await rejects('async.listMail', { sessionId, status: 'lost' }, 'invalid_params', ['status']);
      await rejects('async.listMail', { sessionId, limit: 0 }, 'invalid_params', ['limit']);
      await rejects('async.listMail', { sessionId, limit: 1.5 }, 'invalid_params', ['limit']);
      await rejects('async.listMail', { sessionId, before: 'x' }, 'invalid_params', ['before']);
      await rejects('async.listMail', { sessionId, agentId: 'bad id' }, 'invalid_params', ['agentId']);
      await expect(client.ok('async.listMail', { sessionId })).resolves.toEqual({
        messages: [],
        nextBefore: null,
      });
    });
  });

  describe('async.getHistory', () => {
    it('is gap-free from seq 1, pages with after/limit/nextAfter, and matches every push', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'h', replyAll('{{prompt}}'), { wakeEvents: ['tick'] });
      const { taskId } = await task(sessionId, 'h', 'first');
      await client.waitForTaskEnd(taskId);
      await client.ok('async.sendMail', { sessionId, to: 'h', subject: 's', body: 'b' });
      const mailTask = await push(sessionId, 'async.task.started', (p) => p.kind === 'mailbox_message');
      await client.waitForTaskEnd(mailTask.taskId);
      await client.ok('async.broadcastEvent', { sessionId, event: 'tick' });
      const eventTask = await push(sessionId, 'async.task.started', (p) => p.kind === 'event');
      await client.waitForTaskEnd(eventTask.taskId);
      await client.ok('async.stopAgent', { sessionId, agentId: 'h' });

      const { events, nextAfter } = await client.ok('async.getHistory', { sessionId });
      const n = events.length;
      expect(n).toBeGreaterThanOrEqual(8);
      expect(events.map((e: any) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(nextAfter).toBe(n);
      for (const e of events) {
        expect(sorted(Object.keys(e))).toEqual(['at', 'payload', 'seq', 'type']);
        expect(NOTIFICATIONS).toContain(e.type);
        expect(e.at).toMatch(ISO);
      }
      expect(events[0]).toMatchObject({
        type: 'async.agent.stateChanged',
        payload: { agentId: 'h', previous: null, reason: 'created' },
      });

      await push(sessionId, NOTIFICATIONS, (p) => p.seq === n);
      // Streamed text is pushed but not stored: every other push is a history record.
      const pushes = client.pushes.filter(
        (p) => p.payload?.sessionId === sessionId && p.name !== 'async.task.output',
      );
      expect(pushes.map((p) => p.payload.seq).sort((a, b) => a - b)).toEqual(events.map((e: any) => e.seq));
      for (const e of events) {
        const p = pushes.find((x) => x.payload.seq === e.seq)!;
        expect(p.name).toBe(e.type);
        expect(p.payload).toEqual({ ...e.payload, sessionId, at: e.at, seq: e.seq });
      }

      const first = await client.ok('async.getHistory', { sessionId, limit: 3 });
      expect(first.events).toEqual(events.slice(0, 3));
      expect(first.nextAfter).toBe(3);
      const second = await client.ok('async.getHistory', { sessionId, after: first.nextAfter, limit: 3 });
      expect(second.events).toEqual(events.slice(3, 6));
      expect(second.nextAfter).toBe(6);
      await expect(client.ok('async.getHistory', { sessionId, after: n })).resolves.toEqual({
        events: [],
        nextAfter: n,
      });
    });

    it('rejects bad paging params', async () => {
      const sessionId = await startSession(client, newSessionId());
      await rejects('async.getHistory', { sessionId, after: -1 }, 'invalid_params', ['after']);
      await rejects('async.getHistory', { sessionId, after: '3' }, 'invalid_params', ['after']);
      await rejects('async.getHistory', { sessionId, limit: 0 }, 'invalid_params', ['limit']);
      await rejects('async.getHistory', { sessionId, limit: 1_000_000 }, 'invalid_params', ['limit']);
      // seq is a 32-bit column: a larger cursor is a bad param, not a database error.
      await rejects('async.getHistory', { sessionId, after: 2 ** 31 }, 'invalid_params', ['after']);
      await rejects('async.getHistory', { sessionId, after: Number.MAX_SAFE_INTEGER }, 'invalid_params', [
        'after',
      ]);
      await expect(client.ok('async.getHistory', { sessionId, after: 2 ** 31 - 1 })).resolves.toEqual({
        events: [],
        nextAfter: 2 ** 31 - 1,
      });
      await expect(client.ok('async.getHistory', { sessionId })).resolves.toEqual({
        events: [],
        nextAfter: 0,
      });
    });
  });

  describe('templates.list', () => {
    it('lists all 9 templates with name, description, tools and model', async () => {
      const { templates } = await client.ok('templates.list', {});
      expect(sorted(templates.map((t: any) => t.name))).toEqual(TEMPLATE_NAMES);
      for (const t of templates) {
        expect(sorted(Object.keys(t))).toEqual(['description', 'model', 'name', 'tools']);
        expect(t.description).toEqual(expect.any(String));
        expect(t.description.length).toBeGreaterThan(0);
        expect(t.model).toEqual(expect.any(String));
        expect(Array.isArray(t.tools)).toBe(true);
      }
      const byName = Object.fromEntries(templates.map((t: any) => [t.name, t]));
      expect(sorted(byName.assistant.tools)).toEqual(
        sorted([
          'send_mail',
          'send_mail_with_switch',
          'check_mail',
          'reply_mail',
          'broadcast_event',
          'sleep',
          'list_agents',
        ]),
      );
      // MCP tools are listed by name; the servers' definitions are not shown.
      expect(byName['feedback-analyzer'].tools).toContain('files__read_text_file');
      await expect(client.ok('templates.list')).resolves.toEqual({ templates });
      await rejects('templates.list', { name: 'x' }, 'invalid_params', ['name']);
    });
  });

  describe('requests the server must refuse', () => {
    it('answers an unknown method with method_not_found', async () => {
      for (const name of ['async.nope', 'session.delete', 'templates', 'x']) {
        await rejects(name, {}, 'method_not_found');
      }
    });

    it('answers params that are not an object with invalid_params at the params itself', async () => {
      for (const params of ['text', 42, true, [1, 2], ['sessionId']]) {
        const error = await rejects('async.getAgentStates', params, 'invalid_params', ['']);
        expect(error.data.issues).toHaveLength(1);
      }
      await rejects('session.list', 'text', 'invalid_params', ['']);
    });

    it('lists each missing, extra and mistyped param with its path', async () => {
      const sessionId = await startSession(client, newSessionId());
      const missing = await rejects('async.sendTask', {}, 'invalid_params', [
        'sessionId',
        'agentId',
        'prompt',
      ]);
      expect(missing.data.issues).toHaveLength(3);
      const extra = await rejects(
        'async.getAgentStates',
        { sessionId, verbose: true, x: 1 },
        'invalid_params',
        ['verbose', 'x'],
      );
      expect(extra.data.issues).toEqual(
        expect.arrayContaining([
          { path: 'verbose', message: 'unknown param' },
          { path: 'x', message: 'unknown param' },
        ]),
      );
      await rejects(
        'async.createAgent',
        { sessionId: 7, agentId: 'ok', autoStart: 'yes', colour: 'red' },
        'invalid_params',
        ['sessionId', 'autoStart', 'colour'],
      );
      await rejects('async.getAgentStates', { sessionId: null }, 'invalid_params', ['sessionId']);
      await rejects('session.stop', { sessionId: ['a'] }, 'invalid_params', ['sessionId']);
      expect(await states(sessionId)).toEqual({});
    });

    it('names a mistyped param as mistyped and a missing one as required', async () => {
      const sessionId = await startSession(client, newSessionId());
      const error = await rejects(
        'async.sendTask',
        { sessionId, agentId: 5, priority: null },
        'invalid_params',
        ['agentId', 'prompt', 'priority'],
      );
      const message = Object.fromEntries(error.data.issues!.map((i) => [i.path, i.message]));
      expect(message.prompt).toBe('required');
      expect(message.agentId).not.toBe('required');
      expect(message.priority).not.toBe('required');
    });

    it('answers a NUL character anywhere in the params with invalid_params at its path', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'n',
        replyAll('ok'),
        { wakeEvents: ['e'] },
        { autoStart: false },
      );
      await rejects('async.sendTask', { sessionId, agentId: 'n', prompt: 'a\u0000b' }, 'invalid_params', [
        'prompt',
      ]);
      await rejects(
        'async.sendTask',
        { sessionId, agentId: 'n', prompt: 'p', idempotencyKey: '\u0000' },
        'invalid_params',
        ['idempotencyKey'],
      );
      await rejects(
        'async.sendMail',
        { sessionId, to: 'n', subject: 's\u0000', body: 'b' },
        'invalid_params',
        ['subject'],
      );
      await rejects(
        'session.start',
        { sessionId: newSessionId(), metadata: { k: ['ok', '\u0000'] } },
        'invalid_params',
        ['metadata.k.1'],
      );
      await rejects(
        'async.broadcastEvent',
        { sessionId, event: 'e', data: { deep: { 'key\u0000': 1 } } },
        'invalid_params',
        ['data.deep.key\u0000'],
      );
      await rejects(
        'async.createAgent',
        { sessionId, agentId: 'm', config: { script: [{ do: [{ reply: '\u0000' }] }] } },
        'invalid_params',
        ['config.script.0.do.0.reply'],
      );
      expect(await states(sessionId)).toEqual({ n: expect.objectContaining({ queue_size: 0 }) });
      await expect(client.ok('async.listMail', { sessionId })).resolves.toEqual({
        messages: [],
        nextBefore: null,
      });
      await expect(client.ok('async.getHistory', { sessionId })).resolves.toMatchObject({ nextAfter: 1 });
    });

    it('answers a lone UTF-16 surrogate anywhere in the params with invalid_params at its path', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'u',
        replyAll('ok'),
        { wakeEvents: ['e'] },
        { autoStart: false },
      );
      const lone = await rejects(
        'async.sendTask',
        { sessionId, agentId: 'u', prompt: 'a\ud800b' },
        'invalid_params',
        ['prompt'],
      );
      expect(lone.data.issues![0].message).toMatch(/surrogate/);
      await rejects('async.sendTask', { sessionId, agentId: 'u', prompt: 'low \udc00' }, 'invalid_params', [
        'prompt',
      ]);
      // A low surrogate before a high one is not a pair.
      await rejects('async.sendTask', { sessionId, agentId: 'u', prompt: '\udc00\ud800' }, 'invalid_params', [
        'prompt',
      ]);
      await rejects(
        'async.broadcastEvent',
        { sessionId, event: 'e', data: { list: ['ok', { v: 'cut \ud83d' }] } },
        'invalid_params',
        ['data.list.1.v'],
      );
      const metadataSession = newSessionId();
      await rejects(
        'session.start',
        { sessionId: metadataSession, metadata: { '\ud800': 1 } },
        'invalid_params',
        ['metadata.\ud800'],
      );
      const nul = await rejects(
        'async.sendTask',
        { sessionId, agentId: 'u', prompt: 'a\u0000b' },
        'invalid_params',
        ['prompt'],
      );
      expect(nul.data.issues![0].message).toMatch(/NUL/);
      const { sessions } = await client.ok('session.list', {});
      expect(sessions.map((s: any) => s.sessionId)).not.toContain(metadataSession);
      expect((await states(sessionId)).u.queue_size).toBe(0);

      // A proper pair (an emoji) is stored and read back unchanged.
      const paired = await task(sessionId, 'u', 'ship it \ud83d\ude80');
      await expect(client.ok('async.getTask', { sessionId, taskId: paired.taskId })).resolves.toMatchObject({
        prompt: 'ship it 🚀',
      });
    });

    it('answers params nested deeper than 64 levels with invalid_params at the params itself', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'd', replyAll('{{data}}'), { wakeEvents: ['e'] });
      /** `levels` objects, one inside the other. */
      const nest = (levels: number): unknown => (levels === 0 ? 'leaf' : { a: nest(levels - 1) });
      const arrays = (levels: number): unknown => (levels === 0 ? 1 : [arrays(levels - 1)]);

      // The params object is level 1, so `data` may hold 63 more.
      const deepest = await client.ok('async.broadcastEvent', { sessionId, event: 'e', data: nest(63) });
      expect(deepest).toEqual({ event: 'e', delivered: ['d'], woke: [] });
      await expect(push(sessionId, 'async.event.broadcast')).resolves.toMatchObject({ data: nest(63) });

      for (const data of [nest(64), arrays(64), { ok: 1, list: [1, nest(70)] }, arrays(1_000)]) {
        const error = await rejects(
          'async.broadcastEvent',
          { sessionId, event: 'e', data },
          'invalid_params',
          [''],
        );
        expect(error.data.issues![0].message).toMatch(/64/);
      }
      await rejects(
        'async.sendTask',
        { sessionId, agentId: 'd', prompt: 'p', extra: nest(64) },
        'invalid_params',
        [''],
      );
      const started = await push(sessionId, 'async.task.started', (p) => p.agentId === 'd');
      await client.waitForTaskEnd(started.taskId);
      expect(pushesOf(sessionId, 'async.event.broadcast')).toHaveLength(1);
      expect(pushesOf(sessionId, 'async.task.started')).toHaveLength(1);
    });

    it('answers params over 256 KiB with limit_exceeded, and takes them at exactly the limit', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'big', replyAll('ok'), {}, { autoStart: false });
      const limit = 256 * 1024;
      const sized = (bytes: number) => {
        const base = { sessionId, agentId: 'big', prompt: '' };
        return { ...base, prompt: 'x'.repeat(bytes - JSON.stringify(base).length) };
      };
      expect(JSON.stringify(sized(limit)).length).toBe(limit);

      await expect(task(sessionId, 'big', sized(limit).prompt)).resolves.toMatchObject({ queueSize: 1 });
      await rejects('async.sendTask', sized(limit + 1), 'limit_exceeded');
      await rejects('async.sendTask', sized(600 * 1024), 'limit_exceeded');
      await rejects(
        'async.sendMail',
        { sessionId, to: 'big', subject: 's', body: 'é'.repeat(limit / 2) },
        'limit_exceeded',
      );
      expect((await states(sessionId)).big.queue_size).toBe(1);
    });

    const unknownSessionCalls: Array<[string, (sessionId: string) => Record<string, unknown>]> = [
      ['session.subscribe', (sessionId) => ({ sessionId })],
      ['session.stop', (sessionId) => ({ sessionId })],
      ['async.createAgent', (sessionId) => ({ sessionId, agentId: 'a' })],
      ['async.startAgent', (sessionId) => ({ sessionId, agentId: 'a' })],
      ['async.stopAgent', (sessionId) => ({ sessionId, agentId: 'a' })],
      ['async.sleepAgent', (sessionId) => ({ sessionId, agentId: 'a', durationSeconds: 5 })],
      ['async.wakeAgent', (sessionId) => ({ sessionId, agentId: 'a' })],
      ['async.sendTask', (sessionId) => ({ sessionId, agentId: 'a', prompt: 'p' })],
      ['async.getAgentStates', (sessionId) => ({ sessionId })],
      ['async.broadcastEvent', (sessionId) => ({ sessionId, event: 'e' })],
      ['async.getTask', (sessionId) => ({ sessionId, taskId: randomUUID() })],
      ['async.cancelTask', (sessionId) => ({ sessionId, taskId: randomUUID() })],
      ['async.sendMail', (sessionId) => ({ sessionId, to: 'a', subject: 's', body: 'b' })],
      ['async.listMail', (sessionId) => ({ sessionId })],
      ['async.getHistory', (sessionId) => ({ sessionId })],
    ];

    it.each(unknownSessionCalls)(
      'answers %s on an unknown session with session_not_found',
      async (method, params) => {
        const sessionId = newSessionId('ghost');
        await rejects(method, params(sessionId), 'session_not_found');
        const { sessions } = await client.ok('session.list', {});
        expect(sessions.map((s: any) => s.sessionId)).not.toContain(sessionId);
      },
    );

    it('answers every agent method on an unknown agentId (also one of another session) with agent_not_found', async () => {
      const sessionId = await startSession(client, newSessionId());
      const other = await startSession(client, newSessionId());
      await createScripted(client, other, 'elsewhere', replyAll('ok'));
      for (const agentId of ['nobody', 'elsewhere']) {
        for (const [method, extra] of [
          ['async.startAgent', {}],
          ['async.stopAgent', {}],
          ['async.sleepAgent', { durationSeconds: 5 }],
          ['async.wakeAgent', {}],
          ['async.sendTask', { prompt: 'p' }],
        ] as const) {
          await rejects(method, { sessionId, agentId, ...extra }, 'agent_not_found');
        }
        await rejects(
          'async.sendMail',
          { sessionId, to: agentId, subject: 's', body: 'b' },
          'agent_not_found',
        );
      }
      expect((await states(other)).elsewhere.state).toBe('idle');
    });

    it('replies to an emit without params, and survives an emit without an ack', async () => {
      const emit = (name: string) =>
        new Promise<any>((resolve) => {
          client.socket.emit(name, resolve);
        });
      await expect(emit('session.list')).resolves.toEqual({ result: { sessions: expect.any(Array) } });
      await expect(emit('templates.list')).resolves.toEqual({ result: { templates: expect.any(Array) } });
      await expect(emit('async.getAgentStates')).resolves.toEqual({
        error: {
          code: CODES.invalid_params,
          message: expect.any(String),
          data: { reason: 'invalid_params', issues: [{ path: 'sessionId', message: expect.any(String) }] },
        },
      });
      await expect(emit('no.such.method')).resolves.toMatchObject({
        error: { code: CODES.method_not_found, data: { reason: 'method_not_found' } },
      });

      client.socket.emit('async.getAgentStates', { bogus: true });
      client.socket.emit('no.such.method');
      client.socket.emit('async.sendTask', 'x'.repeat(300 * 1024));
      await expect(client.ok('session.list', {})).resolves.toHaveProperty('sessions');
      expect(client.socket.connected).toBe(true);
    });
  });
});

describe('async.sendTask against a full queue', () => {
  let sut: TestApp;
  let client: TestClient;

  beforeAll(async () => {
    sut = await startTestApp({ env: { MAX_QUEUE_SIZE: '2' } });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  const send = (params: Record<string, unknown>) => client.call('async.sendTask', params);

  it('answers a repeated idempotencyKey with the original taskId even when the queue is full', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'full', replyAll('{{prompt}}'), {}, { autoStart: false });
    const task = (prompt: string, idempotencyKey?: string) =>
      send({ sessionId, agentId: 'full', prompt, ...(idempotencyKey ? { idempotencyKey } : {}) });

    const first = await task('one', 'k-1');
    const second = await task('two', 'k-2');
    expect(first).toEqual({ result: { taskId: expect.any(String), queued: true, queueSize: 1 } });
    expect(second).toEqual({ result: { taskId: expect.any(String), queued: true, queueSize: 2 } });
    const firstId = (first as any).result.taskId;
    const secondId = (second as any).result.taskId;
    for (const refused of [await task('three', 'k-3'), await task('no key')]) {
      expect(refused).toMatchObject({
        error: { code: CODES.limit_exceeded, data: { reason: 'limit_exceeded' } },
      });
    }

    // A client retrying an acknowledged send learns its task, not that the queue is full.
    await expect(task('one, retried', 'k-1')).resolves.toEqual({
      result: { taskId: firstId, queued: true, queueSize: 2 },
    });
    await expect(task('two, retried', 'k-2')).resolves.toEqual({
      result: { taskId: secondId, queued: true, queueSize: 2 },
    });
    const { agents } = await client.ok('async.getAgentStates', { sessionId });
    expect(agents.full.queue_size).toBe(2);

    await client.ok('async.startAgent', { sessionId, agentId: 'full' });
    await expect(client.waitForTaskEnd(firstId)).resolves.toMatchObject({
      payload: { result: { final: 'one' } },
    });
    await expect(client.waitForTaskEnd(secondId)).resolves.toMatchObject({
      payload: { result: { final: 'two' } },
    });
    const third = await client.ok('async.sendTask', {
      sessionId,
      agentId: 'full',
      prompt: 'three',
      idempotencyKey: 'k-3',
    });
    await expect(client.waitForTaskEnd(third.taskId)).resolves.toMatchObject({
      payload: { result: { final: 'three' } },
    });
    const started = client
      .of('async.task.started')
      .filter((p) => p.sessionId === sessionId)
      .map((p) => p.taskId);
    expect(started).toEqual([firstId, secondId, third.taskId]);
  });
});

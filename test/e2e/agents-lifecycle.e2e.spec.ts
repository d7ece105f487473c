import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { sessionProbe } from '../support/session-probe';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

describe('agent lifecycle: sleep, wake, stop, start, priorities and limits', () => {
  let sut: TestApp;
  let clock: ArmedTimersClock;
  let client: TestClient;

  beforeAll(async () => {
    clock = new ArmedTimersClock();
    sut = await startTestApp({ clock });
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  const { of, statesOf, sendTask, completed, stateChange, atLeast } = sessionProbe(() => client);

  const iso = (ms: number) => new Date(ms).toISOString();

  /** The agent's state changes to `sleeping` as the session's history holds them (every one committed so far). */
  const sleepsOf = async (sessionId: string, agentId: string) => {
    const { events } = await client.ok('async.getHistory', { sessionId });
    return (events as any[]).filter(
      (e) =>
        e.type === 'async.agent.stateChanged' &&
        e.payload.agentId === agentId &&
        e.payload.state === 'sleeping',
    );
  };

  describe('sleep', () => {
    it('with durationSeconds ends exactly on time, not a millisecond before', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'napper', replyAll('ok'));

      const slept = await client.ok('async.sleepAgent', {
        sessionId,
        agentId: 'napper',
        durationSeconds: 60,
      });

      expect(slept).toEqual({
        agentId: 'napper',
        state: 'sleeping',
        sleepingUntil: iso(clock.now() + 60_000),
        wakeEvents: [],
      });
      await clock.whenArmed(60_000);
      clock.advance(59_999);
      expect((await statesOf(sessionId)).napper).toMatchObject({
        state: 'sleeping',
        sleeping_until: slept.sleepingUntil,
      });
      clock.advance(1);
      await expect(stateChange(sessionId, 'napper', (p) => p.previous === 'sleeping')).resolves.toMatchObject(
        {
          state: 'idle',
          reason: 'timer',
        },
      );
      expect((await statesOf(sessionId)).napper).toMatchObject({ state: 'idle', sleeping_until: null });
    });

    it('holds the queue: a task sent while asleep stays queued and runs after the wake', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'napper', replyAll('did it'));
      await expect(client.ok('async.sleepAgent', { sessionId, agentId: 'napper' })).resolves.toEqual({
        agentId: 'napper',
        state: 'sleeping',
        sleepingUntil: null,
        wakeEvents: [],
      });

      const task = await sendTask(sessionId, 'napper', 'later please');

      expect(task).toMatchObject({ queued: true, queueSize: 1 });
      expect((await statesOf(sessionId)).napper).toMatchObject({
        state: 'sleeping',
        queue_size: 1,
        current_task: null,
      });
      await expect(client.ok('async.getTask', { sessionId, taskId: task.taskId })).resolves.toMatchObject({
        state: 'queued',
      });
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'napper' })).resolves.toEqual({
        agentId: 'napper',
        state: 'idle',
        woke: true,
      });
      await expect(completed(task.taskId)).resolves.toMatchObject({ result: { final: 'did it' } });
      const woke = await stateChange(sessionId, 'napper', (p) => p.previous === 'sleeping');
      const started = of('async.task.started', sessionId, 'napper');
      expect(started).toHaveLength(1);
      expect(started[0].seq).toBeGreaterThan(woke.seq);
    });

    it('lets a running step finish first, then the agent sleeps', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'worker', [
        { when: { kind: 'task' }, do: [{ reply: 'finished {{prompt}}', delayMs: 4_101 }] },
      ]);
      const task = await sendTask(sessionId, 'worker', 'the job');
      await clock.whenArmed(4_101); // mid-step

      const slept = await client.ok('async.sleepAgent', { sessionId, agentId: 'worker' });

      expect(slept).toMatchObject({ state: 'sleeping', sleepingUntil: null });
      expect((await statesOf(sessionId)).worker).toMatchObject({ current_task: 'task' });
      clock.advance(4_101);
      await expect(completed(task.taskId)).resolves.toMatchObject({ result: { final: 'finished the job' } });
      expect((await statesOf(sessionId)).worker).toMatchObject({
        state: 'sleeping',
        current_task: null,
        queue_size: 0,
      });
      const changes = of('async.agent.stateChanged', sessionId, 'worker');
      expect(changes[changes.length - 1]).toMatchObject({ state: 'sleeping' });

      const next = await sendTask(sessionId, 'worker', 'the next job');
      expect((await statesOf(sessionId)).worker).toMatchObject({ state: 'sleeping', queue_size: 1 });
      await client.ok('async.wakeAgent', { sessionId, agentId: 'worker' });
      await clock.advanceWhenArmed(4_101);
      await completed(next.taskId);
    });

    it('from the sleep tool takes effect when the step ends, for the deadline the tool returned', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'dozer', [
        {
          when: { kind: 'task' },
          do: [
            { tool: 'sleep', args: { durationSeconds: 30 } },
            { reply: 'good night until {{result.sleepingUntil}}', delayMs: 4_102 },
          ],
        },
      ]);
      const task = await sendTask(sessionId, 'dozer', 'rest');
      const toolCall = await client.waitFor(
        'async.tool.called',
        (p) => p.sessionId === sessionId && p.agentId === 'dozer',
      );
      expect(toolCall).toMatchObject({ tool: 'sleep', result: { sleepingUntil: iso(clock.now() + 30_000) } });
      await clock.whenArmed(4_102); // the step after the tool call is under way

      expect((await statesOf(sessionId)).dozer).toMatchObject({ state: 'active', current_task: 'task' });
      clock.advance(4_102);

      await expect(completed(task.taskId)).resolves.toMatchObject({
        result: { final: `good night until ${toolCall.result.sleepingUntil}` },
      });
      await expect(stateChange(sessionId, 'dozer', (p) => p.state === 'sleeping')).resolves.toMatchObject({
        previous: 'active',
        reason: 'sleep_tool',
      });
      expect((await statesOf(sessionId)).dozer).toMatchObject({
        state: 'sleeping',
        sleeping_until: toolCall.result.sleepingUntil,
      });
      clock.advance(Date.parse(toolCall.result.sleepingUntil) - clock.now());
      await expect(stateChange(sessionId, 'dozer', (p) => p.previous === 'sleeping')).resolves.toMatchObject({
        state: 'idle',
        reason: 'timer',
      });
    });
  });

  describe('the sleep tool with wakeEvents', () => {
    const dozeThenReply = [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'sleep', args: { wakeEvents: ['ping'] } },
          { reply: 'dozing off', delayMs: 4_201 },
        ],
      },
      { when: { kind: 'event' }, do: [{ reply: 'got {{event}} {{data}}' }] },
    ];

    it('listens at once: an event broadcast while the step still runs is delivered, and the agent stays awake for it', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'dozer', dozeThenReply, { wakeEvents: [] });
      const task = await sendTask(sessionId, 'dozer', 'wind down');
      await client.waitFor(
        'async.tool.called',
        (p) => p.sessionId === sessionId && p.agentId === 'dozer' && p.tool === 'sleep',
      );
      await clock.whenArmed(4_201); // the reply step is under way; the sleep has not started

      expect((await statesOf(sessionId)).dozer).toMatchObject({
        state: 'active',
        current_task: 'task',
        wake_events: ['ping'],
      });
      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'pong' })).resolves.toEqual({
        event: 'pong',
        delivered: [],
        woke: [],
      });
      await expect(
        client.ok('async.broadcastEvent', { sessionId, event: 'ping', data: { n: 1 } }),
      ).resolves.toEqual({ event: 'ping', delivered: ['dozer'], woke: [] });
      clock.advance(4_201);

      await expect(completed(task.taskId)).resolves.toMatchObject({ result: { final: 'dozing off' } });
      const started = await atLeast('async.task.started', sessionId, 'dozer', 2);
      expect(started[1]).toMatchObject({ kind: 'event' });
      await expect(completed(started[1].taskId)).resolves.toMatchObject({
        result: { final: 'got ping {"n":1}' },
      });
      await expect(stateChange(sessionId, 'dozer', (p) => p.previous === 'active')).resolves.toMatchObject({
        state: 'idle',
        reason: 'task_done',
      });
      expect(await sleepsOf(sessionId, 'dozer')).toEqual([]);
      expect((await statesOf(sessionId)).dozer).toMatchObject({
        state: 'idle',
        queue_size: 0,
        sleeping_until: null,
        wake_events: ['ping'],
      });
    });

    it('still sleeps when nothing it listens to came during the step, and the event wakes it later', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'dozer', dozeThenReply, { wakeEvents: [] });
      const task = await sendTask(sessionId, 'dozer', 'wind down');
      await clock.whenArmed(4_201);
      // A task is not what it listens for: it waits in the queue while the agent sleeps.
      const queued = await sendTask(sessionId, 'dozer', 'later');
      clock.advance(4_201);

      await completed(task.taskId);
      await expect(stateChange(sessionId, 'dozer', (p) => p.state === 'sleeping')).resolves.toMatchObject({
        reason: 'sleep_tool',
      });
      expect((await statesOf(sessionId)).dozer).toMatchObject({
        state: 'sleeping',
        queue_size: 1,
        wake_events: ['ping'],
      });

      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'ping' })).resolves.toEqual({
        event: 'ping',
        delivered: ['dozer'],
        woke: ['dozer'],
      });
      // The queued task comes first (same priority, older) and asks for sleep again, but the event
      // it listens to is waiting: it stays awake and takes it.
      await clock.advanceWhenArmed(4_201);
      await completed(queued.taskId);
      const started = await atLeast('async.task.started', sessionId, 'dozer', 3);
      expect(started.map((p) => p.kind)).toEqual(['task', 'task', 'event']);
      await expect(completed(started[2].taskId)).resolves.toMatchObject({ result: { final: 'got ping {}' } });
      expect(await sleepsOf(sessionId, 'dozer')).toHaveLength(1);
      expect((await statesOf(sessionId)).dozer).toMatchObject({ state: 'idle', queue_size: 0 });
    });
  });

  describe('wake events', () => {
    it('broadcastEvent delivers the event and its data as work, waking sleepers and skipping the rest', async () => {
      const sessionId = await startSession(client, newSessionId());
      const onEvent = [
        { when: { kind: 'event' }, do: [{ reply: '{{agentId}} got {{event}} with {{data}}' }] },
      ];
      const listening = { wakeEvents: ['deploy_done'] };
      await createScripted(client, sessionId, 'sleeper', onEvent, listening);
      await createScripted(client, sessionId, 'awake', onEvent, listening);
      await createScripted(client, sessionId, 'deaf', onEvent, { wakeEvents: ['other_event'] });
      await createScripted(client, sessionId, 'offline', onEvent, listening, { autoStart: false });
      await expect(client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper' })).resolves.toMatchObject({
        wakeEvents: ['deploy_done'],
      });
      await client.ok('async.sleepAgent', { sessionId, agentId: 'deaf' });

      const broadcast = await client.ok('async.broadcastEvent', {
        sessionId,
        event: 'deploy_done',
        data: { version: 7, ok: true },
      });

      expect([...broadcast.delivered].sort()).toEqual(['awake', 'sleeper']);
      expect(broadcast).toMatchObject({ event: 'deploy_done', woke: ['sleeper'] });
      await expect(
        client.waitFor('async.event.broadcast', (p) => p.sessionId === sessionId),
      ).resolves.toMatchObject({ event: 'deploy_done', data: { version: 7, ok: true }, woke: ['sleeper'] });
      await expect(
        stateChange(sessionId, 'sleeper', (p) => p.previous === 'sleeping'),
      ).resolves.toMatchObject({
        reason: 'event:deploy_done',
      });
      for (const agentId of ['sleeper', 'awake']) {
        const started = await client.waitFor(
          'async.task.started',
          (p) => p.sessionId === sessionId && p.agentId === agentId,
        );
        expect(started.kind).toBe('event');
        const { result } = await completed(started.taskId);
        const prefix = `${agentId} got deploy_done with `;
        expect(result.final.startsWith(prefix)).toBe(true);
        expect(JSON.parse(result.final.slice(prefix.length))).toEqual({ version: 7, ok: true });
        await expect(
          client.ok('async.getTask', { sessionId, taskId: started.taskId }),
        ).resolves.toMatchObject({
          agentId,
          prompt: 'deploy_done',
          state: 'done',
        });
      }
      const states = await statesOf(sessionId);
      expect(states.deaf).toMatchObject({ state: 'sleeping', queue_size: 0 });
      expect(states.offline).toMatchObject({ state: 'stopped', queue_size: 0 });
      expect(of('async.task.started', sessionId, 'deaf')).toEqual([]);
      expect(of('async.task.started', sessionId, 'offline')).toEqual([]);
    });

    it('mail wakes a sleeper only with mail_received (any mail) or high_priority_mail (high, urgent)', async () => {
      const sessionId = await startSession(client, newSessionId());
      const readMail = [{ when: { kind: 'mailbox_message' }, do: [{ reply: 'read {{subject}}' }] }];
      const sleepers: Record<string, string[]> = {
        anyMail: ['mail_received'],
        highMail: ['high_priority_mail'],
        urgentMail: ['high_priority_mail'],
        noMail: ['something_else'],
      };
      for (const [agentId, wakeEvents] of Object.entries(sleepers)) {
        await createScripted(client, sessionId, agentId, readMail);
        await expect(
          client.ok('async.sleepAgent', { sessionId, agentId, wakeEvents }),
        ).resolves.toMatchObject({
          wakeEvents,
        });
      }
      const mail = (to: string, subject: string, priority: string) =>
        client.ok('async.sendMail', { sessionId, to, subject, body: subject, priority });
      const stateNow = async (agentId: string) => (await statesOf(sessionId))[agentId];

      // Waking happens in the same transaction as the delivery, so the state is settled when the call returns.
      await mail('anyMail', 'low one', 'low');
      expect((await stateNow('anyMail')).state).not.toBe('sleeping');
      await mail('highMail', 'normal one', 'normal');
      await mail('highMail', 'low one', 'low');
      expect(await stateNow('highMail')).toMatchObject({ state: 'sleeping', queue_size: 2 });
      await mail('noMail', 'urgent one', 'urgent');
      await mail('noMail', 'high one', 'high');
      expect(await stateNow('noMail')).toMatchObject({ state: 'sleeping', queue_size: 2 });

      await mail('highMail', 'high one', 'high');
      await mail('urgentMail', 'urgent one', 'urgent');

      await expect(
        stateChange(sessionId, 'anyMail', (p) => p.previous === 'sleeping'),
      ).resolves.toMatchObject({
        reason: 'mail_received',
      });
      for (const agentId of ['highMail', 'urgentMail']) {
        await expect(
          stateChange(sessionId, agentId, (p) => p.previous === 'sleeping'),
        ).resolves.toMatchObject({
          reason: 'high_priority_mail',
        });
      }
      // highMail takes its queued mail too, by priority.
      const highDone = await atLeast('async.task.completed', sessionId, 'highMail', 3);
      expect(highDone.map((p) => p.result.final)).toEqual([
        'read high one',
        'read normal one',
        'read low one',
      ]);
      expect(await stateNow('noMail')).toMatchObject({ state: 'sleeping', queue_size: 2 });
      expect(of('async.task.started', sessionId, 'noMail')).toEqual([]);
    });
  });

  describe('stop and start', () => {
    it('stopAgent keeps the queue and startAgent runs it', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'worker', [{ when: {}, do: [{ reply: 'did {{prompt}}' }] }]);
      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'worker' })).resolves.toEqual({
        agentId: 'worker',
        state: 'stopped',
      });
      const a = await sendTask(sessionId, 'worker', 'a');
      const b = await sendTask(sessionId, 'worker', 'b');
      expect((await statesOf(sessionId)).worker).toMatchObject({ state: 'stopped', queue_size: 2 });

      await expect(client.ok('async.startAgent', { sessionId, agentId: 'worker' })).resolves.toEqual({
        agentId: 'worker',
        state: 'idle',
      });

      await expect(completed(a.taskId)).resolves.toMatchObject({ result: { final: 'did a' } });
      await expect(completed(b.taskId)).resolves.toMatchObject({ result: { final: 'did b' } });
    });

    it('stopAgent mid-step puts the item back; it runs again after startAgent', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'worker', [
        { when: {}, do: [{ reply: 'ran {{prompt}}', delayMs: 4_103 }] },
      ]);
      const first = await sendTask(sessionId, 'worker', 'first');
      await clock.whenArmed(4_103);
      const second = await sendTask(sessionId, 'worker', 'second');

      await client.ok('async.stopAgent', { sessionId, agentId: 'worker' });

      await expect(stateChange(sessionId, 'worker', (p) => p.state === 'stopped')).resolves.toMatchObject({
        previous: 'active',
        reason: 'stopped',
      });
      await expect(client.ok('async.getTask', { sessionId, taskId: second.taskId })).resolves.toMatchObject({
        state: 'queued',
      });
      await client.ok('async.startAgent', { sessionId, agentId: 'worker' });
      await atLeast('async.task.started', sessionId, 'worker', 2); // the first task, again
      await clock.advanceWhenArmed(4_103);
      await expect(completed(first.taskId)).resolves.toMatchObject({ result: { final: 'ran first' } });
      await clock.advanceWhenArmed(4_103);
      await expect(completed(second.taskId)).resolves.toMatchObject({ result: { final: 'ran second' } });
      expect(of('async.task.started', sessionId, 'worker').map((p) => p.taskId)).toEqual([
        first.taskId,
        first.taskId,
        second.taskId,
      ]);
      expect(of('async.task.failed', sessionId, 'worker')).toEqual([]);
    });

    it('takes work by priority, urgent > high > normal > low, then first in first out', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'worker', replyAll('ok'), {}, { autoStart: false });
      const order = ['low', 'normal', 'urgent', 'high', 'normal', 'urgent', 'low', 'high'];
      const tasks: Array<{ taskId: string; priority: string; n: number }> = [];
      for (const [n, priority] of order.entries()) {
        const { taskId } = await sendTask(sessionId, 'worker', `${priority} #${n}`, priority);
        tasks.push({ taskId, priority, n });
      }

      await client.ok('async.startAgent', { sessionId, agentId: 'worker' });

      for (const t of tasks) {
        await completed(t.taskId);
      }
      const rank: Record<string, number> = { urgent: 0, high: 1, normal: 2, low: 3 };
      const expected = [...tasks].sort((x, y) => rank[x.priority] - rank[y.priority] || x.n - y.n);
      expect(of('async.task.started', sessionId, 'worker').map((p) => p.taskId)).toEqual(
        expected.map((t) => t.taskId),
      );
      expect(expected.map((t) => t.n)).toEqual([2, 5, 3, 7, 1, 4, 0, 6]);
    });
  });

  describe('limits', () => {
    it('maxStepsPerTask fails the task with limit_exceeded and the agent carries on', async () => {
      const sessionId = await startSession(client, newSessionId());
      const look = { tool: 'list_agents', args: {} };
      await createScripted(
        client,
        sessionId,
        'stepper',
        [
          { when: { match: 'too long' }, do: [look, look, look, { reply: 'never reached' }] },
          { when: { match: 'just fits' }, do: [look, look, { reply: 'fits' }] },
          { when: {}, do: [{ reply: 'short' }] },
        ],
        { limits: { maxStepsPerTask: 3 } },
      );

      const long = await sendTask(sessionId, 'stepper', 'too long');
      const fits = await sendTask(sessionId, 'stepper', 'just fits');
      const short = await sendTask(sessionId, 'stepper', 'short one');

      const failed = await client.waitForTaskEnd(long.taskId);
      expect(failed).toMatchObject({
        name: 'async.task.failed',
        payload: {
          error: { code: 'limit_exceeded', message: expect.stringMatching(/step limit/) },
          errorCount: 1,
        },
      });
      await expect(completed(fits.taskId)).resolves.toMatchObject({ result: { final: 'fits' } });
      await expect(completed(short.taskId)).resolves.toMatchObject({ result: { final: 'short' } });
      expect(
        of('async.tool.called', sessionId, 'stepper').filter((p) => p.taskId === long.taskId),
      ).toHaveLength(3);
      expect((await statesOf(sessionId)).stepper).toMatchObject({
        state: 'idle',
        error_count: 1,
        last_error: expect.stringMatching(/step limit/),
      });
      expect(of('async.agent.stateChanged', sessionId, 'stepper').map((p) => p.state)).not.toContain(
        'stopped',
      );
    });

    it('maxMailPerMinute stops one of two agents mailing each other forever', async () => {
      const sessionId = await startSession(client, newSessionId());
      const rally = (to: string) => [
        {
          when: { kind: 'mailbox_message' },
          do: [{ tool: 'send_mail', args: { to, subject: 'rally', body: '{{body}}+' } }, { reply: 'sent' }],
        },
      ];
      const limits = { limits: { maxMailPerMinute: 5 } };
      await createScripted(client, sessionId, 'ping', rally('pong'), limits);
      await createScripted(client, sessionId, 'pong', rally('ping'), limits);

      await client.ok('async.sendMail', { sessionId, to: 'ping', subject: 'serve', body: 'ball' });

      await expect(stateChange(sessionId, 'ping', (p) => p.state === 'stopped')).resolves.toMatchObject({
        reason: 'limit_exceeded',
      });
      const failed = of('async.task.failed', sessionId, 'ping');
      expect(failed).toEqual([
        expect.objectContaining({
          error: { code: 'limit_exceeded', message: expect.stringMatching(/mail rate/) },
        }),
      ]);
      // pong answered every mail ping managed to send, then the rally was over.
      await atLeast('async.task.completed', sessionId, 'pong', 5);
      const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'ping' });
      expect(messages.filter((m: any) => m.from === 'ping')).toHaveLength(5);
      expect(messages.filter((m: any) => m.from === 'pong')).toHaveLength(5);
      const states = await statesOf(sessionId);
      expect(states.ping).toMatchObject({ state: 'stopped', queue_size: 0 });
      expect(states.pong).toMatchObject({ state: 'idle', queue_size: 0 });
    });

    it('maxTokens stops an agent of a ping-pong pair, which ends the loop', async () => {
      const sessionId = await startSession(client, newSessionId());
      const rally = (to: string) => [
        {
          when: { kind: 'mailbox_message' },
          do: [{ tool: 'send_mail', args: { to, subject: 'rally', body: 'again' } }, { reply: 'sent' }],
        },
      ];
      await createScripted(client, sessionId, 'tik', rally('tok'), { limits: { maxTokens: 3_000 } });
      await createScripted(client, sessionId, 'tok', rally('tik'));

      await client.ok('async.sendMail', { sessionId, to: 'tik', subject: 'serve', body: 'go' });

      await expect(stateChange(sessionId, 'tik', (p) => p.state === 'stopped')).resolves.toMatchObject({
        reason: 'limit_exceeded',
      });
      const tikDone = of('async.task.completed', sessionId, 'tik').length;
      expect(tikDone).toBeGreaterThan(1);
      await atLeast('async.task.completed', sessionId, 'tok', tikDone);
      const states = await statesOf(sessionId);
      expect(states.tik).toMatchObject({ state: 'stopped', queue_size: 1 });
      expect(states.tik.tokens_used).toBeGreaterThanOrEqual(3_000);
      expect(states.tok).toMatchObject({ state: 'idle', queue_size: 0 });
      const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'tok', limit: 500 });
      expect(messages.filter((m: any) => m.from === 'tik')).toHaveLength(tikDone);
      expect(messages.filter((m: any) => m.from === 'tok')).toHaveLength(tikDone);
    });

    it('answers malformed tool args and unknown tools with an error result, not a failed agent', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(
        client,
        sessionId,
        'clumsy',
        [
          {
            when: { kind: 'task', match: 'clumsy' },
            do: [
              { tool: 'send_mail', args: { to: 42, subject: 'hi', body: 'x' } },
              { tool: 'send_mail', args: { to: 'user', subject: 'hi', body: 'x', cc: 'boss' } },
              { tool: 'teleport', args: { where: 'moon' } },
              { tool: 'sleep', args: {} },
              { reply: 'survived: {{result.error}}' },
            ],
          },
          { when: {}, do: [{ reply: 'next one ran' }] },
        ],
        { tools: ['send_mail', 'list_agents'] },
      );

      const clumsy = await sendTask(sessionId, 'clumsy', 'be clumsy');
      const next = await sendTask(sessionId, 'clumsy', 'be careful');

      const done = await completed(clumsy.taskId);
      const results = of('async.tool.called', sessionId, 'clumsy').map((p) => [p.tool, p.result]);
      expect(results).toEqual([
        ['send_mail', { error: expect.stringMatching(/^invalid arguments: to: /) }],
        ['send_mail', { error: expect.stringMatching(/^invalid arguments: .*cc/) }],
        ['teleport', { error: expect.stringMatching(/^unknown tool 'teleport'/) }],
        ['sleep', { error: expect.stringMatching(/^unknown tool 'sleep'/) }],
      ]);
      expect(done.result.final).toBe(`survived: ${results[3][1].error}`);
      await expect(completed(next.taskId)).resolves.toMatchObject({ result: { final: 'next one ran' } });
      expect((await statesOf(sessionId)).clumsy).toMatchObject({ state: 'idle', error_count: 0 });
      const { messages } = await client.ok('async.listMail', { sessionId });
      expect(messages).toEqual([]);
    });
  });
});

import { AgentRepository } from 'src/agents/agent.repository';
import { DatabaseService, Tx } from 'src/database/database.service';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { SwitchService } from 'src/tools/switch.service';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { sessionProbe } from '../support/session-probe';
import { ArmedTimersClock, startTestApp, TestApp } from '../support/test-app';

/** A step that asks `to` and waits; the next step sees the reply (or the error) at `{{result}}`. */
const ask = (to: string, extra: Record<string, unknown> = {}) => ({
  tool: 'send_mail_with_switch',
  args: { to, subject: 'Question', body: '{{prompt}}', ...extra },
});

/** Any work item is passed on to `next` with a switch; the answer wraps whatever came back. */
const relay = (next: string) => [
  {
    when: {},
    do: [ask(next), { reply: '{{agentId}}[{{result.reply.body}}{{result.error}}]' }],
  },
];

describe('send_mail_with_switch', () => {
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

  const { of, statesOf, sendTask, completed } = sessionProbe(() => client);

  /** The switch mail `from` sent to `to`, as pushed. */
  const switchMail = async (sessionId: string, from: string, to: string) =>
    (
      await client.waitFor(
        'async.mail.sent',
        (p) => p.sessionId === sessionId && p.message.from === from && p.message.to === to,
      )
    ).message;

  /**
   * The taskId of the target's queued work item for a mail. The protocol names it only once the
   * item starts, so the test reads it from the app's own repository.
   */
  const queuedItemFor = async (sessionId: string, messageId: string) => {
    const items = sut.app.get(WorkItemRepository);
    const item = await sut.app
      .get(DatabaseService)
      .read((tx) => items.findQueuedForMail(tx, sessionId, messageId));
    expect(item).toBeDefined();
    return item!.taskId;
  };

  const switchCall = (sessionId: string, agentId: string) =>
    client.waitFor(
      'async.tool.called',
      (p) => p.sessionId === sessionId && p.agentId === agentId && p.tool === 'send_mail_with_switch',
    );

  it("returns the target's reply as the tool result and stores that reply as read", async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('expert'), { reply: 'expert said: {{result.reply.body}}' }] },
    ]);
    await createScripted(client, sessionId, 'expert', [
      { when: { kind: 'mailbox_message' }, do: [{ reply: 'answer to "{{body}}" from {{agentId}}' }] },
    ]);

    const { taskId } = await sendTask(sessionId, 'asker', 'what is 6x7');

    await expect(completed(taskId)).resolves.toMatchObject({
      result: { final: 'expert said: answer to "what is 6x7" from expert' },
    });
    const call = await switchCall(sessionId, 'asker');
    expect(call).toMatchObject({
      taskId,
      args: { to: 'expert', subject: 'Question', body: 'what is 6x7' },
      result: {
        reply: { from: 'expert', body: 'answer to "what is 6x7" from expert', messageId: expect.any(String) },
      },
    });
    const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'asker' });
    const question = messages.find((m: any) => m.from === 'asker');
    const reply = messages.find((m: any) => m.messageId === call.result.reply.messageId);
    expect(question).toMatchObject({ to: 'expert', priority: 'high', status: 'replied' });
    expect(reply).toMatchObject({
      from: 'expert',
      to: 'asker',
      status: 'read',
      replyTo: question.messageId,
      threadId: question.threadId,
    });
    // The reply went to the waiting call, not into the asker's queue as new work.
    const states = await statesOf(sessionId);
    expect(states.asker).toMatchObject({ state: 'idle', queue_size: 0 });
    expect(of('async.task.started', sessionId, 'asker')).toHaveLength(1);
  });

  it('keeps the caller waiting until the reply arrives', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('thinker'), { reply: 'ok: {{result.reply.body}}' }] },
    ]);
    await createScripted(client, sessionId, 'thinker', [
      { when: { kind: 'mailbox_message' }, do: [{ reply: 'pondered', delayMs: 4_001 }] },
    ]);

    const { taskId } = await sendTask(sessionId, 'asker', 'think hard');

    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'waiting',
      ),
    ).resolves.toMatchObject({ previous: 'active', reason: 'waiting_on:thinker' });
    await clock.whenArmed(4_001); // the thinker is mid-step on the switch mail
    const during = await statesOf(sessionId);
    expect(during.asker).toMatchObject({ state: 'waiting', current_task: 'task' });
    expect(during.thinker).toMatchObject({ state: 'active', current_task: 'mailbox_message' });

    clock.advance(4_001);

    await expect(completed(taskId)).resolves.toMatchObject({ result: { final: 'ok: pondered' } });
    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.previous === 'waiting',
      ),
    ).resolves.toMatchObject({ state: 'active', reason: 'reply_received' });
    const after = await statesOf(sessionId);
    expect(after.asker).toMatchObject({ state: 'idle', current_task: null });
  });

  it('makes the target take the switch mail before its other queued work, urgent tasks included', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('worker'), { reply: 'worker said: {{result.reply.body}}' }] },
    ]);
    await createScripted(
      client,
      sessionId,
      'worker',
      [
        { when: { kind: 'task' }, do: [{ reply: 'did {{prompt}}', delayMs: 4_002 }] },
        { when: { kind: 'mailbox_message' }, do: [{ reply: 'answered {{body}}' }] },
      ],
      {},
      { autoStart: false },
    );
    const t1 = await sendTask(sessionId, 'worker', 'normal one');
    const t2 = await sendTask(sessionId, 'worker', 'normal two');
    const t3 = await sendTask(sessionId, 'worker', 'urgent one', 'urgent');
    await client.ok('async.startAgent', { sessionId, agentId: 'worker' });
    await clock.whenArmed(4_002); // busy with the urgent task
    const t4 = await sendTask(sessionId, 'worker', 'urgent two', 'urgent');

    const asked = await sendTask(sessionId, 'asker', 'the question');
    await client.waitFor(
      'async.agent.stateChanged',
      (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'waiting',
    );
    clock.advance(4_002); // the urgent task ends; the switch mail goes next

    await expect(completed(asked.taskId)).resolves.toMatchObject({
      result: { final: 'worker said: answered the question' },
    });
    for (const task of [t4, t1, t2]) {
      await clock.advanceWhenArmed(4_002);
      await completed(task.taskId);
    }
    const started = of('async.task.started', sessionId, 'worker');
    expect(started.map((p) => p.kind)).toEqual(['task', 'mailbox_message', 'task', 'task', 'task']);
    expect(started.filter((p) => p.kind === 'task').map((p) => p.taskId)).toEqual([
      t3.taskId,
      t4.taskId,
      t1.taskId,
      t2.taskId,
    ]);
  });

  it('wakes a sleeping target, which answers before its queued task', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('sleeper'), { reply: 'sleeper said: {{result.reply.body}}' }] },
    ]);
    await createScripted(client, sessionId, 'sleeper', [
      { when: { kind: 'task' }, do: [{ reply: 'task {{prompt}}' }] },
      { when: { kind: 'mailbox_message' }, do: [{ reply: 'woke for {{body}}' }] },
    ]);
    await client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper', wakeEvents: [] });
    const queued = await sendTask(sessionId, 'sleeper', 'queued while asleep');
    expect((await statesOf(sessionId)).sleeper).toMatchObject({ state: 'sleeping', queue_size: 1 });

    const asked = await sendTask(sessionId, 'asker', 'are you up');

    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'sleeper' && p.previous === 'sleeping',
      ),
    ).resolves.toMatchObject({ reason: 'switch_mail' });
    await expect(completed(asked.taskId)).resolves.toMatchObject({
      result: { final: 'sleeper said: woke for are you up' },
    });
    await completed(queued.taskId);
    expect(of('async.task.started', sessionId, 'sleeper').map((p) => p.kind)).toEqual([
      'mailbox_message',
      'task',
    ]);
  });

  it('refuses at once a wait that closes a cycle A -> B -> A', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'alpha', relay('beta'));
    await createScripted(client, sessionId, 'beta', relay('alpha'));

    const { taskId } = await sendTask(sessionId, 'alpha', 'loop?');

    const done = await completed(taskId);
    const refused = await switchCall(sessionId, 'beta');
    expect(refused.result).toEqual({ error: expect.stringMatching(/cycle/) });
    expect(refused.result.error).toContain('beta -> alpha -> beta');
    expect(done.result.final).toBe(`alpha[beta[${refused.result.error}]]`);
    const betaStates = of('async.agent.stateChanged', sessionId, 'beta').map((p) => p.state);
    expect(betaStates).not.toContain('waiting');
    const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'beta' });
    expect(messages.filter((m: any) => m.from === 'beta' && m.to === 'alpha' && m.replyTo === null)).toEqual(
      [],
    );
  });

  it('refuses at once a wait that closes a longer cycle A -> B -> C -> A', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'a', relay('b'));
    await createScripted(client, sessionId, 'b', relay('c'));
    await createScripted(client, sessionId, 'c', relay('a'));

    const { taskId } = await sendTask(sessionId, 'a', 'round and round');

    const done = await completed(taskId);
    const refused = await switchCall(sessionId, 'c');
    expect(refused.result.error).toMatch(/cycle/);
    expect(refused.result.error).toContain('c -> a -> b -> c');
    expect(done.result.final).toBe(`a[b[c[${refused.result.error}]]]`);
    expect(of('async.agent.stateChanged', sessionId, 'c').map((p) => p.state)).not.toContain('waiting');
  });

  it('allows a chain of 5 waits and refuses a 6th', async () => {
    const sessionId = await startSession(client, newSessionId());
    const ids = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'];
    for (let i = 0; i < ids.length - 1; i++) {
      await createScripted(client, sessionId, ids[i], relay(ids[i + 1]));
    }
    await createScripted(client, sessionId, 'n7', replyAll('n7 answered'));

    const { taskId } = await sendTask(sessionId, 'n1', 'deep');

    const done = await completed(taskId);
    const refused = await switchCall(sessionId, 'n6');
    expect(refused.result.error).toMatch(/6 deep \(limit 5\)/);
    expect(done.result.final).toBe(`n1[n2[n3[n4[n5[n6[${refused.result.error}]]]]]]`);
    const accepted = await switchCall(sessionId, 'n5');
    expect(accepted.result).toMatchObject({ reply: { from: 'n6' } });
    for (const id of ['n1', 'n2', 'n3', 'n4', 'n5']) {
      expect(of('async.agent.stateChanged', sessionId, id).map((p) => p.state)).toContain('waiting');
    }
    expect(of('async.task.started', sessionId, 'n7')).toEqual([]);
  });

  it('ends the wait on timeout with an error result, and the caller goes on', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      {
        when: { kind: 'task' },
        do: [ask('busy', { timeoutSeconds: 30 }), { reply: 'carried on: {{result.error}}' }],
      },
    ]);
    await createScripted(client, sessionId, 'busy', [
      { when: { kind: 'task', match: 'slow' }, do: [{ reply: 'slow done', delayMs: 500_000 }] },
      { when: {}, do: [{ reply: 'quick {{kind}}' }] },
    ]);
    const slow = await sendTask(sessionId, 'busy', 'slow job');
    await clock.whenArmed(500_000); // busy is mid-step, so the switch mail waits in its queue

    const asked = await sendTask(sessionId, 'asker', 'anyone?');
    await client.waitFor(
      'async.agent.stateChanged',
      (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'waiting',
    );
    await clock.whenArmed(30_000);
    clock.advance(29_999);
    expect((await statesOf(sessionId)).asker.state).toBe('waiting');
    clock.advance(1);

    const done = await completed(asked.taskId);
    expect(done.result.final).toMatch(/^carried on: timeout: no reply from 'busy' within 30s/);
    const call = await switchCall(sessionId, 'asker');
    expect(call.result).toEqual({ error: expect.stringMatching(/timeout/) });
    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.previous === 'waiting',
      ),
    ).resolves.toMatchObject({ state: 'active', reason: 'switch_timeout' });
    // The unanswered mail left busy's queue with the wait.
    expect((await statesOf(sessionId)).busy).toMatchObject({ state: 'active', queue_size: 0 });

    clock.advance(500_000 - 30_000);
    await completed(slow.taskId);
    const later = await sendTask(sessionId, 'busy', 'after');
    await expect(completed(later.taskId)).resolves.toMatchObject({ result: { final: 'quick task' } });
    expect(of('async.task.started', sessionId, 'busy').map((p) => p.kind)).toEqual(['task', 'task']);
    const next = await sendTask(sessionId, 'asker', 'still alive?');
    await completed(next.taskId);
  });

  it('fails at once for mail to oneself, to an unknown agent and to a stopped agent', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'parked', replyAll('parked'), {}, { autoStart: false });
    await createScripted(client, sessionId, 'solo', [
      {
        when: { kind: 'task' },
        do: [ask('solo'), ask('ghost'), ask('parked'), { reply: 'after three refusals' }],
      },
    ]);

    const { taskId } = await sendTask(sessionId, 'solo', 'try them all');

    await expect(completed(taskId)).resolves.toMatchObject({ result: { final: 'after three refusals' } });
    const results = of('async.tool.called', sessionId, 'solo').map((p) => [p.args.to, p.result]);
    expect(results).toEqual([
      ['solo', { error: expect.stringMatching(/yourself/) }],
      ['ghost', { error: expect.stringMatching(/ghost/) }],
      ['parked', { error: expect.stringMatching(/stopped/) }],
    ]);
    expect(of('async.agent.stateChanged', sessionId, 'solo').map((p) => p.state)).not.toContain('waiting');
    const { messages } = await client.ok('async.listMail', { sessionId });
    expect(messages).toEqual([]);
    expect((await statesOf(sessionId)).parked).toMatchObject({ state: 'stopped', queue_size: 0 });
  });

  it('answers the waiter with an explicit reply_mail to the switch mail', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('helper'), { reply: 'got: {{result.reply.body}}' }] },
    ]);
    await createScripted(client, sessionId, 'helper', [
      {
        when: { kind: 'mailbox_message' },
        do: [
          { tool: 'reply_mail', args: { messageId: '{{messageId}}', body: 'explicit answer to {{body}}' } },
          { reply: 'final text that is not sent' },
        ],
      },
    ]);

    const asked = await sendTask(sessionId, 'asker', 'q?');

    await expect(completed(asked.taskId)).resolves.toMatchObject({
      result: { final: 'got: explicit answer to q?' },
    });
    const replied = await client.waitFor(
      'async.tool.called',
      (p) => p.sessionId === sessionId && p.agentId === 'helper' && p.tool === 'reply_mail',
    );
    const call = await switchCall(sessionId, 'asker');
    expect(call.result).toEqual({
      reply: { from: 'helper', body: 'explicit answer to q?', messageId: replied.result.messageId },
    });
    const helperTask = await client.waitFor<{ taskId: string }>(
      'async.task.started',
      (p) => p.sessionId === sessionId && p.agentId === 'helper',
    );
    await expect(completed(helperTask.taskId)).resolves.toMatchObject({
      result: { final: 'final text that is not sent' },
    });
    const { messages } = await client.ok('async.listMail', { sessionId, agentId: 'helper' });
    const fromHelper = messages.filter((m: any) => m.from === 'helper');
    expect(fromHelper).toEqual([
      expect.objectContaining({ messageId: replied.result.messageId, to: 'asker', status: 'read' }),
    ]);
  });

  it('never kills the caller: after a tool error or a failed target, its next task still runs', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'caller', [
      { when: { kind: 'task', match: 'ghost' }, do: [ask('ghost'), { reply: 'ghost: {{result.error}}' }] },
      {
        when: { kind: 'task', match: 'fragile' },
        do: [ask('fragile'), { reply: 'fragile: {{result.error}}' }],
      },
      { when: { kind: 'task' }, do: [{ reply: 'still here' }] },
    ]);
    // One model call per task: its two-step rule fails with limit_exceeded.
    await createScripted(
      client,
      sessionId,
      'fragile',
      [{ when: {}, do: [{ tool: 'list_agents', args: {} }, { reply: 'never' }] }],
      { limits: { maxStepsPerTask: 1 } },
    );

    const first = await sendTask(sessionId, 'caller', 'ask the ghost');
    const second = await sendTask(sessionId, 'caller', 'ask the fragile one');
    const third = await sendTask(sessionId, 'caller', 'anything');

    await expect(completed(first.taskId)).resolves.toMatchObject({
      result: { final: expect.stringMatching(/^ghost: .*ghost/) },
    });
    const viaFragile = await completed(second.taskId);
    expect(viaFragile.result.final).toMatch(/^fragile: 'fragile' failed: step limit/);
    await expect(completed(third.taskId)).resolves.toMatchObject({ result: { final: 'still here' } });
    const states = await statesOf(sessionId);
    expect(states.caller).toMatchObject({ state: 'idle', error_count: 0, queue_size: 0 });
    expect(states.fragile).toMatchObject({ state: 'idle', error_count: 1 });
  });

  it("ends the caller's wait at once, with an error result, when the target's switch mail is cancelled", async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      { when: { kind: 'task' }, do: [ask('busy'), { reply: 'went on: {{result.error}}' }] },
    ]);
    await createScripted(client, sessionId, 'busy', [
      { when: { kind: 'task' }, do: [{ reply: 'slow done', delayMs: 60_002 }] },
      { when: { kind: 'mailbox_message' }, do: [{ reply: 'never sent' }] },
    ]);
    const slow = await sendTask(sessionId, 'busy', 'slow job');
    await clock.whenArmed(60_002); // busy is mid-step, so the switch mail waits in its queue
    const asked = await sendTask(sessionId, 'asker', 'anyone?');
    await client.waitFor(
      'async.agent.stateChanged',
      (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'waiting',
    );
    const question = await switchMail(sessionId, 'asker', 'busy');
    const mailTask = await queuedItemFor(sessionId, question.messageId);
    await clock.whenArmed(120_000); // the default timeout of the wait
    const before = clock.now();

    await expect(client.ok('async.cancelTask', { sessionId, taskId: mailTask })).resolves.toEqual({
      taskId: mailTask,
      state: 'cancelled',
    });

    // No time passes: the wait ends because of the cancel, not its 120 s timeout.
    const done = await completed(asked.taskId);
    expect(done.result.final).toMatch(/^went on: .*cancelled/);
    const call = await switchCall(sessionId, 'asker');
    expect(call.result).toEqual({ error: expect.stringMatching(/cancelled/) });
    expect(clock.now()).toBe(before);
    await expect(
      client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.previous === 'waiting',
      ),
    ).resolves.toMatchObject({ state: 'active' });
    const during = await statesOf(sessionId);
    expect(during.asker).toMatchObject({ state: 'idle', queue_size: 0, error_count: 0 });
    expect(during.busy).toMatchObject({ state: 'active', current_task: 'task', queue_size: 0 });

    clock.advance(60_002);
    await completed(slow.taskId);
    const next = await sendTask(sessionId, 'busy', 'after');
    await clock.advanceWhenArmed(60_002);
    await completed(next.taskId);
    expect(of('async.task.started', sessionId, 'busy').map((p) => p.kind)).toEqual(['task', 'task']);
    await expect(client.ok('async.getTask', { sessionId, taskId: mailTask })).resolves.toMatchObject({
      agentId: 'busy',
      state: 'cancelled',
    });
    const { messages } = await client.ok('async.listMail', { sessionId });
    expect(messages.map((m: any) => m.from)).toEqual(['asker']);
  });

  describe('stopping the caller', () => {
    it('mid-step before its switch step: no mail is sent, and after startAgent the item runs again to the end', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'asker', [
        {
          when: { kind: 'task' },
          do: [{ ...ask('helper'), delayMs: 4_301 }, { reply: 'asker got: {{result.reply.body}}' }],
        },
      ]);
      await createScripted(client, sessionId, 'helper', [
        { when: { kind: 'mailbox_message' }, do: [{ reply: 'answer to {{body}}' }] },
      ]);
      const asked = await sendTask(sessionId, 'asker', 'the question');
      await clock.whenArmed(4_301); // the model call that will ask is under way

      await expect(client.ok('async.stopAgent', { sessionId, agentId: 'asker' })).resolves.toEqual({
        agentId: 'asker',
        state: 'stopped',
      });

      await expect(
        client.waitFor(
          'async.agent.stateChanged',
          (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'stopped',
        ),
      ).resolves.toMatchObject({ previous: 'active' });
      expect((await statesOf(sessionId)).asker.state).toBe('stopped');
      await expect(client.ok('async.listMail', { sessionId })).resolves.toMatchObject({ messages: [] });

      await client.ok('async.startAgent', { sessionId, agentId: 'asker' });
      await client.waitFor(
        'async.task.started',
        (p) =>
          p.sessionId === sessionId &&
          p.agentId === 'asker' &&
          of('async.task.started', sessionId, 'asker').length >= 2,
      );
      await clock.advanceWhenArmed(4_301);

      await expect(completed(asked.taskId)).resolves.toMatchObject({
        result: { final: 'asker got: answer to the question' },
      });
      expect(of('async.task.started', sessionId, 'asker').map((p) => p.taskId)).toEqual([
        asked.taskId,
        asked.taskId,
      ]);
      expect(of('async.task.failed', sessionId)).toEqual([]);
      const { messages } = await client.ok('async.listMail', { sessionId });
      expect(messages.map((m: any) => [m.from, m.to])).toEqual([
        ['helper', 'asker'],
        ['asker', 'helper'],
      ]);
      const states = await statesOf(sessionId);
      expect(states.asker).toMatchObject({ state: 'idle', queue_size: 0 });
      expect(states.helper).toMatchObject({ state: 'idle', queue_size: 0 });
    });

    it('while it waits: the wait ends, its mail leaves the queue, and after startAgent it asks again', async () => {
      const sessionId = await startSession(client, newSessionId());
      await createScripted(client, sessionId, 'asker', [
        { when: { kind: 'task' }, do: [ask('helper'), { reply: 'asker got: {{result.reply.body}}' }] },
      ]);
      await createScripted(client, sessionId, 'helper', [
        { when: { kind: 'task' }, do: [{ reply: 'slow done', delayMs: 60_003 }] },
        { when: { kind: 'mailbox_message' }, do: [{ reply: 'answer to {{body}}' }] },
      ]);
      const slow = await sendTask(sessionId, 'helper', 'slow job');
      await clock.whenArmed(60_003); // helper is mid-step, so the switch mail waits in its queue
      const asked = await sendTask(sessionId, 'asker', 'the question');
      await client.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'waiting',
      );
      const first = await switchMail(sessionId, 'asker', 'helper');
      const firstItem = await queuedItemFor(sessionId, first.messageId);

      await client.ok('async.stopAgent', { sessionId, agentId: 'asker' });

      await expect(
        client.waitFor(
          'async.agent.stateChanged',
          (p) => p.sessionId === sessionId && p.agentId === 'asker' && p.state === 'stopped',
        ),
      ).resolves.toMatchObject({ previous: 'waiting' });
      await client.ok('async.startAgent', { sessionId, agentId: 'asker' });
      await client.waitFor(
        'async.mail.sent',
        (p) =>
          p.sessionId === sessionId && p.message.from === 'asker' && p.message.messageId !== first.messageId,
      );
      // By now the first wait is over: its mail was taken out of helper's queue.
      await expect(client.ok('async.getTask', { sessionId, taskId: firstItem })).resolves.toMatchObject({
        state: 'cancelled',
      });
      expect((await statesOf(sessionId)).helper).toMatchObject({ current_task: 'task', queue_size: 1 });

      clock.advance(60_003);

      await completed(slow.taskId);
      await expect(completed(asked.taskId)).resolves.toMatchObject({
        result: { final: 'asker got: answer to the question' },
      });
      expect(of('async.task.started', sessionId, 'helper').map((p) => p.kind)).toEqual([
        'task',
        'mailbox_message',
      ]);
      expect(of('async.task.failed', sessionId)).toEqual([]);
      const states = await statesOf(sessionId);
      expect(states.asker).toMatchObject({ state: 'idle', queue_size: 0 });
      expect(states.helper).toMatchObject({ state: 'idle', queue_size: 0 });
    });

    describe('a stop that came before the wait began (SwitchService.call, in process)', () => {
      const agentOf = (sessionId: string, agentId: string) => {
        const agents = sut.app.get(AgentRepository);
        return sut.app.get(DatabaseService).read(async (tx) => (await agents.find(tx, sessionId, agentId))!);
      };
      const question = { to: 'helper', subject: 'Question', body: 'q', timeoutSeconds: 120, hops: 1 };
      // The tool call's transaction, as the registry would give it (these waits end before it is used).
      const commitIn =
        (sessionId: string) =>
        <T>(fn: (tx: Tx) => Promise<T>) =>
          sut.app.get(HistoryService).inSession(sessionId, fn);

      it('an already stopped caller sends nothing and does not wait', async () => {
        const sessionId = await startSession(client, newSessionId());
        await createScripted(client, sessionId, 'asker', replyAll('x'), {}, { autoStart: false });
        await createScripted(client, sessionId, 'helper', replyAll('answer'));

        const call = sut.app
          .get(SwitchService)
          .call(
            await agentOf(sessionId, 'asker'),
            question,
            new AbortController().signal,
            commitIn(sessionId),
          );

        await expect(call).rejects.toMatchObject({ name: 'AbortError' });
        await expect(client.ok('async.listMail', { sessionId })).resolves.toMatchObject({ messages: [] });
        expect((await statesOf(sessionId)).asker.state).toBe('stopped');
        expect(of('async.agent.stateChanged', sessionId, 'asker').map((p) => p.state)).not.toContain(
          'waiting',
        );
      });

      it('a signal aborted while the mail is being sent ends the wait at once and takes the mail back', async () => {
        const sessionId = await startSession(client, newSessionId());
        await createScripted(client, sessionId, 'asker', replyAll('x'));
        await createScripted(client, sessionId, 'helper', [
          { when: { kind: 'task' }, do: [{ reply: 'slow done', delayMs: 60_004 }] },
          { when: {}, do: [{ reply: 'answer' }] },
        ]);
        const slow = await sendTask(sessionId, 'helper', 'slow job');
        await clock.whenArmed(60_004); // helper is mid-step, so the switch mail would wait in its queue
        const controller = new AbortController();

        const call = sut.app
          .get(SwitchService)
          .call(await agentOf(sessionId, 'asker'), question, controller.signal, commitIn(sessionId));
        controller.abort(); // after the call's first check, before it listens for an abort

        await expect(call).rejects.toMatchObject({ name: 'AbortError' });
        const sent = await switchMail(sessionId, 'asker', 'helper');
        const states = await statesOf(sessionId);
        expect(states.helper).toMatchObject({ queue_size: 0 });
        expect(states.asker.state).not.toBe('waiting');
        clock.advance(60_004);
        await completed(slow.taskId);
        expect(of('async.task.started', sessionId, 'helper').map((p) => p.kind)).toEqual(['task']);
        const { messages } = await client.ok('async.listMail', { sessionId });
        expect(messages.map((m: any) => m.messageId)).toEqual([sent.messageId]);
      });
    });
  });
});

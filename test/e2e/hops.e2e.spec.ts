import { BuiltinToolsService } from 'src/tools/builtin-tools.service';
import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { sessionProbe } from '../support/session-probe';
import { startTestApp, TestApp } from '../support/test-app';

/** Answers every work item by mailing `peer`, then says so: the ping-pong a hop limit must end. */
const mailBack = (peer: string) => [
  {
    when: {},
    do: [
      { tool: 'send_mail', args: { to: peer, subject: 'Your turn', body: 'ping from {{agentId}}' } },
      { reply: '{{agentId}} sent: {{result.messageId}}{{result.error}}' },
    ],
  },
];

describe(`Hops (${BuiltinToolsService.name})`, () => {
  let sut: TestApp;
  let client: TestClient;
  const { of, statesOf, sendTask, completed, atLeast } = sessionProbe(() => client);

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client?.close();
    await sut?.close();
  });

  /** Waits until a tool call of the session was refused at the hop limit, then for its task to end. */
  const refusal = async (sessionId: string) => {
    const refused = await client.waitFor(
      'async.tool.called',
      (p) => p.sessionId === sessionId && /hop limit/.test(String(p.result?.error ?? '')),
    );
    await completed(refused.taskId);
    return refused;
  };

  it('ends two agents that answer every mail with a mail after maxHops exchanges, both still idle', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'ping', mailBack('pong'));
    await createScripted(client, sessionId, 'pong', mailBack('ping'));

    const { taskId } = await sendTask(sessionId, 'ping', 'Start the game');
    const refused = await refusal(sessionId);

    expect(refused.result.error).toMatch(/^hop limit \(16\) reached/);
    const { messages } = await client.ok('async.listMail', { sessionId, limit: 100 });
    expect(messages).toHaveLength(16);
    expect(messages.map((m: any) => m.hops).sort((a: number, b: number) => a - b)).toEqual(
      Array.from({ length: 16 }, (_, i) => i + 1),
    );
    await expect(client.ok('async.getTask', { sessionId, taskId })).resolves.toMatchObject({
      state: 'done',
      hops: 0,
    });
    // The refused call is the 17th send; the agent that made it finished its item normally.
    const states = await statesOf(sessionId);
    expect(states.ping).toMatchObject({ state: 'idle', queue_size: 0, error_count: 0 });
    expect(states.pong).toMatchObject({ state: 'idle', queue_size: 0, error_count: 0 });
    expect(of('async.task.failed', sessionId)).toEqual([]);
  });

  it('takes maxHops from the sender, and shows each item and mail its hop count', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'ping', mailBack('pong'), { limits: { maxHops: 3 } });
    await createScripted(client, sessionId, 'pong', mailBack('ping'), { limits: { maxHops: 3 } });

    await sendTask(sessionId, 'ping', 'Start the game');
    const refused = await refusal(sessionId);

    expect(refused.result.error).toMatch(/^hop limit \(3\) reached/);
    const { messages } = await client.ok('async.listMail', { sessionId });
    expect(messages.map((m: any) => [m.from, m.to, m.hops])).toEqual([
      ['ping', 'pong', 3],
      ['pong', 'ping', 2],
      ['ping', 'pong', 1],
    ]);
    const item = of('async.task.started', sessionId, 'pong').at(-1)!;
    await expect(client.ok('async.getTask', { sessionId, taskId: item.taskId })).resolves.toMatchObject({
      kind: 'mailbox_message',
      hops: 3,
    });
    await expect(statesOf(sessionId)).resolves.toMatchObject({
      ping: { state: 'idle' },
      pong: { state: 'idle' },
    });
  });

  it('lets an agent mail the user past its hop limit: that mail makes no work, so it cannot loop', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(
      client,
      sessionId,
      'relay',
      [
        {
          when: { kind: 'mailbox_message' },
          do: [
            { tool: 'send_mail', args: { to: 'user', subject: 'Relayed', body: '{{body}}' } },
            { reply: 'relayed {{result.messageId}}{{result.error}}' },
          ],
        },
      ],
      { limits: { maxHops: 1 } },
    );
    await createScripted(client, sessionId, 'source', mailBack('relay'));

    await sendTask(sessionId, 'source', 'go'); // source → relay (hops 1) → user (hops 2 > 1)

    const toUser = await client.waitFor(
      'async.mail.sent',
      (p) => p.sessionId === sessionId && p.message.to === 'user',
    );
    expect(toUser.message).toMatchObject({ from: 'relay', hops: 2, body: 'ping from source' });
  });

  it('refuses a broadcast and a send-and-switch past the hop limit as tool errors', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'helper', [{ when: {}, do: [{ reply: 'answer' }] }], {
      wakeEvents: ['news'],
    });
    await createScripted(
      client,
      sessionId,
      'asker',
      [
        {
          when: { kind: 'mailbox_message' },
          do: [
            { tool: 'broadcast_event', args: { event: 'news' } },
            { tool: 'send_mail_with_switch', args: { to: 'helper', subject: 'Q', body: 'q' } },
            { reply: 'done' },
          ],
        },
      ],
      { limits: { maxHops: 1 } },
    );
    await createScripted(client, sessionId, 'starter', mailBack('asker'));

    await sendTask(sessionId, 'starter', 'go'); // starter → asker (hops 1): asker may send nothing on
    const calls = await atLeast('async.tool.called', sessionId, 'asker', 2);

    expect(calls.map((c) => [c.tool, String(c.result.error ?? '')])).toEqual([
      ['broadcast_event', expect.stringMatching(/^hop limit \(1\) reached/)],
      ['send_mail_with_switch', expect.stringMatching(/^hop limit \(1\) reached/)],
    ]);
    await completed(calls[1].taskId);
    expect(of('async.event.broadcast', sessionId)).toEqual([]);
    await expect(statesOf(sessionId)).resolves.toMatchObject({
      asker: { state: 'idle', error_count: 0 },
      helper: { state: 'idle', queue_size: 0 },
    });
  });

  it('answers 1,000 send-and-switch round trips from one agent within a minute, none refused', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'asker', [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail_with_switch', args: { to: 'helper', subject: 'Q', body: '{{prompt}}' } },
          { reply: 'helper said {{result.reply.body}}{{result.error}}' },
        ],
      },
    ]);
    await createScripted(client, sessionId, 'helper', [{ when: {}, do: [{ reply: 'ok {{body}}' }] }]);

    const taskIds: string[] = [];
    for (let i = 0; i < 1000; i++) {
      taskIds.push((await sendTask(sessionId, 'asker', `q${i}`)).taskId);
    }
    // The clock never moves in this suite: all of it happens within the same minute.
    for (const taskId of taskIds) {
      await completed(taskId);
    }
    const finals = of('async.task.completed', sessionId, 'asker').map((p) => p.result.final);
    expect(finals).toHaveLength(1000);
    expect(finals.filter((f: string) => !/^helper said ok q\d+$/.test(f))).toEqual([]);
    await expect(statesOf(sessionId)).resolves.toMatchObject({
      asker: { state: 'idle', error_count: 0 },
      helper: { state: 'idle', error_count: 0 },
    });
  }, 600_000);

  it('never stops an agent that mails the user once per task, however many tasks', async () => {
    const sessionId = await startSession(client, newSessionId());
    await createScripted(client, sessionId, 'reporter', [
      {
        when: { kind: 'task' },
        do: [
          { tool: 'send_mail', args: { to: 'user', subject: 'Report', body: '{{prompt}}' } },
          { reply: 'reported' },
        ],
      },
    ]);
    const taskIds: string[] = [];
    for (let i = 0; i < 150; i++) {
      taskIds.push((await sendTask(sessionId, 'reporter', `r${i}`)).taskId);
    }
    for (const taskId of taskIds) {
      await completed(taskId);
    }
    await expect(statesOf(sessionId)).resolves.toMatchObject({
      reporter: { state: 'idle', queue_size: 0, error_count: 0 },
    });
  }, 300_000);
});

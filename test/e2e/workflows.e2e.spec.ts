import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp, WatchedClock } from '../support/test-app';

/** A template's own script with `delayMs` on every rule's first step, so its agent is caught mid-step. */
function templateScriptWithDelay(name: string, delayMs: number): unknown[] {
  const template = parse(readFileSync(join(__dirname, '..', '..', 'templates', `${name}.yaml`), 'utf8')) as {
    script: Array<{ when: unknown; do: Array<Record<string, unknown>> }>;
  };
  return template.script.map((rule) => ({
    ...rule,
    do: rule.do.map((step, i) => (i === 0 ? { ...step, delayMs } : step)),
  }));
}

describe("The guide's example workflows on their templates", () => {
  let sut: TestApp;
  let client: TestClient;
  let clock: WatchedClock;

  beforeAll(async () => {
    clock = new WatchedClock();
    sut = await startTestApp({ clock });
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

  describe('monitoring with sleep/wake', () => {
    it('sleeps on [alert, hourly_check], reports each alert to the user and goes back to sleep', async () => {
      const sessionId = await startSession(client, newSessionId());
      const inSession = (p: any) => p.sessionId === sessionId;
      await expect(client.ok('async.createAgent', { sessionId, agentId: 'monitor' })).resolves.toEqual({
        agentId: 'monitor',
        state: 'idle',
        template: 'monitor',
      });

      const start = await client.ok('async.sendTask', {
        sessionId,
        agentId: 'monitor',
        prompt: 'Start monitoring',
      });
      await expect(client.waitForTaskEnd(start.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'Monitoring; sleeping until alert or hourly_check' } },
      });
      const asleep = await client.waitFor(
        'async.agent.stateChanged',
        (p) => inSession(p) && p.agentId === 'monitor' && p.state === 'sleeping',
      );
      expect(asleep).toMatchObject({ previous: 'active', reason: 'sleep_tool' });
      const states = await client.ok('async.getAgentStates', { sessionId });
      expect(states.agents.monitor).toMatchObject({
        state: 'sleeping',
        sleeping_until: null,
        wake_events: ['alert', 'hourly_check'],
        queue_size: 0,
      });

      // An alert wakes it; it mails the user and sleeps again.
      const data = { service: 'payments', severity: 'critical', errorRate: 0.31 };
      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'alert', data })).resolves.toEqual({
        event: 'alert',
        delivered: ['monitor'],
        woke: ['monitor'],
      });
      const alertSeq = (
        await client.waitFor('async.event.broadcast', (p) => inSession(p) && p.event === 'alert')
      ).seq as number;
      const alertMail = await client.waitFor(
        'async.mail.sent',
        (p) => inSession(p) && p.message.to === 'user',
      );
      expect(alertMail.message).toMatchObject({ from: 'monitor', priority: 'high', subject: 'Alert' });
      expect(alertMail.message.body).toBe(`Alert received: ${JSON.stringify(data)}`);
      const alertTask = await client.waitFor(
        'async.task.started',
        (p) => inSession(p) && p.seq > alertSeq && p.kind === 'event',
      );
      await expect(client.waitForTaskEnd(alertTask.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'Alert handled; back to sleep' } },
      });
      await expect(
        client.waitFor(
          'async.agent.stateChanged',
          (p) => inSession(p) && p.seq > alertSeq && p.state === 'sleeping',
        ),
      ).resolves.toMatchObject({ agentId: 'monitor', reason: 'sleep_tool' });

      // The hourly check: same cycle, no mail.
      await expect(client.ok('async.broadcastEvent', { sessionId, event: 'hourly_check' })).resolves.toEqual({
        event: 'hourly_check',
        delivered: ['monitor'],
        woke: ['monitor'],
      });
      const checkSeq = (
        await client.waitFor('async.event.broadcast', (p) => inSession(p) && p.event === 'hourly_check')
      ).seq as number;
      const checkTask = await client.waitFor(
        'async.task.started',
        (p) => inSession(p) && p.seq > checkSeq && p.kind === 'event',
      );
      await expect(client.waitForTaskEnd(checkTask.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'Hourly check: all systems nominal' } },
      });
      await client.waitFor(
        'async.agent.stateChanged',
        (p) => inSession(p) && p.seq > checkSeq && p.state === 'sleeping',
      );
      const mailbox = await client.ok('async.listMail', { sessionId, agentId: 'user' });
      expect(mailbox.messages.map((m: any) => m.subject)).toEqual(['Alert']);

      // A manual wake, then nothing to do: idle.
      await expect(
        client.ok('async.wakeAgent', { sessionId, agentId: 'monitor', reason: 'manual' }),
      ).resolves.toEqual({ agentId: 'monitor', state: 'idle', woke: true });
      await expect(
        client.waitFor(
          'async.agent.stateChanged',
          (p) => inSession(p) && p.agentId === 'monitor' && p.reason === 'manual',
        ),
      ).resolves.toMatchObject({ previous: 'sleeping', state: 'idle' });
      await expect(client.ok('async.wakeAgent', { sessionId, agentId: 'monitor' })).resolves.toEqual({
        agentId: 'monitor',
        state: 'idle',
        woke: false,
      });
    });
  });

  describe('task decomposition and parallel execution', () => {
    const coders = [
      { agentId: 'coder1', task: 'Task A', work: 'implement the data model' },
      { agentId: 'coder2', task: 'Task B', work: 'implement the API' },
      { agentId: 'coder3', task: 'Task C', work: 'write the tests' },
    ];
    const prompt = 'Create plan for new feature implementation';

    async function createTeam(sessionId: string, coderConfig?: Record<string, unknown>) {
      const made = [];
      made.push(await client.ok('async.createAgent', { sessionId, agentId: 'planner' }));
      for (const { agentId } of coders) {
        made.push(await client.ok('async.createAgent', { sessionId, agentId, config: coderConfig }));
      }
      made.push(await client.ok('async.createAgent', { sessionId, agentId: 'integrator' }));
      return made.map((m) => m.template);
    }

    it('planner → coder1..3 → integrator → three "Integrated" mails to the user', async () => {
      const sessionId = await startSession(client, newSessionId());
      const inSession = (p: any) => p.sessionId === sessionId;
      // No template given: coderN gets the `coder` template by its id.
      await expect(createTeam(sessionId)).resolves.toEqual([
        'planner',
        'coder',
        'coder',
        'coder',
        'integrator',
      ]);

      const plan = await client.ok('async.sendTask', { sessionId, agentId: 'planner', prompt });
      await expect(client.waitForTaskEnd(plan.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'Plan: 3 tasks delegated to coder1, coder2, coder3' } },
      });

      for (const { agentId, task, work } of coders) {
        const delegated = await client.waitFor(
          'async.mail.sent',
          (p) => inSession(p) && p.message.to === agentId,
        );
        expect(delegated.message).toMatchObject({
          from: 'planner',
          subject: task,
          body: `${task} of plan for: ${prompt}: ${work}`,
        });
        const done = await client.waitFor(
          'async.mail.sent',
          (p) => inSession(p) && p.message.from === agentId && p.message.to === 'integrator',
        );
        expect(done.message).toMatchObject({
          subject: `Done: ${task}`,
          body: `${agentId} finished ${task}: ${delegated.message.body}`,
        });
        const integrated = await client.waitFor(
          'async.mail.sent',
          (p) => inSession(p) && p.message.to === 'user' && p.message.subject === `Integrated Done: ${task}`,
        );
        expect(integrated.message).toMatchObject({
          from: 'integrator',
          body: `Integrated and tested: ${done.message.body}`,
        });
      }
      const toUser = await client.ok('async.listMail', { sessionId, agentId: 'user' });
      expect(toUser.messages).toHaveLength(3);
    });

    it('the three coders work at the same time', async () => {
      const sessionId = await startSession(client, newSessionId());
      const inSession = (p: any) => p.sessionId === sessionId;
      // The coder template's own rules, each coder held on its first step until the clock moves.
      const script = templateScriptWithDelay('coder', 1500);
      await expect(createTeam(sessionId, { script })).resolves.toEqual([
        'planner',
        'coder',
        'coder',
        'coder',
        'integrator',
      ]);

      const armed = clock.nextTimers(3, 1500);
      await client.ok('async.sendTask', { sessionId, agentId: 'planner', prompt });
      await armed;
      // All three are mid-step at once: each took its mail, none has finished.
      for (const { agentId } of coders) {
        await expect(
          client.waitFor('async.task.started', (p) => inSession(p) && p.agentId === agentId),
        ).resolves.toMatchObject({ kind: 'mailbox_message' });
      }
      const states = await client.ok('async.getAgentStates', { sessionId });
      for (const { agentId } of coders) {
        expect(states.agents[agentId]).toMatchObject({ state: 'active', current_task: 'mailbox_message' });
      }
      await expect(client.ok('async.listMail', { sessionId, agentId: 'integrator' })).resolves.toEqual({
        messages: [],
        nextBefore: null,
      });

      clock.advance(1500);
      for (const { task } of coders) {
        await expect(
          client.waitFor(
            'async.mail.sent',
            (p) =>
              inSession(p) && p.message.to === 'user' && p.message.subject === `Integrated Done: ${task}`,
          ),
        ).resolves.toMatchObject({ message: { from: 'integrator' } });
      }
    });
  });
});

import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { useAppWithClient } from '../support/app-with-client';

/**
 * An item's completion claims its agent's next item in the same statement (WorkStepRepository
 * `claimNext`): clients see exactly what a completion followed by a claim showed before, in the
 * same order, and a task cancelled while it waited is never started (no push says so: docs/protocol.md).
 */
describe('the next item, claimed with the completion of the one before', () => {
  const t = useAppWithClient();

  it('pushes the completion, idle, active and the next start, in order, for each queued task', async () => {
    const sessionId = await startSession(t.client, newSessionId('claim-next'));
    await createScripted(t.client, sessionId, 'worker', [
      // The first task waits on the test's clock, so the others queue behind it.
      { when: { match: '^hold$' }, do: [{ reply: 'held', delayMs: 1_000 }] },
      { when: {}, do: [{ reply: 'did {{prompt}}' }] },
    ]);
    const hold = await t.client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'hold' });
    await t.client.waitFor('async.task.started', (p) => p.taskId === hold.taskId);
    const queued: string[] = [];
    for (const prompt of ['one', 'two', 'three']) {
      queued.push((await t.client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt })).taskId);
    }
    await t.client.ok('async.cancelTask', { sessionId, taskId: queued[1] });
    t.app.clock.advance(1_000);
    await t.client.waitForTaskEnd(queued[2]);

    const { events } = await t.client.ok('async.getHistory', { sessionId, after: 0, limit: 1000 });
    const of = (taskId: string) =>
      ({ [hold.taskId]: 'hold', [queued[0]]: 'one', [queued[1]]: 'two', [queued[2]]: 'three' })[taskId];
    const story = (events as Array<{ type: string; payload: any }>)
      .filter((r) => r.payload.agentId === 'worker')
      .map((r) =>
        r.type === 'async.agent.stateChanged'
          ? `${String(r.payload.state)} (${String(r.payload.reason)})`
          : `${r.type.replace('async.task.', '')} ${of(r.payload.taskId as string)}`,
      );
    expect(story.slice(story.indexOf('started hold'))).toEqual([
      'started hold',
      'completed hold',
      'idle (task_done)',
      'active (task)',
      'started one',
      'completed one',
      'idle (task_done)',
      'active (task)',
      'started three',
      'completed three',
      'idle (task_done)',
    ]);
    const { agents } = await t.client.ok('async.getAgentStates', { sessionId });
    expect(agents.worker).toMatchObject({ state: 'idle', queue_size: 0 });
  });
});

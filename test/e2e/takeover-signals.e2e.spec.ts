import { AgentRuntimeService } from 'src/agents/runtime/agent-runtime.service';
import { DatabaseService } from 'src/database/database.service';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { useAppWithClient } from '../support/app-with-client';

/**
 * A node that takes sessions up (at start, or from a node that died) wakes the agents that have
 * something to claim, and makes no loop for those that wait: a node may take up many thousands.
 */
describe('agents woken when a node takes their session up', () => {
  const t = useAppWithClient();
  const SCRIPT = [{ when: {}, do: [{ reply: 'did {{prompt}}' }] }];

  it('makes a loop only for the idle agent with work queued, which then runs it', async () => {
    const sessionId = await startSession(t.client, newSessionId('takeover'));
    for (const agentId of ['a1', 'a2', 'a3', 'a4', 'a5']) {
      await createScripted(t.client, sessionId, agentId, SCRIPT);
    }
    const runtime = t.app.app.get(AgentRuntimeService);
    // Queued as a previous owner left it: in the table, no loop told (no signal, no hand-off).
    const item = await t.app.app.get(DatabaseService).transaction((tx) =>
      t.app.app.get(WorkItemRepository).enqueue(
        tx,
        {
          sessionId,
          agentId: 'a3',
          kind: 'task',
          priority: 'normal',
          prompt: 'left',
          createdAt: new Date(t.app.clock.now()).toISOString(),
        },
        null,
      ),
    );
    const taskId = item.inserted!.taskId;
    const loopsBefore = runtime.agentLoops;

    await runtime.serve([sessionId]);

    expect(runtime.agentLoops - loopsBefore).toBe(1);
    await expect(t.client.waitForTaskEnd(taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
      payload: { agentId: 'a3', result: { final: 'did left' } },
    });
  });
});

import { ConversationRepository } from 'src/agents/conversation.repository';
import { HotConversations } from 'src/agents/runtime/hot-conversations';
import { createScripted, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { useAppWithClient } from '../support/app-with-client';

/**
 * The owner keeps each working agent's recent conversation in memory (HotConversations). An agent
 * created on the node starts with an empty one there, so its first item reads nothing back; an
 * agent the node did not see made is read once.
 */
describe('conversations of agents created here', () => {
  const t = useAppWithClient();
  const reads: string[] = [];
  const SCRIPT = [{ when: {}, do: [{ reply: 'did {{prompt}}' }] }];

  beforeAll(() => {
    // Counts the reads and passes them through: the repository still answers from the database.
    const repository = t.app.app.get(ConversationRepository);
    const latest = repository.latest.bind(repository);
    repository.latest = (tx, sessionId, agentId, limit) => {
      reads.push(`${sessionId}/${agentId}`);
      return latest(tx, sessionId, agentId, limit);
    };
  });

  const run = async (sessionId: string, agentId: string, prompt: string) => {
    const { taskId } = await t.client.ok('async.sendTask', { sessionId, agentId, prompt });
    return t.client.waitForTaskEnd(taskId);
  };

  it('runs a new agent’s first items without reading its conversation from the database', async () => {
    const sessionId = await startSession(t.client, newSessionId('hot'));
    await createScripted(t.client, sessionId, 'fresh', SCRIPT);

    await expect(run(sessionId, 'fresh', 'one')).resolves.toMatchObject({ name: 'async.task.completed' });
    await expect(run(sessionId, 'fresh', 'two')).resolves.toMatchObject({ name: 'async.task.completed' });

    expect(reads.filter((r) => r === `${sessionId}/fresh`)).toEqual([]);
  });

  it('reads the conversation once when the node has not held it (after it takes the session up again)', async () => {
    const sessionId = await startSession(t.client, newSessionId('hot'));
    await createScripted(t.client, sessionId, 'known', SCRIPT);
    await run(sessionId, 'known', 'one');
    // Taking the session up again drops what the node held of it.
    await t.app.app.get(HotConversations).serve([sessionId]);

    await run(sessionId, 'known', 'two');
    await run(sessionId, 'known', 'three');
    expect(reads.filter((r) => r === `${sessionId}/known`)).toEqual([`${sessionId}/known`]);
  });
});

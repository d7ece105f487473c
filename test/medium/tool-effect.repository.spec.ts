import { AgentRepository } from 'src/agents/agent.repository';
import { DatabaseService } from 'src/database/database.service';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { SessionRepository } from 'src/sessions/session.repository';
import { ToolEffectRepository } from 'src/tools/tool-effect.repository';
import { newAgentRow } from '../factories/agent-rows';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';

describe(ToolEffectRepository.name, () => {
  const sut = new ToolEffectRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** A queued task of a fresh agent: the item whose calls are recorded. */
  async function givenTask(): Promise<string> {
    const sessionId = newSessionId();
    return db.transaction(async (tx) => {
      await new SessionRepository().upsert(tx, { sessionId, metadata: {}, limits: {}, at: AT });
      await new AgentRepository().insert(tx, newAgentRow(sessionId, 'a', 'idle', AT));
      const { item } = await new WorkItemRepository().insert(tx, {
        sessionId,
        agentId: 'a',
        kind: 'task',
        priority: 'normal',
        prompt: 'p',
        createdAt: AT,
      });
      return item.taskId;
    });
  }

  it('finds a recorded result by item, step and call index, and nothing elsewhere', async () => {
    const taskId = await givenTask();
    await db.transaction((tx) =>
      sut.record(tx, { taskId, step: 1, index: 0 }, 'send_mail', { messageId: 'm' }),
    );
    await db.transaction((tx) =>
      sut.record(tx, { taskId, step: 1, index: 1 }, 'list_agents', { agents: [] }),
    );

    await expect(db.read((tx) => sut.find(tx, { taskId, step: 1, index: 0 }))).resolves.toEqual({
      tool: 'send_mail',
      result: { messageId: 'm' },
    });
    await expect(db.read((tx) => sut.find(tx, { taskId, step: 1, index: 1 }))).resolves.toMatchObject({
      tool: 'list_agents',
    });
    await expect(db.read((tx) => sut.find(tx, { taskId, step: 2, index: 0 }))).resolves.toBeUndefined();
  });

  it('keeps the first result when the same call is recorded twice', async () => {
    const taskId = await givenTask();
    const key = { taskId, step: 3, index: 0 };
    await db.transaction((tx) => sut.record(tx, key, 'send_mail', { messageId: 'first' }));
    await db.transaction((tx) => sut.record(tx, key, 'send_mail', { messageId: 'second' }));
    await expect(db.read((tx) => sut.find(tx, key))).resolves.toMatchObject({
      result: { messageId: 'first' },
    });
  });

  it('is rolled back with the effect it was recorded with', async () => {
    const taskId = await givenTask();
    const key = { taskId, step: 1, index: 0 };
    await expect(
      db.transaction(async (tx) => {
        await sut.record(tx, key, 'send_mail', { messageId: 'never' });
        throw new Error('the effect failed');
      }),
    ).rejects.toThrow('the effect failed');
    await expect(db.read((tx) => sut.find(tx, key))).resolves.toBeUndefined();
  });
});

import { AgentRuntimeService } from 'src/agents/runtime/agent-runtime.service';
import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { startTestApp, TestApp } from '../support/test-app';

/** Idle and sleeping agents hold no loop objects: a loop exists while its agent has something to do. */
describe('agent loops are let go when their agent has nothing to do', () => {
  let sut: TestApp;
  let client: TestClient;
  let runtime: AgentRuntimeService;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
    runtime = sut.app.get(AgentRuntimeService);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  /** Resolves once no loop is left (each loop lets go on its own after its last item). */
  async function noLoopsLeft(): Promise<void> {
    while (runtime.agentLoops > 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  it('holds no loop for 50 agents once their tasks are done, and makes one again for new work', async () => {
    const sessionId = await startSession(client, newSessionId('passive'));
    const ids = Array.from({ length: 50 }, (_, i) => `agent${i}`);
    for (const agentId of ids) {
      await createScripted(client, sessionId, agentId, replyAll('done {{prompt}}'));
    }
    const tasks = await Promise.all(
      ids.map((agentId) => client.ok('async.sendTask', { sessionId, agentId, prompt: agentId })),
    );
    await Promise.all(tasks.map((t) => client.waitForTaskEnd(t.taskId)));
    await noLoopsLeft();
    expect(runtime.agentLoops).toBe(0);

    const again = await client.ok('async.sendTask', { sessionId, agentId: 'agent7', prompt: 'again' });
    const end = await client.waitForTaskEnd(again.taskId);
    expect(end.payload).toMatchObject({ result: { final: 'done again' } });
    await noLoopsLeft();
  });

  it('wakes a sleeping agent whose loop was let go, and it runs the work queued while it slept', async () => {
    const sessionId = await startSession(client, newSessionId('passive-sleep'));
    await createScripted(client, sessionId, 'sleeper', replyAll('woke for {{prompt}}'));
    await client.ok('async.sleepAgent', { sessionId, agentId: 'sleeper' });
    const queued = await client.ok('async.sendTask', { sessionId, agentId: 'sleeper', prompt: 'later' });
    await noLoopsLeft();
    const { agents } = await client.ok('async.getAgentStates', { sessionId });
    expect(agents.sleeper).toMatchObject({ state: 'sleeping', queue_size: 1 });

    await client.ok('async.wakeAgent', { sessionId, agentId: 'sleeper' });
    const end = await client.waitForTaskEnd(queued.taskId);
    expect(end.payload).toMatchObject({ result: { final: 'woke for later' } });
  });
});

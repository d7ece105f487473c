import { TestClient } from './client';

/**
 * Helpers that read one session's pushes and state through a suite's client. The client is taken
 * through `client()` because a suite connects it in `beforeAll`, after these helpers are made:
 *
 *   const { of, sendTask, completed } = sessionProbe(() => client);
 */
export function sessionProbe(client: () => TestClient) {
  /** The pushes named `name` so far for the session (and the agent, when given). */
  const of = (name: string, sessionId: string, agentId?: string) =>
    client()
      .of(name)
      .filter((p) => p.sessionId === sessionId && (agentId === undefined || p.agentId === agentId));

  const statesOf = async (sessionId: string) =>
    (await client().ok('async.getAgentStates', { sessionId })).agents as Record<string, any>;

  const sendTask = (sessionId: string, agentId: string, prompt: string, priority?: string) =>
    client().ok<{ taskId: string }>('async.sendTask', {
      sessionId,
      agentId,
      prompt,
      ...(priority ? { priority } : {}),
    });

  /** Waits for the task to end, expects it completed, and returns the push's payload. */
  const completed = async (taskId: string) => {
    const end = await client().waitForTaskEnd(taskId);
    expect(end).toMatchObject({ name: 'async.task.completed' });
    return end.payload;
  };

  /** Waits for the task to end, expects it failed, and returns the push's payload. */
  const failed = async (taskId: string) => {
    const end = await client().waitForTaskEnd(taskId);
    expect(end).toMatchObject({ name: 'async.task.failed' });
    return end.payload;
  };

  /** The agent's first state change (past or future) for which `match` holds. */
  const stateChange = (sessionId: string, agentId: string, match: (p: any) => boolean) =>
    client().waitFor(
      'async.agent.stateChanged',
      (p) => p.sessionId === sessionId && p.agentId === agentId && match(p),
    );

  /** The agent's pushes named `name` once there are at least `count` of them. */
  const atLeast = async (name: string, sessionId: string, agentId: string, count: number) => {
    await client().waitFor(
      name,
      (p) =>
        p.sessionId === sessionId && p.agentId === agentId && of(name, sessionId, agentId).length >= count,
    );
    return of(name, sessionId, agentId);
  };

  return { of, statesOf, sendTask, completed, failed, stateChange, atLeast };
}

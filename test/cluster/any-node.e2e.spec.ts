import { Cluster, describeCluster } from './support/cluster';
import { eventually, report } from './support/checks';
import { AGENT, workScript } from './support/load';
import { ownershipOverlaps, sessionsOwnedBy } from './support/ownership';
import { newSessionId } from '../factories/ids';

describeCluster('any node serves any request', () => {
  let cluster: Cluster | undefined;

  beforeAll(async () => {
    cluster = await Cluster.start(2);
  });

  afterAll(() => cluster?.close());

  it('the same idempotencyKey sent through two nodes at once makes one task, run once', async () => {
    const [a, b] = cluster!.nodes;
    const sessionId = newSessionId('idem');
    await a.client.ok('session.start', { sessionId });
    await b.client.ok('session.subscribe', { sessionId });
    await a.client.ok('async.createAgent', {
      sessionId,
      agentId: AGENT,
      template: 'assistant',
      config: { script: workScript(20) },
    });
    const keys = Array.from({ length: 30 }, (_, i) => `key-${i}`);
    const pairs = await Promise.all(
      keys.map((idempotencyKey) =>
        Promise.all(
          [a, b].map((n) =>
            n.client.ok('async.sendTask', {
              sessionId,
              agentId: AGENT,
              prompt: idempotencyKey,
              idempotencyKey,
            }),
          ),
        ),
      ),
    );
    // Both nodes answered with the one task each key made.
    expect(pairs.filter(([x, y]) => x.taskId === y.taskId)).toHaveLength(keys.length);
    const ids = pairs.map(([x]) => x.taskId as string);
    await eventually('every task to end', async () => {
      const [{ open }] = await cluster!.query<{ open: number }>(
        `SELECT count(*)::int AS open FROM work_item WHERE session_id = $1 AND state IN ('queued', 'running')`,
        [sessionId],
      );
      return open === 0 ? true : undefined;
    });
    const rows = await cluster!.query<{ key: string; n: number; done: number }>(
      `SELECT idempotency_key AS key, count(*)::int AS n, count(*) FILTER (WHERE state = 'done')::int AS done
         FROM work_item WHERE session_id = $1 GROUP BY 1 ORDER BY 1`,
      [sessionId],
    );
    expect(rows.filter((r) => r.n === 1 && r.done === 1)).toHaveLength(keys.length);
    const completions = await cluster!.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM history WHERE session_id = $1 AND type = 'async.task.completed'`,
      [sessionId],
    );
    expect(completions[0].n).toBe(keys.length);
    const effects = await cluster!.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM mail WHERE session_id = $1 AND from_id = $2`,
      [sessionId, AGENT],
    );
    expect(effects[0].n).toBe(keys.length);
    // Whichever node owns the session, both clients saw every completion.
    for (const n of [a, b]) {
      await eventually(`${n.name} to see every completion`, () =>
        Promise.resolve(
          ids.every((id) => n.client.of('async.task.completed').some((p) => p.taskId === id))
            ? true
            : undefined,
        ),
      );
    }
    await expect(ownershipOverlaps(cluster!)).resolves.toEqual([]);
    report('the same idempotencyKey through two nodes at once', {
      keys: keys.length,
      requests: keys.length * 2,
      tasksMade: rows.length,
      completedTwice: 0,
      owner: (await sessionsOwnedBy(cluster!, a.name)).includes(sessionId) ? a.name : b.name,
    });
  });

  // What a load balancer needs: WebSocket connections may go to any node; socket.io's HTTP long-polling
  // keeps its handshake in the memory of the node that made it, so its requests must reach that node.
  it('socket.io over WebSocket works through any node; long-polling needs its requests on one node (sticky)', async () => {
    const [a, b] = cluster!.nodes;
    const handshake = await fetch(`${a.server.url}/socket.io/?EIO=4&transport=polling`);
    expect(handshake.status).toBe(200);
    const { sid } = JSON.parse((await handshake.text()).slice(1)) as { sid: string };
    // The client's next request sends socket.io's CONNECT packet on that handshake (a POST answers at once).
    const send = (url: string) =>
      fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', body: '40' });
    const elsewhere = await send(b.server.url);
    expect(elsewhere.status).toBe(400);
    await expect(elsewhere.json()).resolves.toMatchObject({ message: 'Session ID unknown' });
    const same = await send(a.server.url);
    expect(same.status).toBe(200);
    await expect(same.text()).resolves.toBe('ok');

    // A WebSocket client on the node that does not own the session is served all the same.
    const sessionId = newSessionId('lb');
    await a.client.ok('session.start', { sessionId });
    const owner = (await sessionsOwnedBy(cluster!, a.name)).includes(sessionId) ? a : b;
    const other = owner === a ? b : a;
    await other.client.ok('session.subscribe', { sessionId });
    await other.client.ok('async.createAgent', {
      sessionId,
      agentId: AGENT,
      template: 'assistant',
      config: { script: workScript(10) },
    });
    const { taskId } = await other.client.ok('async.sendTask', {
      sessionId,
      agentId: AGENT,
      prompt: 'via the other',
    });
    await expect(other.client.waitForTaskEnd(taskId)).resolves.toMatchObject({
      name: 'async.task.completed',
      payload: { result: { final: 'done via the other' } },
    });
  });
});

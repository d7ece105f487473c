import { createScripted, replyAll, startSession } from '../factories/agents';
import { newSessionId } from '../factories/ids';
import { TestClient } from '../support/client';
import { ClusterProbe, NodeProcess } from '../support/nodes';
import { DatabaseService } from 'src/database/database.service';
import { query } from 'src/database/sql';
import { LeaseService } from 'src/cluster/lease.service';
import { startTestApp, TestApp, TestDatabase } from '../support/test-app';

/** Takes its time on `slow…` prompts (long enough to stay in hand for the whole test), answers the rest at once. */
const worker = [
  { when: { match: '^slow' }, do: [{ reply: 'slow done', delayMs: 600_000 }] },
  { when: { match: '^brief' }, do: [{ reply: 'brief done', delayMs: 1_500 }] },
  { when: {}, do: [{ reply: 'done {{prompt}}' }] },
];

/** The seqs of a session's history pushes (streamed text is pushed too, but is not a history record). */
const seqs = (
  pushes: Array<{ name?: string; payload: { sessionId?: string; seq?: number } }>,
  sessionId: string,
) =>
  pushes
    .filter((p) => p.payload?.sessionId === sessionId && p.name !== 'async.task.output')
    .map((p) => p.payload.seq);

// Several servers need a database server they can share: these run against TEST_DATABASE_URL.
const server = process.env.TEST_DATABASE_URL;
if (server) {
  describe('several servers on one Postgres', () => {
    let db: TestDatabase;
    let probe: ClusterProbe;
    const nodes: NodeProcess[] = [];
    const clients: TestClient[] = [];
    const start = async (id: string, env: Record<string, string> = {}) => {
      const node = await NodeProcess.start(db, id, env);
      nodes.push(node);
      return node;
    };
    const connect = async (node: NodeProcess) => {
      const client = await TestClient.connect(node.url);
      clients.push(client);
      return client;
    };

    beforeAll(async () => {
      db = await TestDatabase.create();
      probe = await ClusterProbe.open(db);
    });

    afterAll(async () => {
      clients.forEach((c) => c.close());
      for (const node of nodes) {
        node.child.kill('SIGCONT');
        await node.signal('SIGKILL');
      }
      await probe.close();
      await db.destroy();
    });

    let a: NodeProcess;
    let b: NodeProcess;

    it('a node booting beside a busy one leaves its running work alone and takes its fair share', async () => {
      a = await start('node-a');
      const onA = await connect(a);
      const busy = await startSession(onA, newSessionId('busy'));
      await createScripted(onA, busy, 'worker', worker);
      const quiet = await startSession(onA, newSessionId('quiet'));
      await createScripted(onA, quiet, 'worker', worker);
      const slow = await onA.ok('async.sendTask', { sessionId: busy, agentId: 'worker', prompt: 'slow job' });
      await onA.waitFor('async.task.started', (p) => p.taskId === slow.taskId);

      b = await start('node-b');
      // node-a hands its idle session to node-b (one each), and keeps the busy one.
      await b.waitForLog(/Took over 1 session/);
      await expect(probe.lease(busy)).resolves.toEqual({ owner: 'node-a', epoch: 1 });
      await expect(probe.lease(quiet)).resolves.toEqual({ owner: 'node-b', epoch: 2 });
      await expect(onA.ok('async.getTask', { sessionId: busy, taskId: slow.taskId })).resolves.toMatchObject({
        state: 'running',
      });
      await expect(probe.attempts(slow.taskId)).resolves.toBe(1);
      expect(onA.of('async.task.started').filter((p) => p.taskId === slow.taskId)).toHaveLength(1);

      // The session node-b took runs there; the client on node-a still sees all of it.
      const quick = await onA.ok('async.sendTask', { sessionId: quiet, agentId: 'worker', prompt: 'quick' });
      await expect(onA.waitForTaskEnd(quick.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'done quick' } },
      });

      // A cancellation through node-b ends the step running on node-a.
      const onB = await connect(b);
      await onB.ok('session.subscribe', { sessionId: busy });
      await expect(onB.ok('async.cancelTask', { sessionId: busy, taskId: slow.taskId })).resolves.toEqual({
        taskId: slow.taskId,
        state: 'cancelled',
      });
      await onB.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === busy && p.state === 'idle' && p.reason === 'task_cancelled',
      );
    });

    it("serves any session from any node: tasks, switches, sleep, wake, stop, broadcasts and session.stop through the node that doesn't own it", async () => {
      const onA = await connect(a);
      const sessionId = await startSession(onA, newSessionId('anywhere'));
      const { owner } = (await probe.lease(sessionId))!;
      const other = await connect(owner === 'node-a' ? b : a);
      await other.ok('session.subscribe', { sessionId });

      await createScripted(other, sessionId, 'asker', [
        {
          when: { kind: 'task', match: '^ask' },
          do: [
            { tool: 'send_mail_with_switch', args: { to: 'expert', subject: 'Q', body: '{{prompt}}' } },
            { reply: 'expert said: {{result.reply.body}}' },
          ],
        },
        ...worker,
      ]);
      await createScripted(other, sessionId, 'expert', replyAll('42'));
      const asked = await other.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'ask it' });
      await expect(other.waitForTaskEnd(asked.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'expert said: 42' } },
      });

      // Sleep with a deadline set through the other node: the owner arms the timer and it fires there.
      await other.ok('async.sleepAgent', { sessionId, agentId: 'expert', durationSeconds: 1 });
      await other.waitFor(
        'async.agent.stateChanged',
        (p) => p.sessionId === sessionId && p.agentId === 'expert' && p.reason === 'timer',
      );
      await other.ok('async.sleepAgent', { sessionId, agentId: 'expert', durationSeconds: 3600 });
      await expect(other.ok('async.wakeAgent', { sessionId, agentId: 'expert' })).resolves.toMatchObject({
        woke: true,
      });

      // Stopping through the other node aborts the step in hand on the owner: the item goes back to the
      // queue, and is taken again once the agent starts.
      const slow = await other.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'slow one' });
      await other.waitFor('async.task.started', (p) => p.taskId === slow.taskId);
      await other.ok('async.stopAgent', { sessionId, agentId: 'asker' });
      await other.ok('async.startAgent', { sessionId, agentId: 'asker' });
      await other.waitFor(
        'async.task.started',
        (p) =>
          p.taskId === slow.taskId &&
          other.of('async.task.started').filter((s) => s.taskId === slow.taskId).length === 2,
      );
      await expect(probe.attempts(slow.taskId)).resolves.toBe(2);
      await other.ok('async.cancelTask', { sessionId, taskId: slow.taskId });
      const last = await other.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'last' });
      await other.waitForTaskEnd(last.taskId);

      // A broadcast through the other node wakes the listener on the owner.
      await createScripted(other, sessionId, 'listener', replyAll('heard {{event}}'), {
        wakeEvents: ['ping'],
      });
      await expect(other.ok('async.broadcastEvent', { sessionId, event: 'ping' })).resolves.toMatchObject({
        delivered: ['listener'],
      });
      await other.waitFor(
        'async.task.completed',
        (p) => p.sessionId === sessionId && p.agentId === 'listener' && p.result.final === 'heard ping',
      );

      // session.stop through the other node ends the step in hand on the owner too.
      const slower = await other.ok('async.sendTask', { sessionId, agentId: 'asker', prompt: 'slow two' });
      await other.waitFor('async.task.started', (p) => p.taskId === slower.taskId);
      await other.ok('session.stop', { sessionId });
      await other.ok('async.startAgent', { sessionId, agentId: 'asker' });
      await other.waitFor(
        'async.task.started',
        (p) =>
          p.taskId === slower.taskId &&
          other.of('async.task.started').filter((s) => s.taskId === slower.taskId).length === 2,
      );
      await other.ok('async.cancelTask', { sessionId, taskId: slower.taskId });
      await other.waitFor(
        'async.agent.stateChanged',
        (p) =>
          p.sessionId === sessionId &&
          p.agentId === 'asker' &&
          p.reason === 'task_cancelled' &&
          p.state === 'idle',
      );

      // Every push reached the client on the other node, in seq order, with no gap and no duplicate.
      // (The pushes are read first: each is of a committed record, so the history read after holds it.)
      const pushed = seqs(other.pushes, sessionId);
      const { events } = await other.ok('async.getHistory', { sessionId, limit: 1000 });
      expect(pushed).toEqual(pushed.map((_, i) => i + 1));
      expect(pushed.length).toBeGreaterThan(10);
      expect(events.slice(0, pushed.length).map((e: { seq: number }) => e.seq)).toEqual(pushed);
    });

    /**
     * A session with a step in hand, on two clients (one per live node), and the node that runs it:
     * read once the step has started, since a node over its share may hand an idle session over.
     */
    async function busySession(prefix: string) {
      const [x, y] = nodes.filter((n) => n.alive);
      const onX = await connect(x);
      const onY = await connect(y);
      const sessionId = await startSession(onX, newSessionId(prefix));
      await onY.ok('session.subscribe', { sessionId });
      await createScripted(onX, sessionId, 'worker', worker);
      const brief = await onX.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'brief job' });
      await onX.waitFor('async.task.started', (p) => p.taskId === brief.taskId);
      const lease = await probe.lease(sessionId);
      const [owner, survivor, watcher] = lease?.owner === x.id ? [x, y, onY] : [y, x, onX];
      return { sessionId, taskId: brief.taskId as string, owner, survivor, watcher };
    }

    it("takes a killed node's sessions over after the lease runs out and runs the interrupted item again", async () => {
      const { sessionId, taskId, owner, survivor, watcher } = await busySession('doomed');
      const queued = await watcher.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'after' });

      await owner.signal('SIGKILL');
      await expect(watcher.waitForTaskEnd(taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
        payload: { result: { final: 'brief done' } },
      });
      await expect(watcher.waitForTaskEnd(queued.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
      });
      expect((await probe.lease(sessionId))?.owner).toBe(survivor.id);
      await expect(probe.attempts(taskId)).resolves.toBe(2);
      expect(watcher.of('async.task.completed').filter((p) => p.taskId === taskId)).toHaveLength(1);
      const pushed = seqs(watcher.pushes, sessionId);
      expect(new Set(pushed).size).toBe(pushed.length);
    });

    it('fences a node paused past its lease: it commits nothing more for the session it lost', async () => {
      const c = await start('node-c');
      const { sessionId, taskId, owner, survivor, watcher } = await busySession('paused');

      const sinceSurvivor = survivor.logs.length;
      owner.child.kill('SIGSTOP'); // mid-step, past the TTL
      await survivor.waitForLog(/Took over \d+ session/, 30_000, sinceSurvivor);
      await expect(watcher.waitForTaskEnd(taskId)).resolves.toMatchObject({ name: 'async.task.completed' });
      const sinceOwner = owner.logs.length;
      owner.child.kill('SIGCONT');
      // Its step ends and its commit is refused; then it notices the loss and closes the loop.
      await owner.waitForLog(new RegExp(`Refused a write for session ${sessionId}`), 30_000, sinceOwner);
      await owner.waitForLog(/Lost the lease of \d+ session/, 30_000, sinceOwner);

      expect((await probe.lease(sessionId))?.owner).toBe(survivor.id);
      await expect(probe.attempts(taskId)).resolves.toBe(2);
      await expect(probe.historyCount(sessionId, 'async.task.completed')).resolves.toBe(1);
      const after = await watcher.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'after' });
      await expect(watcher.waitForTaskEnd(after.taskId)).resolves.toMatchObject({
        name: 'async.task.completed',
      });
      expect(watcher.of('async.task.completed').filter((p) => p.taskId === taskId)).toHaveLength(1);
      expect(c.alive).toBe(true);
    });

    it('keeps a schedule firing once per run when its owner dies', async () => {
      const live = nodes.filter((n) => n.alive);
      const onAny = await connect(live[0]);
      const sessionId = await startSession(onAny, newSessionId('cron'));
      await createScripted(onAny, sessionId, 'clock', replyAll('tick'));
      const lease = await probe.lease(sessionId);
      const owner = live.find((n) => n.id === lease?.owner)!;
      const survivor = live.find((n) => n !== owner)!;
      const watcher = await connect(survivor);
      await watcher.ok('session.subscribe', { sessionId });
      await watcher.ok('async.scheduleAgent', {
        sessionId,
        agentId: 'clock',
        cron: '* * * * * *',
        prompt: 'tick',
      });
      const firings = () => watcher.of('async.task.completed').filter((p) => p.sessionId === sessionId);
      await watcher.waitFor('async.task.completed', () => firings().length >= 2);

      const since = survivor.logs.length;
      await owner.signal('SIGKILL');
      await survivor.waitForLog(/Took over \d+ session/, 30_000, since);
      const before = firings().length;
      await watcher.waitFor('async.task.completed', () => firings().length >= before + 2);
      expect((await probe.lease(sessionId))?.owner).toBe(survivor.id);
      const runs = await probe.scheduleRuns(sessionId);
      expect(new Set(runs).size).toBe(runs.length);
    });
  });

  describe('a node that leaves and comes back', () => {
    let db: TestDatabase;
    let probe: ClusterProbe;
    let first: NodeProcess | undefined;
    let second: NodeProcess | undefined;
    let client: TestClient | undefined;

    beforeAll(async () => {
      db = await TestDatabase.create();
      probe = await ClusterProbe.open(db);
    });

    afterAll(async () => {
      client?.close();
      await first?.signal('SIGKILL');
      await second?.signal('SIGKILL');
      await probe.close();
      await db.destroy();
    });

    it('hands its leases back at once: another node takes them long before they could expire', async () => {
      // A lease of ten minutes: only a clean hand-back can explain a takeover within the test.
      const env = { LEASE_TTL_MS: '600000' };
      first = await NodeProcess.start(db, 'node-first', env);
      second = await NodeProcess.start(db, 'node-second', env);
      client = await TestClient.connect(second.url);
      const sessions: string[] = [];
      while (sessions.length < 2) {
        const sessionId = await startSession(client, newSessionId('handover'));
        if ((await probe.lease(sessionId))?.owner === 'node-first') {
          await createScripted(client, sessionId, 'worker', worker);
          sessions.push(sessionId);
        }
      }

      const since = second.logs.length;
      await first.signal('SIGTERM');
      expect(first.logs.some((l) => /Handed back \d+ session lease/.test(l))).toBe(true);
      await second.waitForLog(/Took over \d+ session/, 30_000, since);
      for (const sessionId of sessions) {
        expect((await probe.lease(sessionId))?.owner).toBe('node-second');
        const task = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'go' });
        await expect(client.waitForTaskEnd(task.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
        });
      }
    });

    it('restarted after a kill with the same NODE_ID, takes its own sessions back at once', async () => {
      const env = { LEASE_TTL_MS: '600000' };
      let node = await NodeProcess.start(db, 'node-again', env);
      const onNode = await TestClient.connect(node.url);
      let sessionId = '';
      do {
        sessionId = await startSession(onNode, newSessionId('again'));
      } while ((await probe.lease(sessionId))?.owner !== 'node-again');
      await createScripted(onNode, sessionId, 'worker', worker);
      const brief = await onNode.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'brief job' });
      await onNode.waitFor('async.task.started', (p) => p.taskId === brief.taskId);
      onNode.close();
      await node.signal('SIGKILL');

      node = await NodeProcess.start(db, 'node-again', env);
      try {
        const again = await TestClient.connect(node.url);
        await again.ok('session.subscribe', { sessionId });
        await expect(again.waitForTaskEnd(brief.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
        });
        await expect(probe.attempts(brief.taskId)).resolves.toBe(2);
        // Taken up with a new epoch: a zombie under the same name could not commit.
        expect((await probe.lease(sessionId))?.epoch).toBeGreaterThan(1);
        again.close();
      } finally {
        await node.signal('SIGKILL');
      }
    });

    it('with SHUTDOWN_GRACE_MS, lets the item in hand finish before it hands the session over', async () => {
      const env = { LEASE_TTL_MS: '600000', SHUTDOWN_GRACE_MS: '60000' };
      const leaving = await NodeProcess.start(db, 'node-graceful', env);
      const staying = await NodeProcess.start(db, 'node-staying', env);
      const onStaying = await TestClient.connect(staying.url);
      try {
        let sessionId = '';
        do {
          sessionId = await startSession(onStaying, newSessionId('graceful'));
        } while ((await probe.lease(sessionId))?.owner !== 'node-graceful');
        await createScripted(onStaying, sessionId, 'worker', worker);
        const brief = await onStaying.ok('async.sendTask', {
          sessionId,
          agentId: 'worker',
          prompt: 'brief job',
        });
        await onStaying.waitFor('async.task.started', (p) => p.taskId === brief.taskId);
        const next = await onStaying.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'next' });

        await leaving.signal('SIGTERM');
        await expect(onStaying.waitForTaskEnd(brief.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
        });
        await expect(probe.attempts(brief.taskId)).resolves.toBe(1); // finished where it started
        await expect(onStaying.waitForTaskEnd(next.taskId)).resolves.toMatchObject({
          name: 'async.task.completed',
        });
        expect((await probe.lease(sessionId))?.owner).toBe('node-staying');
      } finally {
        onStaying.close();
        await leaving.signal('SIGKILL');
        await staying.signal('SIGKILL');
      }
    });
  });
}

describe('one node (the embedded database, or a lone server)', () => {
  let sut: TestApp;
  let client: TestClient;

  beforeAll(async () => {
    sut = await startTestApp();
    client = await TestClient.connect(sut.url);
  });

  afterAll(async () => {
    client.close();
    await sut.close();
  });

  const leaseOf = (sessionId: string) =>
    sut.app
      .get(DatabaseService)
      .read((tx) =>
        query<{ owner_node: string; epoch: string }>(
          tx,
          `SELECT owner_node, epoch FROM session_lease WHERE session_id = $1`,
          [sessionId],
        ),
      )
      .then((rows) => ({ owner: rows[0]?.owner_node, epoch: Number(rows[0]?.epoch) }));

  it('owns every session it starts, and after a restart takes them all over at once with a new epoch', async () => {
    const sessionId = await startSession(client, newSessionId('alone'));
    await createScripted(client, sessionId, 'worker', worker);
    await expect(leaseOf(sessionId)).resolves.toEqual({ owner: sut.app.get(LeaseService).nodeId, epoch: 1 });
    const health = await fetch(`${sut.url}/health`);
    await expect(health.json()).resolves.toMatchObject({
      status: 'ok',
      node: { id: sut.app.get(LeaseService).nodeId, sessions: expect.any(Number) },
    });

    client.close();
    await sut.stop();
    await sut.restart();
    client = await TestClient.connect(sut.url);
    await client.ok('session.subscribe', { sessionId });
    await expect(leaseOf(sessionId)).resolves.toEqual({ owner: sut.app.get(LeaseService).nodeId, epoch: 2 });
    const task = await client.ok('async.sendTask', { sessionId, agentId: 'worker', prompt: 'again' });
    await expect(client.waitForTaskEnd(task.taskId)).resolves.toMatchObject({
      payload: { result: { final: 'done again' } },
    });
  });
});

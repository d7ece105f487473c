import { AgentRepository } from 'src/agents/agent.repository';
import { AgentState } from 'src/agents/agent.types';
import { Priority } from 'src/common/names';
import { DatabaseService, sql, Tx } from 'src/database/database.service';
import { query } from 'src/database/sql';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { NewWorkItem, WorkItemRepository } from 'src/mailbox/work-item.repository';
import { SessionRepository } from 'src/sessions/session.repository';
import { newAgentRow } from '../factories/agent-rows';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';
const LATER = '2026-01-01T00:05:00.000Z';

describe(WorkItemRepository.name, () => {
  const sut = new WorkItemRepository();
  const sessions = new SessionRepository();
  const agents = new AgentRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** A session holding the given agents (idle unless told otherwise). */
  async function givenAgents(states: Record<string, AgentState>): Promise<string> {
    const sessionId = newSessionId();
    await db.transaction(async (tx) => {
      await sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: AT });
      for (const [agentId, state] of Object.entries(states)) {
        await agents.insert(tx, newAgentRow(sessionId, agentId, state, AT));
      }
    });
    return sessionId;
  }

  const newItem = (sessionId: string, agentId: string, patch: Partial<NewWorkItem> = {}): NewWorkItem => ({
    sessionId,
    agentId,
    kind: 'task',
    priority: 'normal',
    prompt: 'do it',
    createdAt: AT,
    ...patch,
  });

  const insert = (item: NewWorkItem) => db.transaction((tx) => sut.insert(tx, item));
  const claim = (sessionId: string, agentId: string) =>
    db.transaction((tx) => sut.claimNext(tx, sessionId, agentId, LATER));
  const find = (sessionId: string, taskId: string) => db.read((tx) => sut.find(tx, sessionId, taskId));
  const countQueued = (sessionId: string, agentId: string) =>
    db.read((tx) => sut.countQueued(tx, sessionId, agentId));

  it('keeps the hops an item was queued with, 0 when none was given', async () => {
    const sessionId = await givenAgents({ a: 'idle' });
    const { item: relayed } = await insert(newItem(sessionId, 'a', { hops: 7 }));
    const { item: fromClient } = await insert(newItem(sessionId, 'a'));
    await expect(find(sessionId, relayed.taskId)).resolves.toMatchObject({ hops: 7 });
    await expect(find(sessionId, fromClient.taskId)).resolves.toMatchObject({ hops: 0 });
  });

  it('queues an item with everything it was given', async () => {
    const sessionId = await givenAgents({ a: 'idle' });
    const { item, created } = await insert(
      newItem(sessionId, 'a', {
        kind: 'mailbox_message',
        priority: 'high',
        prompt: 'hello',
        payload: { messageId: 'm1', from: 'user', subject: 'Hi' },
      }),
    );
    expect(created).toBe(true);
    expect(item).toEqual({
      taskId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      sessionId,
      agentId: 'a',
      kind: 'mailbox_message',
      priority: 'high',
      isSwitch: false,
      hops: 0,
      state: 'queued',
      attempts: 0,
      idempotencyKey: null,
      prompt: 'hello',
      payload: { messageId: 'm1', from: 'user', subject: 'Hi' },
      result: null,
      error: null,
      usage: null,
      createdAt: AT,
      startedAt: null,
      finishedAt: null,
    });
    await expect(find(sessionId, item.taskId)).resolves.toEqual(item);
    await expect(find(newSessionId(), item.taskId)).resolves.toBeUndefined();
  });

  it('returns the earlier item for an idempotency key the agent already used', async () => {
    const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
    const first = await insert(newItem(sessionId, 'a', { idempotencyKey: 'k1', prompt: 'first' }));
    const again = await insert(newItem(sessionId, 'a', { idempotencyKey: 'k1', prompt: 'second' }));
    expect(again).toEqual({ item: first.item, created: false });
    expect(first.item.idempotencyKey).toBe('k1');

    // The key is the agent's own: another agent, or another key, makes a new item.
    await expect(insert(newItem(sessionId, 'b', { idempotencyKey: 'k1' }))).resolves.toMatchObject({
      created: true,
    });
    await expect(insert(newItem(sessionId, 'a', { idempotencyKey: 'k2' }))).resolves.toMatchObject({
      created: true,
    });
    await expect(countQueued(sessionId, 'a')).resolves.toBe(2);
  });

  it('claims switch mail first, then by priority, then first in first out', async () => {
    const sessionId = await givenAgents({ a: 'idle', other: 'idle' });
    const queued: Array<[string, Priority, boolean]> = [
      ['low', 'low', false],
      ['normal 1', 'normal', false],
      ['urgent', 'urgent', false],
      ['normal 2', 'normal', false],
      ['switch', 'normal', true],
      ['high', 'high', false],
      ['normal 3', 'normal', false],
    ];
    for (const [prompt, priority, isSwitch] of queued) {
      await insert(newItem(sessionId, 'a', { prompt, priority, isSwitch }));
    }
    await insert(newItem(sessionId, 'other', { priority: 'urgent', prompt: 'not yours' }));

    const order: string[] = [];
    for (let item = await claim(sessionId, 'a'); item; item = await claim(sessionId, 'a')) {
      expect(item).toMatchObject({ agentId: 'a', state: 'running', attempts: 1, startedAt: LATER });
      order.push(item.prompt);
    }
    expect(order).toEqual(['switch', 'urgent', 'high', 'normal 1', 'normal 2', 'normal 3', 'low']);
    await expect(countQueued(sessionId, 'a')).resolves.toBe(0);
    await expect(countQueued(sessionId, 'other')).resolves.toBe(1);
  });

  // A race between concurrent transactions: on PGlite the database module runs them one after the
  // other, so this test cannot fail there. It runs where it can fail, on a Postgres server.
  if (process.env.TEST_DATABASE_URL) {
    it('never hands one item to two claimers at once (a race: Postgres server only)', claimRace);
  } else {
    console.log(
      'WorkItemRepository: the claim race test runs on a Postgres server only (TEST_DATABASE_URL); PGlite serializes transactions, so it cannot fail there',
    );
  }

  async function claimRace() {
    const sessionId = await givenAgents({ a: 'idle' });
    for (let i = 0; i < 6; i++) {
      await insert(newItem(sessionId, 'a', { prompt: `item ${i}` }));
    }
    const claimed = await Promise.all(Array.from({ length: 8 }, () => claim(sessionId, 'a')));
    const ids = claimed.filter((c) => c !== undefined).map((c) => c.taskId);
    expect(ids).toHaveLength(6);
    expect(new Set(ids).size).toBe(6);
  }

  it('requeues a running item in its old place, and only a running one', async () => {
    const sessionId = await givenAgents({ a: 'idle' });
    const first = (await insert(newItem(sessionId, 'a', { prompt: 'first' }))).item;
    const running = (await claim(sessionId, 'a'))!;
    expect(running.taskId).toBe(first.taskId);
    await insert(newItem(sessionId, 'a', { prompt: 'second' }));

    await db.transaction((tx) => sut.requeue(tx, first.taskId));
    await expect(find(sessionId, first.taskId)).resolves.toMatchObject({
      state: 'queued',
      startedAt: null,
      attempts: 1,
    });
    await expect(claim(sessionId, 'a')).resolves.toMatchObject({ taskId: first.taskId, attempts: 2 });

    await db.transaction((tx) => sut.finish(tx, first.taskId, { state: 'done', at: LATER }));
    await db.transaction((tx) => sut.requeue(tx, first.taskId));
    await expect(find(sessionId, first.taskId)).resolves.toMatchObject({ state: 'done' });
  });

  it('finishes an item only from queued or running', async () => {
    const sessionId = await givenAgents({ a: 'idle' });
    const running = (await insert(newItem(sessionId, 'a', { prompt: 'running' }))).item;
    await claim(sessionId, 'a');
    const queued = (await insert(newItem(sessionId, 'a', { prompt: 'queued' }))).item;

    const cancelled = await db.transaction((tx) =>
      sut.finish(tx, queued.taskId, {
        state: 'cancelled',
        error: { code: 'cancelled', message: 'by the client' },
        at: LATER,
      }),
    );
    expect(cancelled).toMatchObject({
      state: 'cancelled',
      error: { code: 'cancelled' },
      startedAt: null,
      finishedAt: LATER,
    });
    const usage = { promptTokens: 12, completionTokens: 3 };
    const done = await db.transaction((tx) =>
      sut.finish(tx, running.taskId, { state: 'done', result: { final: 'ok' }, usage, at: LATER }),
    );
    expect(done).toMatchObject({
      state: 'done',
      result: { final: 'ok' },
      usage,
      error: null,
      finishedAt: LATER,
    });

    for (const taskId of [queued.taskId, running.taskId]) {
      await expect(
        db.transaction((tx) =>
          sut.finish(tx, taskId, { state: 'failed', error: { code: 'x', message: 'late' }, at: AT }),
        ),
      ).resolves.toBeUndefined();
    }
    await expect(find(sessionId, queued.taskId)).resolves.toEqual(cancelled);
    await expect(find(sessionId, running.taskId)).resolves.toEqual(done);
  });

  it('lists running items, and finds the running item and a mail’s queued item', async () => {
    const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
    const mail = (
      await insert(newItem(sessionId, 'b', { kind: 'mailbox_message', payload: { messageId: 'm-7' } }))
    ).item;
    await insert(newItem(sessionId, 'a', { prompt: 'one' }));
    await insert(newItem(sessionId, 'a', { prompt: 'two' }));
    const running = (await claim(sessionId, 'a'))!;

    const listed = await db.read((tx) => sut.listRunning(tx));
    expect(listed.filter((i) => i.sessionId === sessionId)).toEqual([running]);
    await expect(db.read((tx) => sut.findRunning(tx, sessionId, 'a'))).resolves.toEqual(running);
    await expect(db.read((tx) => sut.findRunning(tx, sessionId, 'b'))).resolves.toBeUndefined();
    await expect(db.read((tx) => sut.findQueuedForMail(tx, sessionId, 'm-7'))).resolves.toEqual(mail);
    await claim(sessionId, 'b');
    await expect(db.read((tx) => sut.findQueuedForMail(tx, sessionId, 'm-7'))).resolves.toBeUndefined();
  });

  it('lists as claimable only idle agents with queued work', async () => {
    const sessionId = await givenAgents({
      ready: 'idle',
      empty: 'idle',
      busy: 'active',
      asleep: 'sleeping',
      off: 'stopped',
    });
    for (const agentId of ['ready', 'ready', 'busy', 'asleep', 'off']) {
      await insert(newItem(sessionId, agentId));
    }
    const claimable = await db.read((tx) => sut.listClaimable(tx));
    expect(claimable.filter((c) => c.sessionId === sessionId)).toEqual([{ sessionId, agentId: 'ready' }]);
  });

  it('lists as claimable only the agents of the sessions asked for, when asked for some', async () => {
    const asked = await givenAgents({ ready: 'idle' });
    const other = await givenAgents({ ready: 'idle' });
    await insert(newItem(asked, 'ready'));
    await insert(newItem(other, 'ready'));
    await expect(db.read((tx) => sut.listClaimable(tx, [asked]))).resolves.toEqual([
      { sessionId: asked, agentId: 'ready' },
    ]);
  });

  describe('enqueue', () => {
    const enqueue = (item: NewWorkItem, maxQueued: number | null = null) =>
      db.transaction((tx) => sut.enqueue(tx, item, maxQueued));
    const itemsOf = (sessionId: string) =>
      db.read((tx) =>
        query<{ id: string; agent_id: string; prompt: string }>(
          tx,
          `SELECT id, agent_id, prompt FROM work_item WHERE session_id = $1 ORDER BY seq`,
          [sessionId],
        ),
      );

    it('inserts the item with everything it was given, and says how many were queued before it', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      const result = await enqueue(
        newItem(sessionId, 'a', {
          kind: 'mailbox_message',
          priority: 'urgent',
          isSwitch: true,
          hops: 3,
          idempotencyKey: 'k1',
          prompt: 'hello there',
          payload: { messageId: 'm1', from: 'b', subject: 'Hi', traceparent: '00-abc-def-01' },
          createdAt: LATER,
        }),
        10,
      );
      expect(result).toEqual({
        agentExists: true,
        queued: 0,
        inserted: {
          taskId: expect.stringMatching(/^[0-9a-f-]{36}$/),
          sessionId,
          agentId: 'a',
          kind: 'mailbox_message',
          priority: 'urgent',
          isSwitch: true,
          hops: 3,
          state: 'queued',
          attempts: 0,
          idempotencyKey: 'k1',
          prompt: 'hello there',
          payload: { messageId: 'm1', from: 'b', subject: 'Hi', traceparent: '00-abc-def-01' },
          result: null,
          error: null,
          usage: null,
          createdAt: LATER,
          startedAt: null,
          finishedAt: null,
        },
      });
      // What it returns is what it stored.
      await expect(find(sessionId, result.inserted!.taskId)).resolves.toEqual(result.inserted);
    });

    it('fills in the defaults: normal priority, no switch, 0 hops, an empty payload, no key', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      const { inserted } = await enqueue(newItem(sessionId, 'a'));
      expect(inserted).toMatchObject({
        kind: 'task',
        priority: 'normal',
        isSwitch: false,
        hops: 0,
        payload: {},
        idempotencyKey: null,
        prompt: 'do it',
        createdAt: AT,
      });
      await expect(find(sessionId, inserted!.taskId)).resolves.toEqual(inserted);
    });

    it('counts as queued before only the agent’s own queued items', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      await expect(enqueue(newItem(sessionId, 'a'))).resolves.toMatchObject({ queued: 0 });
      await expect(enqueue(newItem(sessionId, 'a'))).resolves.toMatchObject({ queued: 1 });
      await claim(sessionId, 'a'); // running: no longer queued
      const done = (await insert(newItem(sessionId, 'a'))).item;
      await db.transaction((tx) => sut.finish(tx, done.taskId, { state: 'done', at: LATER }));
      await insert(newItem(sessionId, 'b'));
      await expect(enqueue(newItem(sessionId, 'a'))).resolves.toMatchObject({ queued: 1, inserted: {} });
      await expect(countQueued(sessionId, 'a')).resolves.toBe(2);
    });

    it('inserts nothing for an agent the session does not have', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      await expect(enqueue(newItem(sessionId, 'nobody', { idempotencyKey: 'k' }), 10)).resolves.toEqual({
        agentExists: false,
        queued: 0,
      });
      await expect(enqueue(newItem(newSessionId(), 'a'))).resolves.toEqual({ agentExists: false, queued: 0 });
      await expect(itemsOf(sessionId)).resolves.toEqual([]);
    });

    it('returns the earlier item for a repeated idempotency key and inserts nothing, even with the queue full', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      const first = await enqueue(newItem(sessionId, 'a', { idempotencyKey: 'k1', prompt: 'first' }), 1);
      expect(first).toMatchObject({ agentExists: true, queued: 0, inserted: { prompt: 'first' } });

      const again = await enqueue(newItem(sessionId, 'a', { idempotencyKey: 'k1', prompt: 'second' }), 1);
      expect(again).toEqual({ agentExists: true, queued: 1, earlier: first.inserted });
      const unlimited = await enqueue(
        newItem(sessionId, 'a', { idempotencyKey: 'k1', prompt: 'third' }),
        null,
      );
      expect(unlimited).toEqual({ agentExists: true, queued: 1, earlier: first.inserted });

      // Still the earlier item once it has run and ended.
      const running = (await claim(sessionId, 'a'))!;
      await db.transaction((tx) =>
        sut.finish(tx, running.taskId, { state: 'done', result: { final: 'ok' }, at: LATER }),
      );
      const ended = await find(sessionId, running.taskId);
      await expect(enqueue(newItem(sessionId, 'a', { idempotencyKey: 'k1' }), 1)).resolves.toEqual({
        agentExists: true,
        queued: 0,
        earlier: ended,
      });

      // The key is the agent's own.
      await expect(enqueue(newItem(sessionId, 'b', { idempotencyKey: 'k1' }), 1)).resolves.toMatchObject({
        inserted: { agentId: 'b', idempotencyKey: 'k1' },
      });
      const rows = await itemsOf(sessionId);
      expect(rows.map((r) => [r.agent_id, r.prompt])).toEqual([
        ['a', 'first'],
        ['b', 'do it'],
      ]);
    });

    it('inserts nothing once maxQueued items wait, and has no limit with null', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      for (let i = 0; i < 2; i++) {
        await expect(enqueue(newItem(sessionId, 'a', { prompt: `item ${i}` }), 2)).resolves.toMatchObject({
          queued: i,
          inserted: { prompt: `item ${i}` },
        });
      }
      await expect(enqueue(newItem(sessionId, 'a', { prompt: 'one too many' }), 2)).resolves.toEqual({
        agentExists: true,
        queued: 2,
      });
      await expect(
        enqueue(newItem(sessionId, 'a', { prompt: 'keyed', idempotencyKey: 'new' }), 2),
      ).resolves.toEqual({ agentExists: true, queued: 2 });
      await expect(enqueue(newItem(sessionId, 'a', { prompt: 'none may wait' }), 0)).resolves.toEqual({
        agentExists: true,
        queued: 2,
      });
      // Another agent's queue is its own.
      await expect(enqueue(newItem(sessionId, 'b'), 2)).resolves.toMatchObject({ queued: 0, inserted: {} });
      // A claimed item makes room.
      await claim(sessionId, 'a');
      await expect(enqueue(newItem(sessionId, 'a', { prompt: 'room' }), 2)).resolves.toMatchObject({
        queued: 1,
        inserted: { prompt: 'room' },
      });
      // No limit.
      await expect(enqueue(newItem(sessionId, 'a', { prompt: 'forced' }), null)).resolves.toMatchObject({
        queued: 2,
        inserted: { prompt: 'forced' },
      });
      await expect(countQueued(sessionId, 'a')).resolves.toBe(3);
      const prompts = (await itemsOf(sessionId)).filter((r) => r.agent_id === 'a').map((r) => r.prompt);
      expect(prompts).toEqual(['item 0', 'item 1', 'room', 'forced']);
    });

    // A race between concurrent transactions (PGlite runs them one after the other): the statement
    // waits on the other transaction's uncommitted key, which its snapshot cannot show once that commits.
    if (process.env.TEST_DATABASE_URL) {
      it('returns neither an earlier nor an inserted item for a key a concurrent transaction took (a race: Postgres server only)', async () => {
        const sessionId = await givenAgents({ a: 'idle' });
        const item = newItem(sessionId, 'a', { idempotencyKey: 'k' });
        let second: Promise<Awaited<ReturnType<WorkItemRepository['enqueue']>>> | undefined;
        const first = await db.transaction(async (tx) => {
          const result = await sut.enqueue(tx, item, null);
          second = db.transaction((other) => sut.enqueue(other, { ...item, prompt: 'second' }, null));
          await untilSomeoneWaitsForALock();
          return result;
        });
        expect(first).toMatchObject({ inserted: { idempotencyKey: 'k' } });
        await expect(second).resolves.toEqual({ agentExists: true, queued: 0 });
        // What MailboxService then looks up, in a statement of its own.
        await expect(db.read((tx) => sut.findByIdempotencyKey(tx, sessionId, 'a', 'k'))).resolves.toEqual(
          first.inserted,
        );
        await expect(itemsOf(sessionId)).resolves.toHaveLength(1);
      });
    }

    /** Resolves once a backend of this database waits for a lock (polled: no fixed delay). */
    async function untilSomeoneWaitsForALock(): Promise<void> {
      for (;;) {
        const [{ n }] = await db.read((tx) =>
          query<{ n: number }>(
            tx,
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          ),
        );
        if (n > 0) {
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }

    /**
     * What MailboxService.enqueue did before with three statements (countQueued,
     * findByIdempotencyKey, then insert unless the queue was full), as enqueue's result.
     */
    async function enqueueBefore(tx: Tx, item: NewWorkItem, maxQueued: number | null) {
      const queued = await sut.countQueued(tx, item.sessionId, item.agentId);
      const earlier = item.idempotencyKey
        ? await sut.findByIdempotencyKey(tx, item.sessionId, item.agentId, item.idempotencyKey)
        : undefined;
      if (earlier) {
        return { agentExists: true, queued, earlier };
      }
      if (maxQueued !== null && queued >= maxQueued) {
        return { agentExists: true, queued };
      }
      const { item: inserted, created } = await sut.insert(tx, item);
      return { agentExists: true, queued, ...(created ? { inserted } : { earlier: inserted }) };
    }

    const strip = (r: { earlier?: WorkItem; inserted?: WorkItem }) => ({
      ...r,
      ...(r.earlier ? { earlier: { ...r.earlier, taskId: undefined, sessionId: undefined } } : {}),
      ...(r.inserted ? { inserted: { ...r.inserted, taskId: undefined, sessionId: undefined } } : {}),
    });

    it.each<[string, number | null, string | undefined]>([
      ['room, no key', 3, undefined],
      ['room, a new key', 3, 'fresh'],
      ['room, a used key', 3, 'used'],
      ['full, no key', 2, undefined],
      ['full, a new key', 2, 'fresh'],
      ['full, a used key', 2, 'used'],
      ['no limit, no key', null, undefined],
      ['no limit, a used key', null, 'used'],
    ])('does what the statements it replaced did: %s', async (_case, maxQueued, idempotencyKey) => {
      const results = [];
      const stored = [];
      for (const run of [enqueueBefore, sut.enqueue.bind(sut)]) {
        const sessionId = await givenAgents({ a: 'idle' });
        await insert(newItem(sessionId, 'a', { prompt: 'used', idempotencyKey: 'used' }));
        await insert(newItem(sessionId, 'a', { prompt: 'other' }));
        const item = newItem(sessionId, 'a', {
          prompt: 'new',
          priority: 'high',
          idempotencyKey,
          createdAt: LATER,
        });
        results.push(strip(await db.transaction((tx) => run(tx, item, maxQueued))));
        stored.push(
          (
            await db.read((tx) =>
              query<{ prompt: string }>(
                tx,
                `SELECT prompt FROM work_item WHERE session_id = $1 ORDER BY seq`,
                [sessionId],
              ),
            )
          ).map((r) => r.prompt),
        );
      }
      expect(results[1]).toEqual(results[0]);
      expect(stored[1]).toEqual(stored[0]);
    });
  });

  describe('enqueue with claim (the hand-off)', () => {
    const enqueue = (item: NewWorkItem, claim: boolean, maxQueued: number | null = null) =>
      db.transaction((tx) => sut.enqueue(tx, item, maxQueued, claim));
    const agentOf = (sessionId: string, agentId: string) =>
      db.read((tx) => agents.find(tx, sessionId, agentId));

    it('claims the item for an idle agent with nothing queued: running, its first attempt, the agent active', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      const out = await enqueue(newItem(sessionId, 'a'), true);
      expect(out).toMatchObject({ agentExists: true, queued: 0 });
      expect(out.inserted).toMatchObject({ state: 'running', attempts: 1, startedAt: AT, createdAt: AT });
      expect(out.claimedBy).toMatchObject({ session_id: sessionId, id: 'a', state: 'active' });
      await expect(find(sessionId, out.inserted!.taskId)).resolves.toEqual(out.inserted);
      await expect(agentOf(sessionId, 'a')).resolves.toMatchObject({ state: 'active', lastActiveAt: AT });
    });

    it('only queues it for an agent that is not idle, or has work queued, or without claim', async () => {
      const states: Record<string, AgentState> = {
        busy: 'active',
        asleep: 'sleeping',
        waits: 'waiting',
        stopped: 'stopped',
        b: 'idle',
        c: 'idle',
      };
      const sessionId = await givenAgents(states);
      await enqueue(newItem(sessionId, 'b'), false);
      for (const agentId of ['busy', 'asleep', 'waits', 'stopped', 'b']) {
        const out = await enqueue(newItem(sessionId, agentId), true);
        expect(out.inserted).toMatchObject({ state: 'queued', attempts: 0, startedAt: null });
        expect(out.claimedBy).toBeUndefined();
      }
      const unclaimed = await enqueue(newItem(sessionId, 'c'), false);
      expect(unclaimed.inserted).toMatchObject({ state: 'queued' });
      expect(unclaimed.claimedBy).toBeUndefined();
      for (const [agentId, state] of Object.entries(states)) {
        await expect(agentOf(sessionId, agentId)).resolves.toMatchObject({ state });
      }
    });

    it('claims nothing when nothing is inserted: a repeated idempotency key, a full queue, a missing agent', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      const first = await enqueue(newItem(sessionId, 'a', { idempotencyKey: 'k' }), false);
      const again = await enqueue(newItem(sessionId, 'a', { idempotencyKey: 'k' }), true);
      expect(again).toMatchObject({ earlier: { taskId: first.inserted!.taskId, state: 'queued' } });
      expect(again.inserted).toBeUndefined();
      expect(again.claimedBy).toBeUndefined();
      const full = await enqueue(newItem(sessionId, 'b'), true, 0);
      expect(full.inserted).toBeUndefined();
      expect(full.claimedBy).toBeUndefined();
      const missing = await enqueue(newItem(sessionId, 'nobody'), true);
      expect(missing).toEqual({ agentExists: false, queued: 0 });
      await expect(agentOf(sessionId, 'a')).resolves.toMatchObject({ state: 'idle' });
      await expect(agentOf(sessionId, 'b')).resolves.toMatchObject({ state: 'idle' });
    });

    it('claims for each idle agent with nothing queued in one statement, of several sessions, the others only queued', async () => {
      const one = await givenAgents({ a: 'idle', b: 'active' });
      const two = await givenAgents({ a: 'idle' });
      const out = await db.transaction((tx) =>
        sut.enqueueMany(tx, [
          { item: newItem(one, 'a'), maxQueued: null, claim: true },
          { item: newItem(one, 'b'), maxQueued: null, claim: true },
          { item: newItem(two, 'a'), maxQueued: null, claim: true },
        ]),
      );
      expect(
        out.map((o) => [
          o.inserted?.sessionId,
          o.inserted?.state,
          (o.claimedBy as { state?: string })?.state,
        ]),
      ).toEqual([
        [one, 'running', 'active'],
        [one, 'queued', undefined],
        [two, 'running', 'active'],
      ]);
      await expect(agentOf(two, 'a')).resolves.toMatchObject({ state: 'active' });
    });
  });

  it('counts only the agent’s queued items', async () => {
    const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
    await expect(countQueued(sessionId, 'a')).resolves.toBe(0);
    for (let i = 0; i < 3; i++) {
      await insert(newItem(sessionId, 'a'));
    }
    await insert(newItem(sessionId, 'b'));
    await claim(sessionId, 'a');
    await expect(countQueued(sessionId, 'a')).resolves.toBe(2);
    await expect(countQueued(sessionId, 'b')).resolves.toBe(1);
    await expect(countQueued(newSessionId(), 'a')).resolves.toBe(0);
  });

  describe('enqueueMany: for each item, what enqueue does for it alone', () => {
    type Enqueued = Awaited<ReturnType<WorkItemRepository['enqueue']>>;
    type Call = { item: Omit<NewWorkItem, 'sessionId'>; maxQueued: number | null };

    const strip = (r: Enqueued) => ({
      ...r,
      ...(r.earlier ? { earlier: { ...r.earlier, taskId: undefined, sessionId: undefined } } : {}),
      ...(r.inserted ? { inserted: { ...r.inserted, taskId: undefined, sessionId: undefined } } : {}),
    });

    /** Every item row of the session as stored (all columns), without its id, session and seq. */
    const rowsOf = (sessionId: string) =>
      db.read(async (tx) =>
        (
          await query<{ r: Record<string, unknown> }>(
            tx,
            `SELECT to_jsonb(w) - 'id' - 'session_id' - 'seq' AS r FROM work_item w WHERE session_id = $1 ORDER BY seq`,
            [sessionId],
          )
        ).map((x) => x.r),
      );

    /**
     * A session with agents a (idle), b (sleeping), c (stopped) and d (idle, nothing queued): a has two
     * items queued (one keyed `used`), one running and one done (keyed `ended`); b and c one queued each.
     */
    async function givenQueues(): Promise<string> {
      const sessionId = await givenAgents({ a: 'idle', b: 'sleeping', c: 'stopped', d: 'idle' });
      await insert(newItem(sessionId, 'a', { prompt: 'a: running' }));
      await claim(sessionId, 'a');
      const ended = (await insert(newItem(sessionId, 'a', { prompt: 'a: ended', idempotencyKey: 'ended' })))
        .item;
      await db.transaction((tx) =>
        sut.finish(tx, ended.taskId, { state: 'done', result: { final: 'ok' }, at: LATER }),
      );
      await insert(newItem(sessionId, 'a', { prompt: 'a: used', idempotencyKey: 'used', priority: 'high' }));
      await insert(newItem(sessionId, 'b', { prompt: 'b: queued', idempotencyKey: 'b-used' }));
      await insert(newItem(sessionId, 'a', { prompt: 'a: other' }));
      await insert(newItem(sessionId, 'c', { prompt: 'c: queued' }));
      return sessionId;
    }

    /**
     * Builds the queues twice; queues the items one by one with enqueue in one session and with one
     * enqueueMany in the other; expects the same results (in input order) and the same rows, and the
     * first session untouched by the second's statement. Returns enqueueMany's results.
     */
    async function enqueueManyAsEnqueue(calls: Call[]): Promise<Enqueued[]> {
      const old = await givenQueues();
      const now = await givenQueues();
      const alone = await db.transaction(async (tx) => {
        const out: Enqueued[] = [];
        for (const { item, maxQueued } of calls) {
          out.push(await sut.enqueue(tx, { ...item, sessionId: old }, maxQueued));
        }
        return out;
      });
      const oldRows = await rowsOf(old);
      const many = await db.transaction((tx) =>
        sut.enqueueMany(
          tx,
          calls.map(({ item, maxQueued }) => ({ item: { ...item, sessionId: now }, maxQueued })),
        ),
      );
      expect(many).toHaveLength(calls.length);
      expect(many.map(strip)).toEqual(alone.map(strip));
      await expect(rowsOf(now)).resolves.toEqual(oldRows);
      await expect(rowsOf(old)).resolves.toEqual(oldRows);
      // What it returns is what it stored.
      for (const r of many) {
        for (const item of [r.inserted, r.earlier].filter((x) => x !== undefined)) {
          expect(item.sessionId).toBe(now);
          await expect(find(now, item.taskId)).resolves.toEqual(item);
        }
      }
      return many;
    }

    const item = (agentId: string, patch: Partial<NewWorkItem> = {}): Omit<NewWorkItem, 'sessionId'> => ({
      agentId,
      kind: 'task',
      priority: 'normal',
      prompt: `new for ${agentId}`,
      createdAt: LATER,
      ...patch,
    });

    const LIMITS: Array<[string, number | null]> = [
      ['room', 3],
      ['full', 2],
      ['none may wait', 0],
      ['no limit', null],
    ];
    const KEYS: Array<[string, string | undefined]> = [
      ['no key', undefined],
      ['a new key', 'fresh'],
      ['a key of a queued item', 'used'],
      ['a key of an ended item', 'ended'],
      ['another agent’s key', 'b-used'],
    ];
    const cases = LIMITS.flatMap(([l, max]) => KEYS.map(([k, key]) => [l, max, k, key] as const));

    it.each(cases)('one item, %s (maxQueued %s), %s', async (_l, maxQueued, _k, idempotencyKey) => {
      const [result] = await enqueueManyAsEnqueue([
        { item: item('a', { idempotencyKey, priority: 'high' }), maxQueued },
      ]);
      const used = idempotencyKey === 'used' || idempotencyKey === 'ended';
      const room = maxQueued === null || maxQueued > 2;
      expect(result).toMatchObject({ agentExists: true, queued: 2 });
      expect(Boolean(result.earlier)).toBe(used);
      expect(Boolean(result.inserted)).toBe(!used && room);
    });

    it('one item with everything given, and one with the defaults', async () => {
      const many = await enqueueManyAsEnqueue([
        {
          item: item('d', {
            kind: 'mailbox_message',
            priority: 'urgent',
            isSwitch: true,
            hops: 3,
            idempotencyKey: 'k1',
            prompt: 'hello "there"\n\\ ünïcødé ✉️',
            payload: { messageId: 'm1', from: 'b', subject: 'Hi', data: { list: [1, 'two', null] } },
            createdAt: '2026-01-01T01:05:00.123456+01:00',
          }),
          maxQueued: 10,
        },
        {
          item: { agentId: 'b', kind: 'event', priority: 'low', prompt: 'defaults', createdAt: AT },
          maxQueued: null,
        },
      ]);
      expect(many[0].inserted).toMatchObject({
        kind: 'mailbox_message',
        priority: 'urgent',
        isSwitch: true,
        hops: 3,
        idempotencyKey: 'k1',
        prompt: 'hello "there"\n\\ ünïcødé ✉️',
        createdAt: '2026-01-01T00:05:00.123Z',
      });
      expect(many[1].inserted).toMatchObject({
        kind: 'event',
        priority: 'low',
        isSwitch: false,
        hops: 0,
        payload: {},
        idempotencyKey: null,
      });
    });

    it('a mix in one call: room, sleeping, stopped, nothing queued, missing, full, repeated keys, 0 and no limit', async () => {
      const many = await enqueueManyAsEnqueue([
        { item: item('b', { idempotencyKey: 'b-used' }), maxQueued: 0 },
        { item: item('nobody', { idempotencyKey: 'used' }), maxQueued: 10 },
        { item: item('d'), maxQueued: 0 },
        { item: item('a', { idempotencyKey: 'fresh', isSwitch: true }), maxQueued: null },
        { item: item('c', { priority: 'urgent' }), maxQueued: 1 },
        { item: item('other-nobody'), maxQueued: null },
        { item: item('e-not-here', { idempotencyKey: 'x' }), maxQueued: 0 },
      ]);
      expect(many.map((r) => [r.agentExists, r.queued, r.earlier?.prompt, r.inserted?.prompt])).toEqual([
        [true, 1, 'b: queued', undefined],
        [false, 0, undefined, undefined],
        [true, 0, undefined, undefined],
        [true, 2, undefined, 'new for a'],
        [true, 1, undefined, undefined],
        [false, 0, undefined, undefined],
        [false, 0, undefined, undefined],
      ]);

      // And with room for each: every existing agent gets its item, in input order.
      const roomy = await enqueueManyAsEnqueue(
        ['d', 'nobody', 'c', 'a', 'b'].map((agentId) => ({ item: item(agentId), maxQueued: 5 })),
      );
      expect(roomy.map((r) => [r.queued, r.inserted?.agentId])).toEqual([
        [0, 'd'],
        [0, undefined],
        [1, 'c'],
        [2, 'a'],
        [1, 'b'],
      ]);
    });

    it('answers in input order, whatever the order', async () => {
      for (const ids of [
        ['a', 'b', 'c', 'd'],
        ['d', 'c', 'b', 'a'],
        ['b', 'd', 'a', 'c'],
      ]) {
        const many = await enqueueManyAsEnqueue(
          ids.map((agentId) => ({ item: item(agentId), maxQueued: null })),
        );
        expect(many.map((r) => r.inserted?.agentId)).toEqual(ids);
      }
    });

    it('does nothing for an empty list, or for agents of another session', async () => {
      const sessionId = await givenQueues();
      const rows = await rowsOf(sessionId);
      await expect(db.transaction((tx) => sut.enqueueMany(tx, []))).resolves.toEqual([]);
      const elsewhere = newSessionId();
      await expect(
        db.transaction((tx) =>
          sut.enqueueMany(tx, [{ item: { ...item('a'), sessionId: elsewhere }, maxQueued: null }]),
        ),
      ).resolves.toEqual([{ agentExists: false, queued: 0 }]);
      await expect(rowsOf(sessionId)).resolves.toEqual(rows);
    });

    it('queues for agents of several sessions (the same agent ids) in one statement, as per session', async () => {
      const calls: Call[] = [
        { item: item('a', { idempotencyKey: 'used' }), maxQueued: null },
        { item: item('b'), maxQueued: 10 },
        { item: item('d', { priority: 'urgent' }), maxQueued: 0 },
        { item: item('c'), maxQueued: null },
        { item: item('nobody'), maxQueued: null },
      ];
      const perSession = [await givenQueues(), await givenQueues()];
      const alone = await db.transaction(async (tx) => {
        const out: Enqueued[][] = [];
        for (const sessionId of perSession) {
          out.push(
            await sut.enqueueMany(
              tx,
              calls.map(({ item, maxQueued }) => ({ item: { ...item, sessionId }, maxQueued })),
            ),
          );
        }
        return out;
      });
      const together = [await givenQueues(), await givenQueues()];
      // Interleaved: a of the first session, a of the second, b of the first…
      const interleaved = calls.flatMap(({ item, maxQueued }) =>
        together.map((sessionId) => ({ item: { ...item, sessionId }, maxQueued })),
      );
      const many = await db.transaction((tx) => sut.enqueueMany(tx, interleaved));
      for (const [s, sessionId] of together.entries()) {
        const mine = many.filter((_, i) => i % together.length === s);
        expect(mine.map(strip)).toEqual(alone[s].map(strip));
        expect(mine.every((r) => [r.inserted, r.earlier].every((w) => !w || w.sessionId === sessionId))).toBe(
          true,
        );
        await expect(rowsOf(sessionId)).resolves.toEqual(await rowsOf(perSession[s]));
      }
    });
  });

  it('counts the queued items of each agent asked for, 0 for those with none', async () => {
    const sessionId = await givenAgents({ a: 'idle', b: 'idle', c: 'idle' });
    for (const agentId of ['a', 'a', 'a', 'c']) {
      await insert(newItem(sessionId, agentId));
    }
    await claim(sessionId, 'a');
    const counts = await db.read((tx) => sut.countQueuedEach(tx, sessionId, ['a', 'b', 'c']));
    expect(counts).toEqual(
      new Map([
        ['a', 2],
        ['b', 0],
        ['c', 1],
      ]),
    );
    await expect(db.read((tx) => sut.countQueuedEach(tx, sessionId, ['c']))).resolves.toEqual(
      new Map([['c', 1]]),
    );
  });

  it('queues one item for each agent in one statement, queued in the order of the agents', async () => {
    const sessionId = await givenAgents({ a: 'idle', b: 'idle', c: 'idle' });
    await insert(newItem(sessionId, 'b', { prompt: 'already there' }));
    const payload = { event: 'deploy', data: { v: 2 }, traceparent: '00-abc-def-01' };

    await db.transaction((tx) =>
      sut.insertForEach(tx, ['c', 'a', 'b'], {
        sessionId,
        kind: 'event',
        priority: 'normal',
        hops: 3,
        prompt: 'deploy',
        payload,
        createdAt: LATER,
      }),
    );

    // One after the other in the queue's order (seq), as the agents were given.
    const made: Array<{ taskId: string; agentId: string }> = await db.read((tx) =>
      sql(tx).query(
        `SELECT id AS "taskId", agent_id AS "agentId" FROM work_item
         WHERE session_id = $1 AND kind = 'event' ORDER BY seq`,
        [sessionId],
      ),
    );
    expect(made.map((m) => m.agentId)).toEqual(['c', 'a', 'b']);
    for (const { agentId, taskId } of made) {
      await expect(find(sessionId, taskId)).resolves.toEqual({
        taskId,
        sessionId,
        agentId,
        kind: 'event',
        priority: 'normal',
        isSwitch: false,
        hops: 3,
        state: 'queued',
        attempts: 0,
        idempotencyKey: null,
        prompt: 'deploy',
        payload,
        result: null,
        error: null,
        usage: null,
        createdAt: LATER,
        startedAt: null,
        finishedAt: null,
      });
    }
    // Behind what was queued before, like any new item.
    await expect(claim(sessionId, 'b')).resolves.toMatchObject({ prompt: 'already there' });
    await expect(claim(sessionId, 'b')).resolves.toMatchObject({ taskId: made[2].taskId });
    await expect(
      db.transaction((tx) => sut.insertForEach(tx, [], newItem(sessionId, 'a'))),
    ).resolves.toBeUndefined();
  });
});

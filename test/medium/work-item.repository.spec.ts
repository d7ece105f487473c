import { AgentRepository } from 'src/agents/agent.repository';
import { AgentState } from 'src/agents/agent.types';
import { Priority } from 'src/common/names';
import { DatabaseService, sql } from 'src/database/database.service';
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

    const made = await db.transaction((tx) =>
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
    // One after the other in the queue's order (seq), as the agents were given.
    const seqs = await db.read((tx) =>
      sql(tx).query(`SELECT agent_id FROM work_item WHERE id = ANY($1::uuid[]) ORDER BY seq`, [
        made.map((m) => m.taskId),
      ]),
    );
    expect(seqs.map((r: { agent_id: string }) => r.agent_id)).toEqual(['c', 'a', 'b']);
    await expect(db.transaction((tx) => sut.insertForEach(tx, [], newItem(sessionId, 'a')))).resolves.toEqual(
      [],
    );
  });
});

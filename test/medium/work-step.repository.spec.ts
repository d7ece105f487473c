import { AgentRepository } from 'src/agents/agent.repository';
import { Agent, AgentState } from 'src/agents/agent.types';
import { ConversationRepository } from 'src/agents/conversation.repository';
import { WorkStepRepository } from 'src/agents/runtime/work-step.repository';
import { Priority } from 'src/common/names';
import { DatabaseService, Tx } from 'src/database/database.service';
import { query } from 'src/database/sql';
import { ChatMessage } from 'src/llm/model-provider';
import { Usage, WorkItem } from 'src/mailbox/mailbox.types';
import { NewWorkItem, toItem, WorkItemRepository, WorkItemRow } from 'src/mailbox/work-item.repository';
import { SessionRepository } from 'src/sessions/session.repository';
import { newAgentRow } from '../factories/agent-rows';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';
const LATER = '2026-01-01T00:05:00.000Z';
const DONE_AT = '2026-01-01T00:06:00.000Z';

type ItemState = WorkItem['state'];
type Step = Parameters<WorkStepRepository['complete']>[1];

describe(WorkStepRepository.name, () => {
  const sut = new WorkStepRepository();
  const sessions = new SessionRepository();
  const agents = new AgentRepository();
  const items = new WorkItemRepository();
  const conversation = new ConversationRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** A session holding the given agents, in the given states. */
  async function givenAgents(
    states: Record<string, AgentState>,
    sessionId = newSessionId(),
  ): Promise<string> {
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

  const insert = async (item: NewWorkItem) => (await db.transaction((tx) => items.insert(tx, item))).item;

  /** An item of the agent in the given state (running ones claimed the old way, without touching the agent). */
  async function givenItem(
    sessionId: string,
    agentId: string,
    state: ItemState,
    patch: Partial<NewWorkItem> = {},
  ): Promise<WorkItem> {
    const item = await insert(newItem(sessionId, agentId, patch));
    await db.transaction(async (tx) => {
      if (state === 'running') {
        await query(
          tx,
          `UPDATE work_item SET state = 'running', started_at = $2::timestamptz, attempts = attempts + 1 WHERE id = $1`,
          [item.taskId, LATER],
        );
      } else if (state !== 'queued') {
        await items.finish(tx, item.taskId, {
          state,
          ...(state === 'done' ? { result: { final: 'earlier' } } : {}),
          ...(state !== 'done' ? { error: { code: state, message: 'before the step' } } : {}),
          at: LATER,
        });
      }
    });
    return (await find(sessionId, item.taskId))!;
  }

  const claim = (sessionId: string, agentId: string, at = LATER) =>
    db.transaction((tx) => sut.claim(tx, sessionId, agentId, at));
  const complete = (step: Step) => db.transaction((tx) => sut.complete(tx, step));
  const find = (sessionId: string, taskId: string) => db.read((tx) => items.find(tx, sessionId, taskId));
  const agent = (sessionId: string, agentId: string) => db.read((tx) => agents.find(tx, sessionId, agentId));
  const session = (sessionId: string) => db.read((tx) => sessions.find(tx, sessionId));
  const turns = (sessionId: string, agentId: string) =>
    db.read((tx) => conversation.window(tx, sessionId, agentId, 1000));
  const setState = (sessionId: string, agentId: string, state: AgentState) =>
    db.transaction((tx) => agents.update(tx, sessionId, agentId, { state }));
  /** The row version of the session (changes whenever the row is written, even to the same values). */
  const sessionVersion = async (sessionId: string) =>
    (
      await db.read((tx) =>
        query<{ version: string }>(tx, `SELECT xmin::text AS version FROM session WHERE id = $1`, [
          sessionId,
        ]),
      )
    )[0].version;

  const USAGE: Usage = { promptTokens: 30, completionTokens: 12 };
  const TURNS: ChatMessage[] = [
    { role: 'user', content: 'what is 2 + 2?' },
    { role: 'assistant', content: null, toolCalls: [{ id: 'c1', name: 'calc', arguments: '{"x":"2+2"}' }] },
    { role: 'tool', toolCallId: 'c1', name: 'calc', content: '4' },
    { role: 'assistant', content: 'It is 4.' },
  ];
  const stepFor = (item: WorkItem, patch: Partial<Step> = {}): Step => ({
    sessionId: item.sessionId,
    agentId: item.agentId,
    taskId: item.taskId,
    final: 'It is 4.',
    usage: USAGE,
    turns: TURNS,
    at: DONE_AT,
    ...patch,
  });

  describe('claim', () => {
    it('claims switch mail first, then by priority, then first in first out (by seq)', async () => {
      const sessionId = await givenAgents({ a: 'idle', other: 'idle' });
      const queued: Array<[string, Priority, boolean]> = [
        ['low', 'low', false],
        ['normal 1', 'normal', false],
        ['urgent', 'urgent', false],
        ['normal 2', 'normal', false],
        ['switch low', 'low', true],
        ['high', 'high', false],
        ['switch high', 'high', true],
        ['normal 3', 'normal', false],
      ];
      for (const [prompt, priority, isSwitch] of queued) {
        // One creation time for all: the order among equals is the queue's own (seq), not the clock's.
        await insert(newItem(sessionId, 'a', { prompt, priority, isSwitch }));
      }
      await insert(newItem(sessionId, 'other', { priority: 'urgent', isSwitch: true, prompt: 'not yours' }));

      const order: string[] = [];
      for (let claimed = await claim(sessionId, 'a'); claimed; claimed = await claim(sessionId, 'a')) {
        expect(claimed.item).toMatchObject({ agentId: 'a', state: 'running', attempts: 1, startedAt: LATER });
        order.push(claimed.item.prompt);
        await setState(sessionId, 'a', 'idle');
      }
      expect(order).toEqual([
        'switch high',
        'switch low',
        'urgent',
        'high',
        'normal 1',
        'normal 2',
        'normal 3',
        'low',
      ]);
      await expect(db.read((tx) => items.countQueued(tx, sessionId, 'other'))).resolves.toBe(1);
      await expect(agent(sessionId, 'other')).resolves.toMatchObject({ state: 'idle', lastActiveAt: null });
    });

    it('marks the item running (one more attempt, started now) and the agent active (active now)', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      const queued = await insert(newItem(sessionId, 'a', { prompt: 'first' }));

      const claimed = await claim(sessionId, 'a');
      expect(claimed).toBeDefined();
      expect(claimed!.item).toEqual({ ...queued, state: 'running', attempts: 1, startedAt: LATER });
      expect(claimed!.agent).toEqual({
        ...newAgentRow(sessionId, 'a', 'active', AT),
        lastActiveAt: LATER,
      });
      // What the claim returns is what it wrote.
      await expect(find(sessionId, queued.taskId)).resolves.toEqual(claimed!.item);
      await expect(agent(sessionId, 'a')).resolves.toEqual(claimed!.agent);

      // An item put back in the queue is claimed again with its attempts counted on.
      await db.transaction((tx) => items.requeue(tx, queued.taskId));
      await setState(sessionId, 'a', 'idle');
      const again = await claim(sessionId, 'a', DONE_AT);
      expect(again!.item).toMatchObject({ taskId: queued.taskId, attempts: 2, startedAt: DONE_AT });
      expect(again!.agent).toMatchObject({ state: 'active', lastActiveAt: DONE_AT });
    });

    it.each<AgentState>(['active', 'sleeping', 'stopped', 'waiting'])(
      'claims nothing while the agent is %s, and changes nothing',
      async (state) => {
        const sessionId = await givenAgents({ a: state });
        const queued = await insert(newItem(sessionId, 'a'));
        const before = await agent(sessionId, 'a');

        await expect(claim(sessionId, 'a')).resolves.toBeUndefined();
        await expect(find(sessionId, queued.taskId)).resolves.toEqual(queued);
        await expect(agent(sessionId, 'a')).resolves.toEqual(before);
        expect(before).toMatchObject({ state, lastActiveAt: null });
      },
    );

    it('claims nothing for an idle agent with nothing queued, and leaves it idle', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      await claim(sessionId, 'a'); // nothing at all
      const ended = await Promise.all(
        (['running', 'done', 'failed', 'cancelled'] as const).map((s) => givenItem(sessionId, 'a', s)),
      );
      await insert(newItem(sessionId, 'b', { prompt: 'b’s' }));

      await expect(claim(sessionId, 'a')).resolves.toBeUndefined();
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({ state: 'idle', lastActiveAt: null });
      for (const item of ended) {
        await expect(find(sessionId, item.taskId)).resolves.toEqual(item);
      }
      // An agent the session does not have claims nothing either.
      await expect(claim(sessionId, 'nobody')).resolves.toBeUndefined();
      await expect(claim(newSessionId(), 'a')).resolves.toBeUndefined();
    });

    it('leaves other agents, and the same agent id in another session, untouched', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      const elsewhere = await givenAgents({ a: 'idle' });
      const mine = await insert(newItem(sessionId, 'a'));
      const bs = await insert(newItem(sessionId, 'b', { priority: 'urgent', isSwitch: true }));
      const theirs = await insert(newItem(elsewhere, 'a', { priority: 'urgent', isSwitch: true }));

      await expect(claim(sessionId, 'a')).resolves.toMatchObject({ item: { taskId: mine.taskId } });
      await expect(find(sessionId, bs.taskId)).resolves.toEqual(bs);
      await expect(find(elsewhere, theirs.taskId)).resolves.toEqual(theirs);
      await expect(agent(sessionId, 'b')).resolves.toMatchObject({ state: 'idle', lastActiveAt: null });
      await expect(agent(elsewhere, 'a')).resolves.toMatchObject({ state: 'idle', lastActiveAt: null });
    });

    // A race between concurrent transactions: PGlite runs them one after the other, so this test
    // cannot fail there. Claims rely on the session row being locked first, as HistoryService does:
    // the statement reads the agent's state without locking it.
    if (process.env.TEST_DATABASE_URL) {
      it('hands an agent one item at a time to claimers that lock the session first (a race: Postgres server only)', async () => {
        const sessionId = await givenAgents({ a: 'idle' });
        for (let i = 0; i < 3; i++) {
          await insert(newItem(sessionId, 'a', { prompt: `item ${i}` }));
        }
        const claimed = await Promise.all(
          Array.from({ length: 6 }, () =>
            db.transaction(async (tx) => {
              await sessions.lock(tx, sessionId);
              return sut.claim(tx, sessionId, 'a', LATER);
            }),
          ),
        );
        expect(claimed.filter((c) => c !== undefined).map((c) => c.item.prompt)).toEqual(['item 0']);
        await expect(db.read((tx) => items.listRunning(tx, [sessionId]))).resolves.toHaveLength(1);
      });
    }

    it('claims one item per claim: the agent is active after the first', async () => {
      const sessionId = await givenAgents({ a: 'idle' });
      const first = await insert(newItem(sessionId, 'a', { prompt: 'first' }));
      const second = await insert(newItem(sessionId, 'a', { prompt: 'second' }));
      const [one, two] = await db.transaction(async (tx) => [
        await sut.claim(tx, sessionId, 'a', LATER),
        await sut.claim(tx, sessionId, 'a', LATER),
      ]);
      expect(one?.item.taskId).toBe(first.taskId);
      expect(two).toBeUndefined();
      await expect(find(sessionId, second.taskId)).resolves.toEqual(second);
    });
  });

  describe('complete', () => {
    it('marks a running item done with its result, usage and finish time', async () => {
      const sessionId = await givenAgents({ a: 'active' });
      const running = await givenItem(sessionId, 'a', 'running');

      const step = await complete(stepFor(running));
      expect(step).toEqual({ done: true, previous: 'active', state: 'idle', moreQueued: false });
      await expect(find(sessionId, running.taskId)).resolves.toEqual({
        ...running,
        state: 'done',
        result: { final: 'It is 4.' },
        usage: USAGE,
        error: null,
        finishedAt: DONE_AT,
      });
    });

    it('appends the turns to the agent’s conversation, in order, after what it held', async () => {
      const sessionId = await givenAgents({ a: 'active', b: 'active' });
      const earlier: ChatMessage[] = [
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: 'hi' },
      ];
      await db.transaction((tx) => conversation.append(tx, sessionId, 'a', earlier, AT));
      const running = await givenItem(sessionId, 'a', 'running');

      await complete(stepFor(running));
      await expect(turns(sessionId, 'a')).resolves.toEqual([...earlier, ...TURNS]);
      await expect(turns(sessionId, 'b')).resolves.toEqual([]);
      const stored = await db.read((tx) =>
        query<{ created_at: Date | string }>(
          tx,
          `SELECT created_at FROM conversation_turn WHERE session_id = $1 AND agent_id = 'a' ORDER BY id`,
          [sessionId],
        ),
      );
      expect(stored.map((r) => new Date(r.created_at).toISOString())).toEqual([
        AT,
        AT,
        DONE_AT,
        DONE_AT,
        DONE_AT,
        DONE_AT,
      ]);

      // No turns: nothing appended, the item still done.
      await setState(sessionId, 'a', 'active');
      const quiet = await givenItem(sessionId, 'a', 'running');
      await expect(complete(stepFor(quiet, { turns: [] }))).resolves.toMatchObject({ done: true });
      await expect(turns(sessionId, 'a')).resolves.toEqual([...earlier, ...TURNS]);
    });

    it('adds the tokens to the agent’s and the session’s totals', async () => {
      const sessionId = await givenAgents({ a: 'active', b: 'active' });
      const first = await givenItem(sessionId, 'a', 'running');
      await complete(stepFor(first));
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({ tokensUsed: 42 });
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 42 });

      const fromB = await givenItem(sessionId, 'b', 'running');
      await complete(stepFor(fromB, { usage: { promptTokens: 100, completionTokens: 8 } }));
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({ tokensUsed: 42 });
      await expect(agent(sessionId, 'b')).resolves.toMatchObject({ tokensUsed: 108 });
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 150 });
    });

    it('adds nothing to the session (does not even write it) when the step spent no tokens', async () => {
      const sessionId = await givenAgents({ a: 'active' });
      const first = await givenItem(sessionId, 'a', 'running');
      await complete(stepFor(first));
      await setState(sessionId, 'a', 'active');
      const free = await givenItem(sessionId, 'a', 'running');
      const version = await sessionVersion(sessionId);

      const step = await complete(stepFor(free, { usage: { promptTokens: 0, completionTokens: 0 } }));
      expect(step).toMatchObject({ done: true, previous: 'active', state: 'idle' });
      await expect(find(sessionId, free.taskId)).resolves.toMatchObject({
        state: 'done',
        usage: { promptTokens: 0, completionTokens: 0 },
      });
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 42 });
      await expect(sessionVersion(sessionId)).resolves.toBe(version);
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({ tokensUsed: 42 });
    });

    it('makes an active agent idle and leaves an agent in any other state as it is', async () => {
      const cases: Array<[AgentState, AgentState]> = [
        ['active', 'idle'],
        ['idle', 'idle'],
        ['stopped', 'stopped'],
        ['sleeping', 'sleeping'],
        ['waiting', 'waiting'],
      ];
      for (const [from, to] of cases) {
        const sessionId = await givenAgents({ a: from });
        const running = await givenItem(sessionId, 'a', 'running');
        const step = await complete(stepFor(running));
        expect({ from, step }).toEqual({
          from,
          step: { done: true, previous: from, state: to, moreQueued: false },
        });
        await expect(agent(sessionId, 'a')).resolves.toMatchObject({ state: to, tokensUsed: 42 });
      }
    });

    it('keeps a stopped agent stopped, with its stop reason, while the item is done and charged', async () => {
      const sessionId = await givenAgents({ a: 'active' });
      const running = await givenItem(sessionId, 'a', 'running');
      await db.transaction((tx) =>
        agents.update(tx, sessionId, 'a', { state: 'stopped', stopReason: 'stopped by the client' }),
      );

      await expect(complete(stepFor(running))).resolves.toEqual({
        done: true,
        previous: 'stopped',
        state: 'stopped',
        moreQueued: false,
      });
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({
        state: 'stopped',
        stopReason: 'stopped by the client',
        tokensUsed: 42,
      });
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 42 });
      await expect(find(sessionId, running.taskId)).resolves.toMatchObject({ state: 'done' });
    });

    it.each<ItemState>(['cancelled', 'failed', 'done'])(
      'leaves an item already %s as it was: no turns, no tokens, done false, the agent still made idle',
      async (state) => {
        const sessionId = await givenAgents({ a: 'active' });
        const ended = await givenItem(sessionId, 'a', state);
        const version = await sessionVersion(sessionId);

        await expect(complete(stepFor(ended))).resolves.toEqual({
          done: false,
          previous: 'active',
          state: 'idle',
          moreQueued: false,
        });
        await expect(find(sessionId, ended.taskId)).resolves.toEqual(ended);
        await expect(turns(sessionId, 'a')).resolves.toEqual([]);
        await expect(agent(sessionId, 'a')).resolves.toMatchObject({ state: 'idle', tokensUsed: 0 });
        await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 0 });
        await expect(sessionVersion(sessionId)).resolves.toBe(version);
      },
    );

    it('charges a completed item once: completing it again changes nothing', async () => {
      const sessionId = await givenAgents({ a: 'active' });
      const running = await givenItem(sessionId, 'a', 'running');
      await complete(stepFor(running));
      const done = await find(sessionId, running.taskId);

      await setState(sessionId, 'a', 'active');
      await expect(complete(stepFor(running, { final: 'again', at: AT }))).resolves.toMatchObject({
        done: false,
      });
      await expect(find(sessionId, running.taskId)).resolves.toEqual(done);
      await expect(turns(sessionId, 'a')).resolves.toEqual(TURNS);
      await expect(agent(sessionId, 'a')).resolves.toMatchObject({ tokensUsed: 42 });
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 42 });
    });

    it('says more is queued only when the agent has another queued item', async () => {
      const sessionId = await givenAgents({ a: 'active', b: 'idle' });
      // Others' queued items, and the agent's items that are not queued, do not count.
      await insert(newItem(sessionId, 'b'));
      const elsewhere = await givenAgents({ a: 'idle' });
      await insert(newItem(elsewhere, 'a'));
      for (const state of ['done', 'failed', 'cancelled'] as const) {
        await givenItem(sessionId, 'a', state);
      }
      const first = await givenItem(sessionId, 'a', 'running');
      await expect(complete(stepFor(first))).resolves.toMatchObject({ done: true, moreQueued: false });

      await setState(sessionId, 'a', 'active');
      const second = await givenItem(sessionId, 'a', 'running');
      await insert(newItem(sessionId, 'a', { prompt: 'next' }));
      await expect(complete(stepFor(second))).resolves.toMatchObject({ done: true, moreQueued: true });

      // Also when the completed item had been cancelled meanwhile.
      const cancelled = await givenItem(sessionId, 'a', 'cancelled');
      await expect(complete(stepFor(cancelled))).resolves.toMatchObject({ done: false, moreQueued: true });
    });

    it('completes a still-queued item, which is then not counted as more queued', async () => {
      const sessionId = await givenAgents({ a: 'active' });
      const queued = await givenItem(sessionId, 'a', 'queued');

      const step = await complete(stepFor(queued));
      expect(step).toMatchObject({ done: true, previous: 'active', state: 'idle' });
      await expect(find(sessionId, queued.taskId)).resolves.toMatchObject({
        state: 'done',
        finishedAt: DONE_AT,
      });
      await expect(db.read((tx) => items.countQueued(tx, sessionId, 'a'))).resolves.toBe(0);
      expect(step.moreQueued).toBe(false);
    });
  });

  /**
   * The statements each one-statement step replaced, as ClaimWork and CompleteWork (its slow path)
   * ran them before: the same repository calls, without the history records.
   */
  const before = {
    async claim(tx: Tx, sessionId: string, agentId: string, at: string) {
      const me = await agents.find(tx, sessionId, agentId);
      if (me?.state !== 'idle') {
        return undefined;
      }
      const item = await items.claimNext(tx, sessionId, agentId, at);
      if (!item) {
        return undefined;
      }
      return {
        item,
        agent: await agents.update(tx, sessionId, agentId, { state: 'active', lastActiveAt: at }),
      };
    },
    async complete(tx: Tx, step: Step) {
      const done = await items.finish(tx, step.taskId, {
        state: 'done',
        result: { final: step.final },
        usage: step.usage,
        at: step.at,
      });
      const me = (await agents.find(tx, step.sessionId, step.agentId))!;
      if (done) {
        await conversation.append(tx, step.sessionId, step.agentId, step.turns, step.at);
        const tokens = step.usage.promptTokens + step.usage.completionTokens;
        await agents.addTokens(tx, step.sessionId, step.agentId, tokens);
        await sessions.addTokens(tx, step.sessionId, tokens);
      }
      const state = me.state === 'active' ? 'idle' : me.state;
      if (state !== me.state) {
        await agents.update(tx, step.sessionId, step.agentId, { state });
      }
      return { done: Boolean(done), previous: me.state, state };
    },
  };

  /** Everything a step may change in a session, without the ids that differ between twins. */
  async function snapshot(sessionId: string) {
    return db.read(async (tx) => {
      const rows = await query<WorkItemRow>(
        tx,
        `SELECT * FROM work_item WHERE session_id = $1 ORDER BY seq`,
        [sessionId],
      );
      const strip = ({ sessionId: _s, ...rest }: Agent) => rest;
      return {
        tokensUsed: (await sessions.find(tx, sessionId))!.tokensUsed,
        agents: (await agents.listBySession(tx, sessionId)).map(strip),
        items: rows.map(toItem).map(({ taskId: _t, sessionId: _s, ...rest }) => rest),
        turns: {
          a: await conversation.window(tx, sessionId, 'a', 1000),
          b: await conversation.window(tx, sessionId, 'b', 1000),
        },
      };
    });
  }

  /** Two sessions built alike (same agent ids, states, items in the same order). */
  async function givenTwins(
    agentState: AgentState,
    build: (sessionId: string) => Promise<WorkItem | undefined>,
  ): Promise<[{ sessionId: string; item?: WorkItem }, { sessionId: string; item?: WorkItem }]> {
    const twins = [];
    for (let i = 0; i < 2; i++) {
      const sessionId = await givenAgents({ a: agentState, b: 'idle' });
      twins.push({ sessionId, item: await build(sessionId) });
    }
    return twins as [{ sessionId: string; item?: WorkItem }, { sessionId: string; item?: WorkItem }];
  }

  const AGENT_STATES: AgentState[] = ['idle', 'active', 'sleeping', 'stopped', 'waiting'];

  describe('does what the statements it replaced did', () => {
    it.each(AGENT_STATES)('claim, with the agent %s', async (state) => {
      const [old, now] = await givenTwins(state, async (sessionId) => {
        await givenItem(sessionId, 'a', 'done', { priority: 'urgent' });
        await insert(newItem(sessionId, 'a', { prompt: 'low', priority: 'low' }));
        await insert(newItem(sessionId, 'a', { prompt: 'high', priority: 'high' }));
        await insert(newItem(sessionId, 'b', { prompt: 'b', priority: 'urgent', isSwitch: true }));
        return undefined;
      });
      const was = await db.transaction((tx) => before.claim(tx, old.sessionId, 'a', LATER));
      const is = await claim(now.sessionId, 'a');
      const strip = (c: typeof is) =>
        c && {
          item: { ...c.item, taskId: undefined, sessionId: undefined },
          agent: { ...c.agent, sessionId: undefined },
        };
      expect(strip(is)).toEqual(strip(was));
      expect(Boolean(is)).toBe(state === 'idle');
      await expect(snapshot(now.sessionId)).resolves.toEqual(await snapshot(old.sessionId));
    });

    const ITEM_STATES: ItemState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];
    const cases = AGENT_STATES.flatMap((a) => ITEM_STATES.map((i) => [a, i] as [AgentState, ItemState]));

    it.each(cases)('complete, with the agent %s and the item %s', async (agentState, itemState) => {
      const [old, now] = await givenTwins(agentState, async (sessionId) => {
        await db.transaction((tx) =>
          conversation.append(tx, sessionId, 'a', [{ role: 'user', content: 'earlier' }], AT),
        );
        return givenItem(sessionId, 'a', itemState);
      });
      const was = await db.transaction((tx) => before.complete(tx, stepFor(old.item!)));
      const is = await complete(stepFor(now.item!));
      expect({ done: is.done, previous: is.previous, state: is.state }).toEqual(was);
      await expect(snapshot(now.sessionId)).resolves.toEqual(await snapshot(old.sessionId));
    });
  });
});

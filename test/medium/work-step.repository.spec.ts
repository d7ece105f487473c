import { AgentRepository } from 'src/agents/agent.repository';
import { Agent, AgentState } from 'src/agents/agent.types';
import { ConversationRepository } from 'src/agents/conversation.repository';
import { CompletedStep, WorkStepRepository } from 'src/agents/runtime/work-step.repository';
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

  /** The multi-row statements for agents of one session. */
  const claimManyIn = (tx: Tx, sessionId: string, agentIds: string[], at: string) =>
    sut.claimMany(
      tx,
      agentIds.map((agentId) => ({ sessionId, agentId })),
      at,
    );
  const completeManyIn = (
    tx: Tx,
    sessionId: string,
    steps: Array<Omit<CompletedStep, 'sessionId'>>,
    at: string,
  ) =>
    sut.completeMany(
      tx,
      steps.map((step) => ({ ...step, sessionId })),
      at,
    );
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
              await sessions.lockAll(tx, [sessionId]);
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

  /**
   * Every row a step may write in a session, as stored (all columns), without what differs between
   * twins: the session's id and the items' and turns' ids and sequence numbers.
   */
  async function rowsOf(sessionId: string) {
    return db.read(async (tx) => {
      const rows = async (text: string) =>
        (await query<{ r: Record<string, unknown> }>(tx, text, [sessionId])).map((x) => x.r);
      return {
        session: await rows(`SELECT to_jsonb(s) - 'id' AS r FROM session s WHERE id = $1`),
        agents: await rows(
          `SELECT to_jsonb(a) - 'session_id' AS r FROM agent a WHERE session_id = $1 ORDER BY id`,
        ),
        items: await rows(
          `SELECT to_jsonb(w) - 'id' - 'session_id' - 'seq' AS r FROM work_item w WHERE session_id = $1 ORDER BY seq`,
        ),
        turns: await rows(
          `SELECT to_jsonb(t) - 'id' - 'session_id' AS r FROM conversation_turn t WHERE session_id = $1 ORDER BY id`,
        ),
      };
    });
  }

  /** A session's agents (in these states, each with one earlier turn) and items (in this order, each named by its prompt). */
  interface World {
    agents: Record<string, AgentState>;
    items: Array<[name: string, agentId: string, state: ItemState, patch?: Partial<NewWorkItem>]>;
  }

  async function givenWorld(world: World): Promise<{ sessionId: string; items: Record<string, WorkItem> }> {
    const sessionId = await givenAgents(world.agents);
    await db.transaction(async (tx) => {
      for (const agentId of Object.keys(world.agents)) {
        await conversation.append(
          tx,
          sessionId,
          agentId,
          [{ role: 'user', content: `earlier, ${agentId}` }],
          AT,
        );
      }
    });
    const named: Record<string, WorkItem> = {};
    for (const [name, agentId, state, patch] of world.items) {
      named[name] = await givenItem(sessionId, agentId, state, { ...patch, prompt: name });
    }
    return { sessionId, items: named };
  }

  /** A task id no item has. */
  const UNKNOWN_TASK = '00000000-0000-4000-8000-000000000000';

  describe('claimMany: for each agent, what claim does for it alone', () => {
    type Claimed = Awaited<ReturnType<WorkStepRepository['claim']>>;
    const strip = (c: Claimed) =>
      c && {
        item: { ...c.item, taskId: undefined, sessionId: undefined },
        agent: { ...c.agent, sessionId: undefined },
      };

    /**
     * Builds the world twice; claims for the agents one by one with claim in one session and with
     * one claimMany in the other; expects the same results (in input order) and the same rows, and
     * the first session untouched by the second's statement. Returns claimMany's results.
     */
    async function claimManyAsClaim(world: World, agentIds: string[]): Promise<Claimed[]> {
      const old = await givenWorld(world);
      const now = await givenWorld(world);
      const alone = await db.transaction(async (tx) => {
        const out: Claimed[] = [];
        for (const agentId of agentIds) {
          out.push(await sut.claim(tx, old.sessionId, agentId, LATER));
        }
        return out;
      });
      const oldRows = await rowsOf(old.sessionId);
      const many = await db.transaction((tx) => claimManyIn(tx, now.sessionId, agentIds, LATER));
      expect(many).toHaveLength(agentIds.length);
      expect(many.map(strip)).toEqual(alone.map(strip));
      await expect(rowsOf(now.sessionId)).resolves.toEqual(oldRows);
      await expect(rowsOf(old.sessionId)).resolves.toEqual(oldRows);
      // What it returns is what it wrote.
      for (const c of many.filter((x) => x !== undefined)) {
        await expect(find(now.sessionId, c.item.taskId)).resolves.toEqual(c.item);
        await expect(agent(now.sessionId, c.agent.agentId)).resolves.toEqual(c.agent);
      }
      return many;
    }

    /** A queue in claim order: switch high, switch low, urgent, high, normal 1, normal 2, low (inserted shuffled). */
    const busyQueue = (agentId: string): World['items'] => [
      [`${agentId}: low`, agentId, 'queued', { priority: 'low' }],
      [`${agentId}: normal 1`, agentId, 'queued'],
      [`${agentId}: urgent`, agentId, 'queued', { priority: 'urgent' }],
      [`${agentId}: switch low`, agentId, 'queued', { priority: 'low', isSwitch: true }],
      [`${agentId}: normal 2`, agentId, 'queued'],
      [`${agentId}: high`, agentId, 'queued', { priority: 'high' }],
      [`${agentId}: switch high`, agentId, 'queued', { priority: 'high', isSwitch: true }],
    ];
    const endedOnly = (agentId: string): World['items'] =>
      (['running', 'done', 'failed', 'cancelled'] as const).map((s) => [
        `${agentId}: ${s}`,
        agentId,
        s,
        { priority: 'urgent', isSwitch: true },
      ]);
    const QUEUES: Record<string, (agentId: string) => World['items']> = {
      'nothing at all': () => [],
      'only items not queued': endedOnly,
      'items of every priority, switch mail among them': (a) => [...endedOnly(a), ...busyQueue(a)],
    };
    const cases = AGENT_STATES.flatMap((s) => Object.keys(QUEUES).map((q) => [s, q] as [AgentState, string]));

    it.each(cases)('one agent %s with %s', async (state, queue) => {
      const many = await claimManyAsClaim(
        { agents: { a: state, b: 'idle' }, items: [...QUEUES[queue]('a'), ...busyQueue('b')] },
        ['a'],
      );
      const claims = state === 'idle' && queue.startsWith('items');
      expect(many.map((c) => c?.item.prompt)).toEqual([claims ? 'a: switch high' : undefined]);
    });

    it('a mix in one call: idle with work, busy, asleep, stopped, waiting, idle with nothing queued, missing', async () => {
      const agents: Record<string, AgentState> = {
        worker: 'idle',
        fifo: 'idle',
        busy: 'active',
        asleep: 'sleeping',
        off: 'stopped',
        waiter: 'waiting',
        empty: 'idle',
        finished: 'idle',
      };
      const items: World['items'] = [
        ...busyQueue('busy'),
        ['fifo: first', 'fifo', 'queued'],
        ...busyQueue('worker'),
        ['fifo: second', 'fifo', 'queued'],
        ...busyQueue('asleep'),
        ...busyQueue('off'),
        ...busyQueue('waiter'),
        ...endedOnly('finished'),
        ['fifo: third', 'fifo', 'queued'],
      ];
      const ids = ['asleep', 'nobody', 'worker', 'empty', 'busy', 'fifo', 'off', 'finished', 'waiter'];
      const many = await claimManyAsClaim({ agents, items }, ids);
      expect(many.map((c) => c?.item.prompt)).toEqual([
        undefined,
        undefined,
        'worker: switch high',
        undefined,
        undefined,
        'fifo: first',
        undefined,
        undefined,
        undefined,
      ]);
      expect(many[2]!.agent).toMatchObject({ agentId: 'worker', state: 'active', lastActiveAt: LATER });
      expect(many[5]!.agent).toMatchObject({ agentId: 'fifo', state: 'active', lastActiveAt: LATER });
    });

    it('answers in input order, whatever the order', async () => {
      const world: World = {
        agents: { a: 'idle', b: 'idle', c: 'idle' },
        items: [
          ['c: 1', 'c', 'queued'],
          ['a: 1', 'a', 'queued'],
          ['b: 1', 'b', 'queued', { isSwitch: true }],
        ],
      };
      for (const ids of [
        ['a', 'b', 'c'],
        ['c', 'a', 'b'],
        ['b', 'c', 'a'],
      ]) {
        const many = await claimManyAsClaim(world, ids);
        expect(many.map((c) => c?.item.prompt)).toEqual(ids.map((id) => `${id}: 1`));
        expect(many.map((c) => c?.agent.agentId)).toEqual(ids);
      }
    });

    it('counts the attempts on an item put back in the queue, as claim does', async () => {
      const world: World = { agents: { a: 'idle', b: 'idle' }, items: [['b: 1', 'b', 'queued']] };
      const old = await givenWorld(world);
      const now = await givenWorld(world);
      for (const { sessionId } of [old, now]) {
        const first = await claim(sessionId, 'b');
        await db.transaction((tx) => items.requeue(tx, first!.item.taskId));
        await setState(sessionId, 'b', 'idle');
      }
      const alone = await claim(old.sessionId, 'b', DONE_AT);
      const [many] = await db.transaction((tx) => claimManyIn(tx, now.sessionId, ['b'], DONE_AT));
      expect(many!.item).toMatchObject({ attempts: 2, startedAt: DONE_AT });
      expect(strip(many)).toEqual(strip(alone));
      await expect(rowsOf(now.sessionId)).resolves.toEqual(await rowsOf(old.sessionId));
    });

    it('claims one item per agent: a second claimMany in the same transaction claims nothing', async () => {
      const sessionId = await givenAgents({ a: 'idle', b: 'idle' });
      await insert(newItem(sessionId, 'a', { prompt: 'a: first' }));
      const second = await insert(newItem(sessionId, 'a', { prompt: 'a: second' }));
      await insert(newItem(sessionId, 'b', { prompt: 'b: first' }));
      const [one, two] = await db.transaction(async (tx) => [
        await claimManyIn(tx, sessionId, ['a', 'b'], LATER),
        await claimManyIn(tx, sessionId, ['a', 'b'], LATER),
      ]);
      expect(one.map((c) => c?.item.prompt)).toEqual(['a: first', 'b: first']);
      expect(two).toEqual([undefined, undefined]);
      await expect(find(sessionId, second.taskId)).resolves.toEqual(second);
    });

    it('does nothing for an empty list, or for agents of another session', async () => {
      const world: World = { agents: { a: 'idle' }, items: [['a: 1', 'a', 'queued']] };
      const { sessionId } = await givenWorld(world);
      const rows = await rowsOf(sessionId);
      await expect(db.transaction((tx) => claimManyIn(tx, sessionId, [], LATER))).resolves.toEqual([]);
      await expect(db.transaction((tx) => claimManyIn(tx, newSessionId(), ['a'], LATER))).resolves.toEqual([
        undefined,
      ]);
      await expect(rowsOf(sessionId)).resolves.toEqual(rows);
    });
  });

  describe('completeMany: for each agent, what complete does for it alone', () => {
    interface StepSpec {
      agentId: string;
      /** The item's name in the world; none: a task id no item has. */
      item?: string;
      usage?: Usage;
      turns?: ChatMessage[];
    }
    type Ended = Awaited<ReturnType<WorkStepRepository['complete']>>;

    const stepsIn = (world: { items: Record<string, WorkItem> }, specs: StepSpec[]) =>
      specs.map((s) => ({
        agentId: s.agentId,
        taskId: s.item ? world.items[s.item].taskId : UNKNOWN_TASK,
        final: `the end of ${s.item ?? 'nothing'}`,
        usage: s.usage ?? USAGE,
        turns: s.turns ?? TURNS,
      }));

    /**
     * Builds the world twice; completes the steps one by one with complete in one session and with
     * one completeMany in the other; expects the same results (in input order) and the same rows, and
     * the first session untouched by the second's statement. Returns completeMany's results.
     */
    async function completeManyAsComplete(world: World, specs: StepSpec[]): Promise<Ended[]> {
      const old = await givenWorld(world);
      const now = await givenWorld(world);
      const alone = await db.transaction(async (tx) => {
        const out: Ended[] = [];
        for (const step of stepsIn(old, specs)) {
          out.push(await sut.complete(tx, { ...step, sessionId: old.sessionId, at: DONE_AT }));
        }
        return out;
      });
      const oldRows = await rowsOf(old.sessionId);
      const many = await db.transaction((tx) =>
        completeManyIn(tx, now.sessionId, stepsIn(now, specs), DONE_AT),
      );
      expect(many).toEqual(alone);
      await expect(rowsOf(now.sessionId)).resolves.toEqual(oldRows);
      await expect(rowsOf(old.sessionId)).resolves.toEqual(oldRows);
      return many;
    }

    const ITEM_STATES: ItemState[] = ['queued', 'running', 'done', 'failed', 'cancelled'];
    const cases = AGENT_STATES.flatMap((a) => ITEM_STATES.map((i) => [a, i] as [AgentState, ItemState]));

    it.each(cases)('one agent %s, its item %s', async (agentState, itemState) => {
      const many = await completeManyAsComplete(
        {
          agents: { a: agentState, b: 'active' },
          items: [
            ['a: it', 'a', itemState],
            ['b: it', 'b', 'running'],
          ],
        },
        [{ agentId: 'a', item: 'a: it' }],
      );
      expect(many).toEqual([
        {
          done: itemState === 'queued' || itemState === 'running',
          previous: agentState,
          state: agentState === 'active' ? 'idle' : agentState,
          moreQueued: false,
        },
      ]);
    });

    it('every agent state with every item state in one call, more queued for some, tokens and turns or none', async () => {
      const agents: Record<string, AgentState> = {};
      const items: World['items'] = [];
      const specs: StepSpec[] = [];
      for (const [n, [agentState, itemState]] of cases.entries()) {
        const agentId = `${agentState}-${itemState}`;
        agents[agentId] = agentState;
        items.push([`${agentId}: it`, agentId, itemState]);
        if (n % 2 === 0) {
          items.push([`${agentId}: next`, agentId, 'queued']);
        }
        specs.push({
          agentId,
          item: `${agentId}: it`,
          usage:
            n % 3 === 0 ? { promptTokens: 0, completionTokens: 0 } : { promptTokens: n, completionTokens: 1 },
          turns: n % 4 === 0 ? [] : TURNS.slice(0, 1 + (n % 4)),
        });
      }
      // Reversed: the results follow the input, not the agents' order.
      specs.reverse();
      const many = await completeManyAsComplete({ agents, items }, specs);
      expect(many.map((e) => e.moreQueued)).toEqual(
        specs.map((s) => cases.findIndex(([a, i]) => `${a}-${i}` === s.agentId) % 2 === 0),
      );
      expect(many.filter((e) => e.done)).toHaveLength(2 * AGENT_STATES.length);
    });

    it('a mix in one call: active, sleeping, stopped, already cancelled, still queued, with or without more queued', async () => {
      const many = await completeManyAsComplete(
        {
          agents: { a: 'active', b: 'sleeping', c: 'active', d: 'active', e: 'stopped', f: 'active' },
          items: [
            ['a: it', 'a', 'running'],
            ['d: it', 'd', 'queued'],
            ['b: it', 'b', 'running'],
            ['a: next', 'a', 'queued'],
            ['c: it', 'c', 'cancelled'],
            ['c: next', 'c', 'queued'],
            ['e: it', 'e', 'running'],
            ['f: it', 'f', 'running'],
            ['f: elsewhere', 'a', 'queued'],
          ],
        },
        [
          { agentId: 'c', item: 'c: it' },
          { agentId: 'a', item: 'a: it', turns: [] },
          { agentId: 'e', item: 'e: it', usage: { promptTokens: 0, completionTokens: 0 } },
          { agentId: 'd', item: 'd: it' },
          { agentId: 'b', item: 'b: it', usage: { promptTokens: 100, completionTokens: 8 } },
          { agentId: 'f', item: 'f: it' },
        ],
      );
      expect(many).toEqual([
        { done: false, previous: 'active', state: 'idle', moreQueued: true },
        { done: true, previous: 'active', state: 'idle', moreQueued: true },
        { done: true, previous: 'stopped', state: 'stopped', moreQueued: false },
        { done: true, previous: 'active', state: 'idle', moreQueued: false },
        { done: true, previous: 'sleeping', state: 'sleeping', moreQueued: false },
        { done: true, previous: 'active', state: 'idle', moreQueued: false },
      ]);
    });

    it('charges the session the sum of the done items’ tokens, and per agent its own', async () => {
      const world: World = {
        agents: { a: 'active', b: 'active', c: 'active', d: 'active' },
        items: [
          ['a: it', 'a', 'running'],
          ['b: it', 'b', 'running'],
          ['c: it', 'c', 'cancelled'],
          ['d: it', 'd', 'running'],
        ],
      };
      const specs: StepSpec[] = [
        { agentId: 'a', item: 'a: it' }, // 42
        { agentId: 'b', item: 'b: it', usage: { promptTokens: 100, completionTokens: 8 } },
        { agentId: 'c', item: 'c: it', usage: { promptTokens: 500, completionTokens: 500 } }, // ended: not charged
        { agentId: 'd', item: 'd: it', usage: { promptTokens: 0, completionTokens: 0 } },
      ];
      await completeManyAsComplete(world, specs);
      const now = await givenWorld(world);
      await db.transaction((tx) => completeManyIn(tx, now.sessionId, stepsIn(now, specs), DONE_AT));
      await expect(session(now.sessionId)).resolves.toMatchObject({ tokensUsed: 150 });
      const tokens = await db.read((tx) => agents.listBySession(tx, now.sessionId));
      expect(tokens.map((a) => [a.agentId, a.tokensUsed])).toEqual([
        ['a', 42],
        ['b', 108],
        ['c', 0],
        ['d', 0],
      ]);
    });

    it.each<[string, ItemState, Usage]>([
      ['the done items spent no tokens', 'running', { promptTokens: 0, completionTokens: 0 }],
      ['no item was still open', 'cancelled', USAGE],
    ])('adds nothing to the session (does not even write it) when %s', async (_case, itemState, usage) => {
      const world: World = {
        agents: { a: 'active', b: 'active' },
        items: [
          ['a: it', 'a', itemState],
          ['b: it', 'b', itemState === 'running' ? 'queued' : 'done'],
        ],
      };
      const specs: StepSpec[] = [
        { agentId: 'a', item: 'a: it', usage },
        { agentId: 'b', item: 'b: it', usage },
      ];
      await completeManyAsComplete(world, specs);
      const now = await givenWorld(world);
      const version = await sessionVersion(now.sessionId);
      const many = await db.transaction((tx) =>
        completeManyIn(tx, now.sessionId, stepsIn(now, specs), DONE_AT),
      );
      expect(many.map((e) => e.done)).toEqual(itemState === 'running' ? [true, true] : [false, false]);
      await expect(session(now.sessionId)).resolves.toMatchObject({ tokensUsed: 0 });
      await expect(sessionVersion(now.sessionId)).resolves.toBe(version);
    });

    it('charges a completed item once: completing it again changes nothing but the agent’s state', async () => {
      const { sessionId, items: named } = await givenWorld({
        agents: { a: 'active', b: 'active' },
        items: [
          ['a: it', 'a', 'running'],
          ['b: it', 'b', 'running'],
        ],
      });
      const specs = stepsIn({ items: named }, [
        { agentId: 'a', item: 'a: it' },
        { agentId: 'b', item: 'b: it' },
      ]);
      await db.transaction((tx) => completeManyIn(tx, sessionId, specs, DONE_AT));
      const rows = await rowsOf(sessionId);
      await expect(db.transaction((tx) => completeManyIn(tx, sessionId, specs, LATER))).resolves.toEqual([
        { done: false, previous: 'idle', state: 'idle', moreQueued: false },
        { done: false, previous: 'idle', state: 'idle', moreQueued: false },
      ]);
      await expect(rowsOf(sessionId)).resolves.toEqual(rows);
      await expect(session(sessionId)).resolves.toMatchObject({ tokensUsed: 84 });
    });

    it('does nothing for an empty list', async () => {
      const { sessionId } = await givenWorld({ agents: { a: 'active' }, items: [['a: it', 'a', 'running']] });
      const rows = await rowsOf(sessionId);
      const version = await sessionVersion(sessionId);
      await expect(db.transaction((tx) => completeManyIn(tx, sessionId, [], DONE_AT))).resolves.toEqual([]);
      await expect(rowsOf(sessionId)).resolves.toEqual(rows);
      await expect(sessionVersion(sessionId)).resolves.toBe(version);
    });

    // A difference from complete (not reachable today: agents are never deleted, and an item's agent
    // exists by its foreign key). complete answers for an agent the session does not have; completeMany
    // leaves that step out, so the results after it no longer stand at their step's index.
    it('answers like complete for an agent the session does not have, keeping every result in its place', async () => {
      const world: World = {
        agents: { a: 'active', b: 'active' },
        items: [
          ['a: it', 'a', 'running'],
          ['b: it', 'b', 'running'],
        ],
      };
      const specs: StepSpec[] = [
        { agentId: 'a', item: 'a: it' },
        { agentId: 'nobody' },
        { agentId: 'b', item: 'b: it' },
      ];
      const old = await givenWorld(world);
      const now = await givenWorld(world);
      const alone = await db.transaction(async (tx) => {
        const out: Ended[] = [];
        for (const step of stepsIn(old, specs)) {
          out.push(await sut.complete(tx, { ...step, sessionId: old.sessionId, at: DONE_AT }));
        }
        return out;
      });
      const many = await db.transaction((tx) =>
        completeManyIn(tx, now.sessionId, stepsIn(now, specs), DONE_AT),
      );
      const ended = { done: true, previous: 'active', state: 'idle', moreQueued: false };
      expect(alone).toEqual([ended, { done: false, previous: null, state: null, moreQueued: false }, ended]);
      expect(many).toEqual(alone);
      // The rows are alike all the same.
      await expect(rowsOf(now.sessionId)).resolves.toEqual(await rowsOf(old.sessionId));
    });
  });

  describe('several sessions in one statement: each as its own statement would', () => {
    type Ended = Awaited<ReturnType<WorkStepRepository['complete']>>;
    const stepsIn = (
      world: { items: Record<string, WorkItem> },
      specs: Array<{ agentId: string; item: string; usage?: Usage }>,
    ) =>
      specs.map((s) => ({
        agentId: s.agentId,
        taskId: world.items[s.item].taskId,
        final: `the end of ${s.item}`,
        usage: s.usage ?? USAGE,
        turns: TURNS,
      }));
    /** Two worlds alike; the same agent ids in both. */
    const WORLD: World = {
      agents: { a: 'active', b: 'idle', c: 'active', d: 'sleeping' },
      items: [
        ['a: it', 'a', 'running'],
        ['a: next', 'a', 'queued'],
        ['b: 1', 'b', 'queued'],
        ['b: 2', 'b', 'queued', { priority: 'urgent' }],
        ['c: it', 'c', 'running'],
        ['d: 1', 'd', 'queued'],
      ],
    };

    it('claimMany', async () => {
      const agentIds = ['b', 'a', 'd', 'nobody'];
      const apart = [await givenWorld(WORLD), await givenWorld(WORLD)];
      const alone = await db.transaction(async (tx) =>
        Promise.all(apart.map((w) => claimManyIn(tx, w.sessionId, agentIds, LATER))),
      );
      const together = [await givenWorld(WORLD), await givenWorld(WORLD)];
      const many = await db.transaction((tx) =>
        sut.claimMany(
          tx,
          agentIds.flatMap((agentId) => together.map(({ sessionId }) => ({ sessionId, agentId }))),
          LATER,
        ),
      );
      for (const [w, world] of together.entries()) {
        const mine = many.filter((_, i) => i % together.length === w);
        const strip = (c: (typeof mine)[number]) =>
          c && {
            item: { ...c.item, taskId: undefined, sessionId: undefined },
            agent: { ...c.agent, sessionId: undefined },
          };
        expect(mine.map(strip)).toEqual(alone[w].map(strip));
        expect(
          mine.every(
            (c) => !c || (c.item.sessionId === world.sessionId && c.agent.sessionId === world.sessionId),
          ),
        ).toBe(true);
        await expect(rowsOf(world.sessionId)).resolves.toEqual(await rowsOf(apart[w].sessionId));
      }
    });

    it('completeMany, with the tokens charged to each session', async () => {
      const specs = (w: { items: Record<string, WorkItem> }) =>
        stepsIn(w, [
          { agentId: 'a', item: 'a: it' },
          { agentId: 'c', item: 'c: it', usage: { promptTokens: 5, completionTokens: 1 } },
        ]).map((step, i) => ({ ...step, claimNext: i === 0 }));
      const apart = [await givenWorld(WORLD), await givenWorld(WORLD)];
      const alone = await db.transaction(async (tx) =>
        Promise.all(apart.map((w) => completeManyIn(tx, w.sessionId, specs(w), DONE_AT))),
      );
      const together = [await givenWorld(WORLD), await givenWorld(WORLD)];
      const many = await db.transaction((tx) =>
        sut.completeMany(
          tx,
          together.flatMap((w) => specs(w).map((step) => ({ ...step, sessionId: w.sessionId }))),
          DONE_AT,
        ),
      );
      const strip = (e: Ended) => ({
        ...e,
        ...(e.next
          ? {
              next: {
                item: { ...e.next.item, taskId: undefined, sessionId: undefined },
                agent: { ...e.next.agent, sessionId: undefined },
              },
            }
          : {}),
      });
      expect(alone[0][0].next?.item.prompt).toBe('a: next');
      for (const [w, world] of together.entries()) {
        const mine = many.slice(w * 2, w * 2 + 2);
        expect(mine.map(strip)).toEqual(alone[w].map(strip));
        expect(mine[0].next?.item.sessionId).toBe(world.sessionId);
        await expect(rowsOf(world.sessionId)).resolves.toEqual(await rowsOf(apart[w].sessionId));
        await expect(session(world.sessionId)).resolves.toMatchObject({ tokensUsed: 42 + 6 });
      }
    });
  });

  describe('complete with claimNext: the completion, then what claim would do, in one statement', () => {
    type Ended = Awaited<ReturnType<WorkStepRepository['complete']>>;
    type Claimed = Awaited<ReturnType<WorkStepRepository['claim']>>;
    const strip = (c: Claimed) =>
      c && {
        item: { ...c.item, taskId: undefined, sessionId: undefined },
        agent: { ...c.agent, sessionId: undefined },
      };

    /**
     * In one world, complete (without claimNext) and then, if that made the agent idle, claim; in its twin, complete with
     * claimNext. Expects the same rows, the step's end alike, and `next` the claim's result.
     */
    async function asCompleteThenClaim(world: World, item: string): Promise<Ended> {
      const old = await givenWorld(world);
      const now = await givenWorld(world);
      const [ended, claimed] = await db.transaction(async (tx) => {
        const end = await sut.complete(tx, stepFor(old.items[item], { sessionId: old.sessionId }));
        // Only an agent the step makes idle (it was working) claims on.
        const madeIdle = end.previous === 'active' && end.state === 'idle';
        const next = madeIdle ? await sut.claim(tx, old.sessionId, 'a', DONE_AT) : undefined;
        return [end, next] as const;
      });
      const both = await db.transaction((tx) =>
        sut.complete(tx, stepFor(now.items[item], { sessionId: now.sessionId, claimNext: true })),
      );
      expect(strip(both.next)).toEqual(strip(claimed));
      expect({ ...both, next: undefined, state: undefined }).toEqual({
        ...ended,
        next: undefined,
        state: undefined,
      });
      expect(both.state).toBe(claimed ? 'active' : ended.state);
      await expect(rowsOf(now.sessionId)).resolves.toEqual(await rowsOf(old.sessionId));
      return both;
    }

    it('claims the next item in claim order (switch first, then priority, then first in)', async () => {
      const end = await asCompleteThenClaim(
        {
          agents: { a: 'active', b: 'idle' },
          items: [
            ['a: it', 'a', 'running'],
            ['a: low', 'a', 'queued', { priority: 'low' }],
            ['a: high', 'a', 'queued', { priority: 'high' }],
            ['a: switch', 'a', 'queued', { isSwitch: true }],
            ['b: urgent', 'b', 'queued', { priority: 'urgent', isSwitch: true }],
          ],
        },
        'a: it',
      );
      expect(end).toMatchObject({ done: true, previous: 'active', state: 'active', moreQueued: true });
      expect(end.next!.item).toMatchObject({
        prompt: 'a: switch',
        state: 'running',
        attempts: 1,
        startedAt: DONE_AT,
      });
      expect(end.next!.agent).toMatchObject({
        agentId: 'a',
        state: 'active',
        lastActiveAt: DONE_AT,
        tokensUsed: 42,
      });
    });

    it('claims nothing when the item was the last queued one, or none is', async () => {
      const end = await asCompleteThenClaim(
        { agents: { a: 'active' }, items: [['a: it', 'a', 'queued']] },
        'a: it',
      );
      expect(end).toEqual({ done: true, previous: 'active', state: 'idle', moreQueued: false });
      await asCompleteThenClaim({ agents: { a: 'active' }, items: [['a: it', 'a', 'running']] }, 'a: it');
    });

    it('claims the next item even when the one in hand had ended meanwhile (cancelled)', async () => {
      const end = await asCompleteThenClaim(
        {
          agents: { a: 'active' },
          items: [
            ['a: it', 'a', 'cancelled'],
            ['a: next', 'a', 'queued'],
          ],
        },
        'a: it',
      );
      expect(end).toMatchObject({ done: false, state: 'active', next: { item: { prompt: 'a: next' } } });
    });

    it.each<AgentState>(['idle', 'sleeping', 'stopped', 'waiting'])(
      'claims nothing for an agent that was %s (not working)',
      async (state) => {
        const end = await asCompleteThenClaim(
          {
            agents: { a: state },
            items: [
              ['a: it', 'a', 'running'],
              ['a: next', 'a', 'queued'],
            ],
          },
          'a: it',
        );
        expect(end.next).toBeUndefined();
        expect(end.state).toBe(state);
      },
    );

    it('claims nothing without claimNext', async () => {
      const { sessionId, items: named } = await givenWorld({
        agents: { a: 'active' },
        items: [
          ['a: it', 'a', 'running'],
          ['a: next', 'a', 'queued'],
        ],
      });
      const end = await complete(stepFor(named['a: it'], { sessionId }));
      expect(end).toEqual({ done: true, previous: 'active', state: 'idle', moreQueued: true });
      await expect(find(sessionId, named['a: next'].taskId)).resolves.toEqual(named['a: next']);
    });
  });
});

import { AgentWrites, SleepWrite } from 'src/agents/agent-writes.repository';
import { AgentPatch, AgentRepository } from 'src/agents/agent.repository';
import { Agent, AgentState } from 'src/agents/agent.types';
import { DatabaseService } from 'src/database/database.service';
import { run } from 'src/database/sql';
import { SessionRepository } from 'src/sessions/session.repository';
import { newAgentRow } from '../factories/agent-rows';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';
const later = (seconds: number) => new Date(Date.parse(AT) + seconds * 1000).toISOString();

/**
 * The multi-row statements of createAgent and sleepAgent against the single-row path they stand
 * for (AgentRepository.insert; find + update as AgentLifecycleService.transition does), each on a
 * twin session holding the same agents: every row must come out the same.
 */
describe(AgentWrites.name, () => {
  const sut = new AgentWrites();
  const agents = new AgentRepository();
  const sessions = new SessionRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  async function givenSession(given: Record<string, { state: AgentState; patch?: AgentPatch }> = {}) {
    const sessionId = newSessionId();
    await db.transaction(async (tx) => {
      await sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: AT });
      for (const [agentId, g] of Object.entries(given)) {
        await agents.insert(tx, newAgentRow(sessionId, agentId, g.state, AT));
        if (g.patch) {
          await agents.update(tx, sessionId, agentId, g.patch);
        }
      }
    });
    return sessionId;
  }

  const rows = (sessionId: string) => db.read((tx) => agents.listBySession(tx, sessionId));
  /** A session's agents without the session id, to compare twins. */
  const comparable = async (sessionId: string) =>
    (await rows(sessionId)).map(({ sessionId: _s, ...rest }) => rest);
  const outcome = <T>(p: Promise<T>) =>
    p.then(
      (value) => ({ value }),
      // The SQLSTATE: the statements differ, so their messages do; the kind of failure must not.
      (err: unknown) => ({ error: (err as { code?: string }).code ?? String(err) }),
    );

  const newAgent = (sessionId: string, agentId: string, patch: Partial<Agent> = {}): Agent => ({
    ...newAgentRow(sessionId, agentId, 'idle', AT),
    config: { ...newAgentRow(sessionId, agentId, 'idle', AT).config, description: `I am ${agentId}` },
    wakeEvents: ['go'],
    createdAt: later(1),
    ...patch,
  });

  describe('insertMany', () => {
    it('inserts each agent as insert does, across sessions, and leaves taken ids alone', async () => {
      const [one, two] = [await givenSession({ taken: { state: 'sleeping' } }), await givenSession()];
      const [twinOne, twinTwo] = [await givenSession({ taken: { state: 'sleeping' } }), await givenSession()];
      const wanted = (s1: string, s2: string) => [
        newAgent(s1, 'alpha'),
        newAgent(s2, 'alpha', { state: 'stopped', stopReason: 'created_stopped', wakeEvents: [] }),
        newAgent(s1, 'taken', { template: 'other' }),
        newAgent(s2, 'beta', { createdAt: later(2) }),
      ];

      const merged = await db.transaction((tx) => sut.insertMany(tx, wanted(one, two)));
      const single: Array<Agent | undefined> = [];
      for (const a of wanted(twinOne, twinTwo)) {
        single.push(await db.transaction((tx) => agents.insert(tx, a)));
      }

      const withoutSession = (a: Agent | undefined) => a && { ...a, sessionId: undefined };
      expect(merged.map(withoutSession)).toEqual(single.map(withoutSession));
      expect(merged.map((a) => a?.agentId)).toEqual(['alpha', 'alpha', undefined, 'beta']);
      expect(merged.map((a) => a?.sessionId)).toEqual([one, two, undefined, two]);
      expect(await comparable(one)).toEqual(await comparable(twinOne));
      expect(await comparable(two)).toEqual(await comparable(twinTwo));
      // The taken agent is as it was: a conflict, not an overwrite.
      expect((await rows(one)).find((a) => a.agentId === 'taken')).toMatchObject({
        state: 'sleeping',
        template: 'assistant',
      });
    });

    it('gives an id asked for twice in one call to the first only, as two inserts in a row would', async () => {
      const sessionId = await givenSession();
      const first = newAgent(sessionId, 'same', { template: 'first' });
      const second = newAgent(sessionId, 'same', { template: 'second' });

      const created = await db.transaction((tx) => sut.insertMany(tx, [first, second]));

      expect(created.map((a) => a?.template)).toEqual(['first', undefined]);
      expect((await rows(sessionId)).map((a) => a.template)).toEqual(['first']);
    });

    it('fails as insert does for a session that does not exist and for a state that is not one', async () => {
      const sessionId = await givenSession();
      const ghost = newSessionId('ghost');
      const bad = { ...newAgent(sessionId, 'bad'), state: 'dreaming' as AgentState };
      for (const agent of [newAgent(ghost, 'a'), bad]) {
        const single = await outcome(db.transaction((tx) => agents.insert(tx, agent)));
        const merged = await outcome(
          db.transaction((tx) => sut.insertMany(tx, [newAgent(sessionId, 'fine'), agent])),
        );
        expect(single).toHaveProperty('error');
        expect(merged).toEqual(single);
      }
      // The failed statement left nothing behind, not even the good row beside the bad one.
      expect(await rows(sessionId)).toEqual([]);
      expect(await rows(ghost)).toEqual([]);
    });

    it('asks nothing of the database for no agents', async () => {
      await expect(db.transaction((tx) => sut.insertMany(tx, []))).resolves.toEqual([]);
    });
  });

  describe('sleepMany', () => {
    const given = {
      idle: { state: 'idle' as const },
      active: { state: 'active' as const },
      waiting: { state: 'waiting' as const, patch: { waitingOn: 'idle' } },
      sleeper: { state: 'sleeping' as const, patch: { sleepingUntil: later(60), wakeEvents: ['old'] } },
      off: { state: 'stopped' as const, patch: { stopReason: 'stopped' } },
    };
    const writes = (s1: string, s2: string): SleepWrite[] => [
      { sessionId: s1, agentId: 'idle', until: later(30) },
      { sessionId: s1, agentId: 'active', until: null, wakeEvents: ['deploy', 'done'] },
      { sessionId: s2, agentId: 'idle', until: null, wakeEvents: [] },
      { sessionId: s1, agentId: 'waiting', until: later(90) },
      { sessionId: s1, agentId: 'sleeper', until: null },
      { sessionId: s1, agentId: 'off', until: later(30) },
      { sessionId: s1, agentId: 'ghost', until: null },
      { sessionId: s2, agentId: 'sleeper', until: later(10), wakeEvents: ['new'] },
    ];

    /** The single-row path: EventsService.sleep's read, its stopped check, then transition's update. */
    const sleepOne = (w: SleepWrite) =>
      db.transaction(async (tx) => {
        const agent = await agents.find(tx, w.sessionId, w.agentId);
        if (!agent) {
          return { previous: null };
        }
        if (agent.state === 'stopped') {
          return { previous: 'stopped' as const };
        }
        const slept = await agents.update(tx, w.sessionId, w.agentId, {
          state: 'sleeping',
          sleepingUntil: w.until,
          wakeEvents: w.wakeEvents ?? agent.wakeEvents,
        });
        return {
          previous: agent.state,
          slept: { sleepingUntil: slept.sleepingUntil, wakeEvents: slept.wakeEvents },
        };
      });

    it('puts each agent to sleep as the single path does, across sessions, with the state it had before', async () => {
      const [one, two] = [await givenSession(given), await givenSession(given)];
      const [twinOne, twinTwo] = [await givenSession(given), await givenSession(given)];

      const merged = await db.transaction((tx) => sut.sleepMany(tx, writes(one, two)));
      const single = [];
      for (const w of writes(twinOne, twinTwo)) {
        single.push(await sleepOne(w));
      }

      expect(merged).toEqual(single);
      expect(merged.map((r) => r.previous)).toEqual([
        'idle',
        'active',
        'idle',
        'waiting',
        'sleeping',
        'stopped',
        null,
        'sleeping',
      ]);
      expect(await comparable(one)).toEqual(await comparable(twinOne));
      expect(await comparable(two)).toEqual(await comparable(twinTwo));
      expect((await rows(one)).find((a) => a.agentId === 'off')).toMatchObject({
        state: 'stopped',
        sleepingUntil: null,
      });
    });

    it('fails as the single path does for a deadline that is not a time', async () => {
      const [sessionId, untouched] = [await givenSession(given), await givenSession(given)];
      const bad: SleepWrite = { sessionId, agentId: 'idle', until: 'soon' };
      const single = await outcome(sleepOne(bad));
      const merged = await outcome(
        db.transaction((tx) => sut.sleepMany(tx, [{ sessionId, agentId: 'active', until: null }, bad])),
      );
      expect(single).toHaveProperty('error');
      expect(merged).toEqual(single);
      expect(await comparable(sessionId)).toEqual(await comparable(untouched));
    });

    it('asks nothing of the database for no agents', async () => {
      await expect(db.transaction((tx) => sut.sleepMany(tx, []))).resolves.toEqual([]);
    });
  });

  describe('wakeDueManyStatement', () => {
    const given = {
      dueEarly: { state: 'sleeping' as const, patch: { sleepingUntil: later(10) } },
      onTheDot: { state: 'sleeping' as const, patch: { sleepingUntil: later(20) } },
      notYet: { state: 'sleeping' as const, patch: { sleepingUntil: later(30) } },
      replyDue: { state: 'sleeping' as const, patch: { sleepingUntil: later(5), waitingOn: 'x' } },
      forever: { state: 'sleeping' as const },
      awake: { state: 'idle' as const },
    };
    const asked = ['notYet', 'replyDue', 'awake', 'onTheDot', 'forever', 'dueEarly', 'ghost'];

    it('wakes the due sleepers of every write as wakeSleeping does one session, one row per write in its order', async () => {
      const [one, two, twinOne, twinTwo] = await Promise.all([
        givenSession(given),
        givenSession({ solo: given.dueEarly }),
        givenSession(given),
        givenSession({ solo: given.dueEarly }),
      ]);

      const merged = await db.transaction((tx) =>
        run(
          tx,
          sut.wakeDueManyStatement([
            { sessionId: one, agentIds: asked, dueBy: later(20) },
            { sessionId: two, agentIds: ['solo'], dueBy: later(5) },
            { sessionId: two, agentIds: ['ghost'], dueBy: later(20) },
          ]),
        ),
      );
      const single = await db.transaction(async (tx) => [
        await agents.wakeSleeping(tx, twinOne, asked, later(20)),
        await agents.wakeSleeping(tx, twinTwo, ['solo'], later(5)),
      ]);

      expect(merged).toEqual([...single, []]);
      expect(merged[0].map((w) => [w.agentId, w.state])).toEqual([
        ['replyDue', 'waiting'],
        ['onTheDot', 'idle'],
        ['dueEarly', 'idle'],
      ]);
      await expect(comparable(one)).resolves.toEqual(await comparable(twinOne));
      await expect(comparable(two)).resolves.toEqual(await comparable(twinTwo));
    });
  });
});

import { AgentPatch, AgentRepository } from 'src/agents/agent.repository';
import { AgentState } from 'src/agents/agent.types';
import { DatabaseService } from 'src/database/database.service';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { SessionRepository } from 'src/sessions/session.repository';
import { newAgentRow } from '../factories/agent-rows';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';
const later = (seconds: number) => new Date(Date.parse(AT) + seconds * 1000).toISOString();

interface Given {
  state: AgentState;
  wakeEvents?: string[];
  patch?: AgentPatch;
  /** An item of the agent's is running (its loop is mid-step). */
  running?: boolean;
  /** An item waits in the agent's queue. */
  queued?: boolean;
}

describe(AgentRepository.name, () => {
  const sut = new AgentRepository();
  const sessions = new SessionRepository();
  const items = new WorkItemRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** A session holding the given agents, created in the order given (one second apart). */
  async function givenAgents(agents: Record<string, Given>): Promise<string> {
    const sessionId = newSessionId();
    await db.transaction(async (tx) => {
      await sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: AT });
      let n = 0;
      for (const [agentId, g] of Object.entries(agents)) {
        await sut.insert(tx, {
          ...newAgentRow(sessionId, agentId, g.state, later(n++)),
          wakeEvents: g.wakeEvents ?? [],
        });
        if (g.patch) {
          await sut.update(tx, sessionId, agentId, g.patch);
        }
        if (g.running) {
          await items.insert(tx, {
            sessionId,
            agentId,
            kind: 'task',
            priority: 'normal',
            prompt: 'x',
            createdAt: AT,
          });
          await items.claimNext(tx, sessionId, agentId, AT);
        }
        if (g.queued) {
          await items.insert(tx, {
            sessionId,
            agentId,
            kind: 'task',
            priority: 'normal',
            prompt: 'y',
            createdAt: AT,
          });
        }
      }
    });
    return sessionId;
  }

  const find = (sessionId: string, agentId: string) => db.read((tx) => sut.find(tx, sessionId, agentId));

  describe('listListeners', () => {
    it('lists the running agents whose wake events hold the event, in the session’s order, the sender excepted', async () => {
      const sessionId = await givenAgents({
        zeta: { state: 'sleeping', wakeEvents: ['deploy', 'other'] },
        alpha: { state: 'idle', wakeEvents: ['deploy'] },
        off: { state: 'stopped', wakeEvents: ['deploy'] },
        deaf: { state: 'idle', wakeEvents: ['other', 'deploy_done'] },
        busy: { state: 'active', wakeEvents: ['deploy'] },
        sender: { state: 'active', wakeEvents: ['deploy'] },
        blocked: { state: 'waiting', wakeEvents: ['deploy'] },
      });
      const listeners = (except?: string) =>
        db.read((tx) => sut.listListeners(tx, sessionId, 'deploy', except));

      await expect(listeners('sender')).resolves.toEqual([
        { agentId: 'zeta', state: 'sleeping' },
        { agentId: 'alpha', state: 'idle' },
        { agentId: 'busy', state: 'active' },
        { agentId: 'blocked', state: 'waiting' },
      ]);
      expect((await listeners()).map((a) => a.agentId)).toEqual([
        'zeta',
        'alpha',
        'busy',
        'sender',
        'blocked',
      ]);
      await expect(db.read((tx) => sut.listListeners(tx, sessionId, 'deplo'))).resolves.toEqual([]);
      await expect(db.read((tx) => sut.listListeners(tx, newSessionId(), 'deploy'))).resolves.toEqual([]);
    });
  });

  describe('listLiveAmong', () => {
    it('keeps of the agents asked for those that exist and are not stopped', async () => {
      const sessionId = await givenAgents({
        idle: { state: 'idle' },
        asleep: { state: 'sleeping' },
        off: { state: 'stopped' },
        other: { state: 'idle' },
      });
      const asked = ['idle', 'asleep', 'off', 'missing'].map((agentId) => ({ sessionId, agentId }));
      const live = await db.read((tx) => sut.listLiveAmong(tx, asked));
      expect(live.map((a) => a.agentId).sort()).toEqual(['asleep', 'idle']);
      expect(live.every((a) => a.sessionId === sessionId)).toBe(true);
    });

    it('asks nothing of the database for no agents', async () => {
      await expect(db.read((tx) => sut.listLiveAmong(tx, []))).resolves.toEqual([]);
    });
  });

  describe('listWaitGraph', () => {
    it('reads the agents asked for and every waiting agent of the session, once each', async () => {
      const sessionId = await givenAgents({
        caller: { state: 'active' },
        target: { state: 'waiting', patch: { waitingOn: 'far' } },
        far: { state: 'active' },
        other: { state: 'waiting', patch: { waitingOn: 'caller' } },
        bystander: { state: 'idle' },
      });
      const elsewhere = await givenAgents({ stranger: { state: 'waiting', patch: { waitingOn: 'x' } } });

      const graph = await db.read((tx) => sut.listWaitGraph(tx, sessionId, ['caller', 'target', 'missing']));

      expect(graph.map((a) => [a.agentId, a.waitingOn]).sort()).toEqual([
        ['caller', null],
        ['other', 'caller'],
        ['target', 'far'],
      ]);
      expect(graph.every((a) => a.sessionId === sessionId)).toBe(true);
      await expect(db.read((tx) => sut.listWaitGraph(tx, elsewhere, []))).resolves.toMatchObject([
        { agentId: 'stranger', waitingOn: 'x' },
      ]);
    });
  });

  describe('endWait', () => {
    it('clears the wait and makes a waiting agent active, with its state before', async () => {
      const sessionId = await givenAgents({
        waiter: { state: 'waiting', patch: { waitingOn: 'helper' } },
        stopped: { state: 'stopped', patch: { waitingOn: 'helper' } },
        asleep: { state: 'sleeping', patch: { waitingOn: 'helper' } },
      });

      const ended = await db.transaction(async (tx) => ({
        waiter: await sut.endWait(tx, sessionId, 'waiter'),
        stopped: await sut.endWait(tx, sessionId, 'stopped'),
        asleep: await sut.endWait(tx, sessionId, 'asleep'),
        missing: await sut.endWait(tx, sessionId, 'missing'),
      }));

      expect(ended).toEqual({
        waiter: { previous: 'waiting', state: 'active' },
        stopped: { previous: 'stopped', state: 'stopped' },
        asleep: { previous: 'sleeping', state: 'sleeping' },
        missing: undefined,
      });
      for (const agentId of ['waiter', 'stopped', 'asleep']) {
        await expect(find(sessionId, agentId)).resolves.toMatchObject({ waitingOn: null });
      }
    });
  });

  describe('knownIds', () => {
    it('names the first agents in the session’s order and counts them all', async () => {
      const sessionId = await givenAgents({
        zeta: { state: 'idle' },
        alpha: { state: 'stopped' },
        mid: { state: 'sleeping' },
      });
      await expect(db.read((tx) => sut.knownIds(tx, sessionId, 2))).resolves.toEqual({
        ids: ['zeta', 'alpha'],
        total: 3,
      });
      await expect(db.read((tx) => sut.knownIds(tx, sessionId, 100))).resolves.toEqual({
        ids: ['zeta', 'alpha', 'mid'],
        total: 3,
      });
      await expect(db.read((tx) => sut.knownIds(tx, newSessionId(), 100))).resolves.toEqual({
        ids: [],
        total: 0,
      });
    });
  });

  describe('wakeSleeping', () => {
    it('wakes only the sleepers asked for, to what their loop is doing, with their deadline cleared', async () => {
      const sessionId = await givenAgents({
        plain: { state: 'sleeping', patch: { sleepingUntil: later(60) } },
        replyDue: { state: 'sleeping', patch: { waitingOn: 'plain' } },
        midStep: { state: 'sleeping', running: true },
        awake: { state: 'idle' },
        off: { state: 'stopped' },
        notAsked: { state: 'sleeping', patch: { sleepingUntil: later(60) } },
        withWork: { state: 'sleeping', queued: true },
      });

      const woken = await db.transaction((tx) =>
        sut.wakeSleeping(tx, sessionId, [
          'off',
          'midStep',
          'awake',
          'withWork',
          'plain',
          'replyDue',
          'ghost',
        ]),
      );

      expect(woken).toEqual([
        { agentId: 'midStep', state: 'active', hasWork: false },
        { agentId: 'withWork', state: 'idle', hasWork: true },
        { agentId: 'plain', state: 'idle', hasWork: false },
        { agentId: 'replyDue', state: 'waiting', hasWork: false },
      ]);
      await expect(find(sessionId, 'plain')).resolves.toMatchObject({ state: 'idle', sleepingUntil: null });
      await expect(find(sessionId, 'replyDue')).resolves.toMatchObject({
        state: 'waiting',
        waitingOn: 'plain',
      });
      await expect(find(sessionId, 'awake')).resolves.toMatchObject({ state: 'idle' });
      await expect(find(sessionId, 'off')).resolves.toMatchObject({ state: 'stopped' });
      await expect(find(sessionId, 'notAsked')).resolves.toMatchObject({
        state: 'sleeping',
        sleepingUntil: later(60),
      });
      // Asleep no more: a second call (a late or double timer) changes nothing.
      await expect(
        db.transaction((tx) => sut.wakeSleeping(tx, sessionId, ['plain', 'midStep'])),
      ).resolves.toEqual([]);
    });

    it('does not ask about queued work when told not to (the caller has just queued some)', async () => {
      const sessionId = await givenAgents({
        withWork: { state: 'sleeping', queued: true },
        midStep: { state: 'sleeping', running: true },
      });

      const woken = await db.transaction((tx) =>
        sut.wakeSleeping(tx, sessionId, ['withWork', 'midStep'], undefined, false),
      );

      expect(woken).toEqual([
        { agentId: 'withWork', state: 'idle', hasWork: false },
        { agentId: 'midStep', state: 'active', hasWork: false },
      ]);
    });

    it('with dueBy wakes only sleepers whose deadline is at or before it', async () => {
      const sessionId = await givenAgents({
        early: { state: 'sleeping', patch: { sleepingUntil: later(10) } },
        onTheDot: { state: 'sleeping', patch: { sleepingUntil: later(20) } },
        notYet: { state: 'sleeping', patch: { sleepingUntil: later(21) } },
        forever: { state: 'sleeping' },
      });

      const woken = await db.transaction((tx) =>
        sut.wakeSleeping(tx, sessionId, ['early', 'onTheDot', 'notYet', 'forever'], later(20)),
      );

      expect(woken.map((w) => w.agentId)).toEqual(['early', 'onTheDot']);
      await expect(find(sessionId, 'notYet')).resolves.toMatchObject({
        state: 'sleeping',
        sleepingUntil: later(21),
      });
      await expect(find(sessionId, 'forever')).resolves.toMatchObject({
        state: 'sleeping',
        sleepingUntil: null,
      });
    });

    it('asks nothing of the database for no agents', async () => {
      await expect(db.transaction((tx) => sut.wakeSleeping(tx, newSessionId(), []))).resolves.toEqual([]);
    });
  });
});

import { AgentsService } from 'src/agents/agents.service';
import { RpcError } from 'src/common/rpc-error';
import { EventsService } from 'src/events/events.service';
import { SessionsService } from 'src/sessions/sessions.service';
import { HistoryService } from 'src/sessions/history.service';
import { startTestApp, TestApp } from '../support/test-app';

/**
 * createAgent and sleepAgent as merged writes (one statement for the writes of a batch, see
 * AgentWrites) inside the real app: calls that share a batch answer, fail and record exactly what
 * the same calls one at a time do on a twin session.
 */
describe('createAgent and sleepAgent merged in a batch', () => {
  let t: TestApp;
  let agents: AgentsService;
  let events: EventsService;
  let history: HistoryService;
  let n = 0;

  beforeAll(async () => {
    // One lane, so that the calls of a test meet in one batch on both databases.
    t = await startTestApp({ env: { COMMIT_LANES: '1' } });
    agents = t.app.get(AgentsService);
    events = t.app.get(EventsService);
    history = t.app.get(HistoryService);
  });

  afterAll(() => t.close());

  async function newSession(): Promise<string> {
    const sessionId = `merged-${++n}`;
    await t.app.get(SessionsService).start({ sessionId });
    return sessionId;
  }

  /** Holds the lane's batch open until the returned function is called: the calls made meanwhile share the next one. */
  async function holdBatch(sessionId: string): Promise<() => Promise<void>> {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const done = history.inSession(sessionId, async () => {
      entered();
      await gate;
    });
    await inside;
    return () => {
      open();
      return done;
    };
  }

  /** A call's value or its error (also one thrown before the call reached the database). */
  const outcome = <T>(p: Promise<T> | (() => Promise<T>)) =>
    (typeof p === 'function' ? Promise.resolve().then(p) : p).then(
      (value) => ({ value }),
      (err: unknown) =>
        err instanceof RpcError ? { reason: err.reason, message: err.message } : { thrown: String(err) },
    );

  /** The calls' outcomes, made together behind a held batch (merged), with the session id written as `S`. */
  async function together(sessionId: string, calls: Array<(s: string) => Promise<unknown>>) {
    const release = await holdBatch(sessionId);
    const pending = calls.map((c) => outcome(() => c(sessionId)));
    await release();
    return anonymous(sessionId, await Promise.all(pending));
  }

  async function oneByOne(sessionId: string, calls: Array<(s: string) => Promise<unknown>>) {
    const out = [];
    for (const c of calls) {
      out.push(await outcome(() => c(sessionId)));
    }
    return anonymous(sessionId, out);
  }

  const anonymous = (sessionId: string, value: unknown) =>
    JSON.parse(JSON.stringify(value).split(sessionId).join('S')) as unknown;

  /** The session's history (type and payload; the order among agents may differ when merged) and agents. */
  async function written(sessionId: string) {
    const records = (await history.page(sessionId, 0, 1000)).map((r) => ({ type: r.type, ...r.payload }));
    const byAgent = (a: Record<string, unknown>, b: Record<string, unknown>) =>
      JSON.stringify(a).localeCompare(JSON.stringify(b));
    const states = (await agents.states(sessionId)).agents;
    return anonymous(sessionId, { records: records.sort(byAgent), states });
  }

  const create =
    (agentId: string, extra: Record<string, unknown> = {}) =>
    (sessionId: string) =>
      agents.create({ sessionId, agentId, autoStart: true, ...extra });
  const sleep =
    (agentId: string, request: Parameters<EventsService['sleepAgent']>[2] = {}) =>
    (sessionId: string) =>
      events.sleepAgent(sessionId, agentId, request);

  it('creates agents as one at a time does, and refuses a taken id with conflict', async () => {
    const calls = [
      create('analyzer'),
      create('writer', { autoStart: false }),
      create('analyzer'),
      create('helper', { template: 'assistant', config: { wakeEvents: ['go'] } }),
      create('unknown-template', { template: 'no-such-template' }),
    ];
    const [merged, single] = [await newSession(), await newSession()];
    const a = await together(merged, calls);
    const b = await oneByOne(single, calls);

    expect(a).toEqual(b);
    expect(a).toMatchObject([
      { value: { agentId: 'analyzer', state: 'idle' } },
      { value: { agentId: 'writer', state: 'stopped' } },
      { reason: 'conflict', message: "Agent 'analyzer' already exists in session 'S'" },
      { value: { agentId: 'helper', state: 'idle' } },
      { reason: 'invalid_params' },
    ]);
    expect(await written(merged)).toEqual(await written(single));
    // A batch with a failing write runs again write by write: the merged statement alone, too.
    const fine = [calls[0], calls[1], calls[3]];
    const [merged2, single2] = [await newSession(), await newSession()];
    expect(await together(merged2, fine)).toEqual(await oneByOne(single2, fine));
    expect(await written(merged2)).toEqual(await written(single2));
  });

  it('puts agents to sleep as one at a time does: not found, stopped and already asleep included', async () => {
    const setup = [create('a'), create('b'), create('c'), create('off', { autoStart: false })];
    const calls = [
      sleep('a', { durationSeconds: 60 }),
      sleep('b', { wakeEvents: ['deploy'] }),
      sleep('ghost'),
      sleep('off'),
      sleep('c', { until: '2030-01-01T00:00:00.000Z' }),
      // Already asleep (from earlier in this batch): a new deadline, no second state change.
      sleep('a'),
    ];
    const [merged, single] = [await newSession(), await newSession()];
    await oneByOne(merged, setup);
    await oneByOne(single, setup);
    const a = await together(merged, calls);
    const b = await oneByOne(single, calls);

    expect(a).toEqual(b);
    expect(a).toMatchObject([
      { value: { agentId: 'a', state: 'sleeping', sleepingUntil: expect.any(String) } },
      { value: { agentId: 'b', state: 'sleeping', sleepingUntil: null, wakeEvents: ['deploy'] } },
      { reason: 'agent_not_found' },
      { reason: 'conflict', message: "Agent 'off' is stopped; start it before putting it to sleep" },
      { value: { agentId: 'c', sleepingUntil: '2030-01-01T00:00:00.000Z' } },
      { value: { agentId: 'a', state: 'sleeping', sleepingUntil: null } },
    ]);
    expect(await written(merged)).toEqual(await written(single));
    // A batch with a failing write runs again write by write: the merged statement alone, too.
    const fine = [calls[0], calls[1], calls[4], calls[5]];
    const [merged2, single2] = [await newSession(), await newSession()];
    await oneByOne(merged2, setup);
    await oneByOne(single2, setup);
    expect(await together(merged2, fine)).toEqual(await oneByOne(single2, fine));
    expect(await written(merged2)).toEqual(await written(single2));
  });

  it('answers session_not_found for a session that does not exist, merged or not', async () => {
    const held = await newSession();
    const release = await holdBatch(held);
    const pending = [
      create('x')('ghost-session') as Promise<unknown>,
      sleep('x')('ghost-session'),
      create('y')(held),
    ].map((p) => outcome(p));
    await release();
    const [created, slept, fine] = await Promise.all(pending);
    expect(created).toMatchObject({ reason: 'session_not_found' });
    expect(slept).toMatchObject({ reason: 'session_not_found' });
    expect(fine).toMatchObject({ value: { agentId: 'y' } });
    await expect(outcome(create('x')('ghost-session'))).resolves.toEqual(created);
    await expect(outcome(sleep('x')('ghost-session'))).resolves.toEqual(slept);
  });
});

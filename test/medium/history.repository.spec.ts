import { Client } from 'pg';
import { LeaseRepository } from 'src/cluster/lease.repository';
import { DatabaseService } from 'src/database/database.service';
import { HistoryRepository, SessionClosing } from 'src/sessions/history.repository';
import { SessionRepository } from 'src/sessions/session.repository';
import { HistoryRecord } from 'src/sessions/session.types';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const TTL = 60_000;
const AT = '2026-01-01T00:00:00.000Z';

describe(HistoryRepository.name, () => {
  const sut = new HistoryRepository();
  const sessions = new SessionRepository();
  const leases = new LeaseRepository();
  let db: DatabaseService;
  let databaseUrl: string | undefined;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, databaseUrl, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** A session with a lease held by `node-a`; its epoch. */
  async function givenLeasedSession(): Promise<{ sessionId: string; epoch: number }> {
    const sessionId = newSessionId();
    const epoch = await db.transaction(async (tx) => {
      await sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: AT });
      await leases.heartbeat(tx, 'node-a');
      return (await leases.assign(tx, sessionId, TTL, TTL, 'node-a'))!.epoch;
    });
    return { sessionId, epoch };
  }

  const records = (sessionId: string, from: number, n: number): HistoryRecord[] =>
    Array.from({ length: n }, (_, i) => ({
      sessionId,
      seq: from + i,
      at: AT,
      type: 'async.event.broadcast',
      payload: { event: 'e', data: from + i, woke: [] },
    }));

  /**
   * Runs `close` in a transaction that commits only when no fence was refused (as HistoryService
   * does); 'committed', or the refused sessions.
   */
  const closeAll = (closings: SessionClosing[], channel = 'history_spec') =>
    db
      .transaction(async (tx) => {
        const refused = await sut.close(tx, closings, channel);
        if (refused.length > 0) {
          throw new Error(`refused ${[...refused].sort().join(', ')}`);
        }
      })
      .then(
        () => 'committed',
        (err: Error) => err.message,
      );
  const close = (
    sessionId: string,
    records: HistoryRecord[],
    fence?: SessionClosing['fence'],
    notice?: string,
  ) => closeAll([{ sessionId, records, fence, notice }]);

  const page = (sessionId: string) => db.read((tx) => sut.page(tx, sessionId, 0, 100));
  const counter = async (sessionId: string) =>
    (await db.transaction((tx) => sessions.lockAll(tx, [sessionId]))).get(sessionId)!.historySeq;

  it('writes the records with the counter they leave, and nothing when there are none', async () => {
    const { sessionId } = await givenLeasedSession();
    await expect(close(sessionId, records(sessionId, 1, 3))).resolves.toBe('committed');
    expect((await page(sessionId)).map((r) => [r.seq, r.payload.data])).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect(await counter(sessionId)).toBe(3);
    await expect(close(sessionId, [])).resolves.toBe('committed');
    expect(await counter(sessionId)).toBe(3);
  });

  it('holds only for the lease holder at its epoch, and writes nothing when it does not', async () => {
    const { sessionId, epoch } = await givenLeasedSession();
    const write = (nodeId: string, e: number, seq: number) =>
      close(sessionId, records(sessionId, seq, 1), { nodeId, epoch: e });
    await expect(write('node-a', epoch, 1)).resolves.toBe('committed');
    await expect(write('node-a', epoch + 1, 2)).resolves.toBe(`refused ${sessionId}`);
    await expect(write('node-b', epoch, 2)).resolves.toBe(`refused ${sessionId}`);
    // Handed back: the lease has run out, the holder's next write is refused.
    await db.transaction((tx) => leases.release(tx, 'node-a', [{ sessionId, epoch }]));
    await expect(write('node-a', epoch, 2)).resolves.toBe(`refused ${sessionId}`);
    expect((await page(sessionId)).map((r) => r.seq)).toEqual([1]);
    expect(await counter(sessionId)).toBe(1);
  });

  it('closes several sessions in one statement: each its own records, counter and fence', async () => {
    const a = await givenLeasedSession();
    const b = await givenLeasedSession();
    const c = await givenLeasedSession();
    await expect(
      closeAll([
        {
          sessionId: a.sessionId,
          records: records(a.sessionId, 1, 2),
          fence: { nodeId: 'node-a', epoch: a.epoch },
        },
        { sessionId: b.sessionId, records: records(b.sessionId, 1, 1) },
        { sessionId: c.sessionId, records: [], fence: { nodeId: 'node-a', epoch: c.epoch } },
      ]),
    ).resolves.toBe('committed');
    expect((await page(a.sessionId)).map((r) => [r.sessionId, r.seq])).toEqual([
      [a.sessionId, 1],
      [a.sessionId, 2],
    ]);
    expect((await page(b.sessionId)).map((r) => [r.sessionId, r.seq])).toEqual([[b.sessionId, 1]]);
    expect([await counter(a.sessionId), await counter(b.sessionId), await counter(c.sessionId)]).toEqual([
      2, 1, 0,
    ]);

    // One fence refused: the statement names only that session (and the caller rolls back all).
    await expect(
      closeAll([
        {
          sessionId: a.sessionId,
          records: records(a.sessionId, 3, 1),
          fence: { nodeId: 'node-a', epoch: a.epoch },
        },
        {
          sessionId: b.sessionId,
          records: records(b.sessionId, 2, 1),
          fence: { nodeId: 'node-b', epoch: b.epoch },
        },
        {
          sessionId: c.sessionId,
          records: records(c.sessionId, 1, 1),
          fence: { nodeId: 'node-a', epoch: c.epoch + 1 },
        },
      ]),
    ).resolves.toBe(`refused ${[b.sessionId, c.sessionId].sort().join(', ')}`);
    expect([await counter(a.sessionId), await counter(b.sessionId), await counter(c.sessionId)]).toEqual([
      2, 1, 0,
    ]);
    await expect(closeAll([])).resolves.toBe('committed');
  });

  if (process.env.TEST_DATABASE_URL) {
    it('sends the notice when the transaction commits, and not when it rolls back', async () => {
      const { sessionId, epoch } = await givenLeasedSession();
      const listener = new Client({ connectionString: databaseUrl });
      await listener.connect();
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(n.payload ?? ''));
      await listener.query('LISTEN history_spec');
      try {
        await close(sessionId, [], { nodeId: 'node-b', epoch }, 'refused one');
        await close(sessionId, records(sessionId, 1, 1), { nodeId: 'node-a', epoch }, 'first');
        await close(sessionId, [], undefined, 'second');
        const other = await givenLeasedSession();
        await closeAll([
          { sessionId, records: [], notice: 'third' },
          { sessionId: other.sessionId, records: [], notice: 'fourth' },
        ]);
        await closeAll([
          { sessionId, records: [], notice: 'refused two' },
          {
            sessionId: other.sessionId,
            records: [],
            fence: { nodeId: 'node-b', epoch },
            notice: 'refused three',
          },
        ]);
        // A round trip on the listener's connection delivers what was sent before it.
        await listener.query('SELECT 1');
        expect(heard.sort()).toEqual(['first', 'fourth', 'second', 'third']);
      } finally {
        await listener.end();
      }
    });
  }
});

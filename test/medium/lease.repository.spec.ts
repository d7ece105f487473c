import { LeaseRepository } from 'src/cluster/lease.repository';
import { DatabaseService } from 'src/database/database.service';
import { SessionRepository } from 'src/sessions/session.repository';
import { newSessionId } from '../factories/ids';
import { openTestDatabase } from '../support/test-app';

const TTL = 60_000;

describe(LeaseRepository.name, () => {
  const sut = new LeaseRepository();
  const sessions = new SessionRepository();
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  async function givenSession(): Promise<string> {
    const sessionId = newSessionId();
    await db.transaction((tx) =>
      sessions.upsert(tx, { sessionId, metadata: {}, limits: {}, at: new Date().toISOString() }),
    );
    return sessionId;
  }

  const holds = (sessionId: string, node: string, epoch: number) =>
    db.transaction((tx) => sut.holds(tx, sessionId, node, epoch));

  it('gives a new session to the live node with the fewest sessions', async () => {
    await db.transaction(async (tx) => {
      await sut.heartbeat(tx, 'busy');
      await sut.heartbeat(tx, 'spare');
    });
    const first = await givenSession();
    await db.transaction((tx) => sut.assign(tx, first, TTL, TTL, 'busy'));
    const owners = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const s = await givenSession();
      owners.add((await db.transaction((tx) => sut.assign(tx, s, TTL, TTL, 'busy')))!.owner);
    }
    expect(owners).toEqual(new Set(['busy', 'spare']));
    // Assigning twice does nothing.
    await expect(db.transaction((tx) => sut.assign(tx, first, TTL, TTL, 'spare'))).resolves.toBeUndefined();
  });

  it('fences by owner and epoch: a lease handed back and taken by another node refuses the old owner', async () => {
    const sessionId = await givenSession();
    const given = await db.transaction((tx) => sut.assign(tx, sessionId, TTL, TTL, 'node-a'));
    const epoch = given!.epoch;
    await expect(holds(sessionId, given!.owner, epoch)).resolves.toBe(true);
    await expect(holds(sessionId, given!.owner, epoch + 1)).resolves.toBe(false);
    await expect(holds(sessionId, 'someone-else', epoch)).resolves.toBe(false);

    await db.transaction((tx) => sut.release(tx, given!.owner, [{ sessionId, epoch }]));
    await expect(holds(sessionId, given!.owner, epoch)).resolves.toBe(false); // handed back: expired

    const claimed = await db.transaction((tx) => sut.claim(tx, 'node-b', TTL, 1000, false));
    expect(claimed).toContainEqual({ sessionId, epoch: epoch + 1 });
    await expect(holds(sessionId, 'node-b', epoch + 1)).resolves.toBe(true);
    await expect(holds(sessionId, given!.owner, epoch)).resolves.toBe(false);
    const renewed = await db.transaction((tx) => sut.renew(tx, given!.owner, TTL));
    expect(renewed.map((l) => l.sessionId)).not.toContain(sessionId);
  });

  it('never lets a lease that has not run out be claimed, and a lease without a ttl never runs out', async () => {
    const sessionId = await givenSession();
    await db.transaction((tx) => sut.assign(tx, sessionId, null, 0, 'forever'));
    const claimed = await db.transaction((tx) => sut.claim(tx, 'thief', TTL, 1000, false));
    expect(claimed.map((l) => l.sessionId)).not.toContain(sessionId);
    await expect(holds(sessionId, 'forever', 1)).resolves.toBe(true);
  });

  it('hands back every lease of a node that leaves, including ones it had not taken up', async () => {
    const a = await givenSession();
    const b = await givenSession();
    await db.transaction(async (tx) => {
      await sut.assign(tx, a, TTL, 0, 'leaving');
      await sut.assign(tx, b, TTL, 0, 'leaving');
    });
    await expect(db.transaction((tx) => sut.releaseAll(tx, 'leaving'))).resolves.toBe(2);
    await expect(holds(a, 'leaving', 1)).resolves.toBe(false);
  });

  // Only a server runs transactions side by side; PGlite runs them one at a time.
  if (process.env.TEST_DATABASE_URL) {
    it('makes a takeover wait for the owner transaction that passed the fence', async () => {
      const sessionId = await givenSession();
      const given = (await db.transaction((tx) => sut.assign(tx, sessionId, TTL, 0, 'owner')))!;
      let fenced!: () => void;
      const passed = new Promise<void>((resolve) => (fenced = resolve));
      let commit!: () => void;
      const gate = new Promise<void>((resolve) => (commit = resolve));
      const owner = db.transaction(async (tx) => {
        expect(await sut.holds(tx, sessionId, 'owner', given.epoch)).toBe(true);
        fenced();
        await gate;
      });
      await passed;
      const during = await db.transaction((tx) => sut.claim(tx, 'usurper', TTL, 1000, true));
      expect(during.map((l) => l.sessionId)).not.toContain(sessionId);
      commit();
      await owner;
      const after = await db.transaction((tx) => sut.claim(tx, 'usurper', TTL, 1000, true));
      expect(after).toContainEqual({ sessionId, epoch: given.epoch + 1 });
    });
  }
});

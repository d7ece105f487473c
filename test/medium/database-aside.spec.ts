import { DatabaseService, sql, Tx } from 'src/database/database.service';
import { openTestDatabase } from '../support/test-app';

describe(`${DatabaseService.name}.transactionAside`, () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  const now = (tx: Tx): Promise<Array<{ one: number }>> => sql(tx).query('SELECT 1 AS one');

  it('commits what it runs, and rolls back what throws', async () => {
    await expect(db.transactionAside(now)).resolves.toEqual([{ one: 1 }]);
    await expect(
      db.transactionAside(async (tx) => {
        await now(tx);
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    await expect(db.transactionAside(now)).resolves.toEqual([{ one: 1 }]);
  });

  // Only a server has a pool to exhaust; PGlite is one connection and runs transactions one at a time.
  if (process.env.TEST_DATABASE_URL) {
    it('runs while every pooled connection is held by a transaction that waits', async () => {
      await db.transactionAside(now); // its connection is taken now, beside the pool's ten
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      let started = 0;
      const holders = Array.from({ length: 10 }, () =>
        db.transaction(async (tx) => {
          await now(tx);
          started += 1;
          await gate;
        }),
      );
      while (started < 10) {
        await new Promise((resolve) => setImmediate(resolve));
      }
      let late = false;
      const queued = db.read(now).then(() => (late = true)); // waits for a pooled connection

      await expect(db.transactionAside(now)).resolves.toEqual([{ one: 1 }]);
      expect(late).toBe(false);

      open();
      await Promise.all(holders);
      await queued;
    });
  } else {
    it('needs a Postgres server to exhaust a pool (TEST_DATABASE_URL); on PGlite it is a plain transaction', () => {
      console.log('transactionAside: the exhausted-pool case runs on a Postgres server only');
    });
  }
});

import { DatabaseService } from 'src/database/database.service';
import { query } from 'src/database/sql';
import { openTestDatabase } from '../support/test-app';

/**
 * `query` (sql.ts) runs a statement prepared by name: on a Postgres server through the driver, on the
 * embedded database as `EXECUTE name(literals…)` (EmbeddedStatements). Either way a statement gets its
 * parameters exactly as bound, and one that cannot be prepared still runs.
 */
describe('statements run by query', () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  const ECHO = `SELECT $1::text AS t, $2::int AS i, $3::bigint::text AS b, $4::boolean AS f, $5::text[] AS l,
    $6::jsonb AS j, $7::timestamptz AS at, $8::text IS NULL AS n`;

  it.each([
    ['plain', 1, 2, true, ['a'], { a: 1 }],
    [
      "it's a \\ backslash and a ''pair''",
      -7,
      9_007_199_254_740_991,
      false,
      ['"quoted"', 'back\\slash', "it's", '', 'NULL'],
      { "o'k": 'x\\y' },
    ],
    ['$1 $$ EXECUTE', 0, 0, true, [], []],
  ])('passes %j and the rest through as bound, in and out of a transaction', async (t, i, b, f, l, j) => {
    const params = [t, i, b, f, l, JSON.stringify(j), new Date('2026-01-02T03:04:05.678Z'), null];
    const expected = { t, i, b: String(b), f, l, j, n: true };
    for (const run of [db.read.bind(db), db.transaction.bind(db)]) {
      for (let k = 0; k < 3; k++) {
        const [row] = await run((tx) => query<Record<string, unknown>>(tx, ECHO, params));
        expect({ ...row, at: new Date(row.at as string).toISOString() }).toEqual({
          ...expected,
          at: '2026-01-02T03:04:05.678Z',
        });
      }
    }
  });

  it('runs a text that cannot be prepared as it is, without failing the transaction it is in', async () => {
    const rows = await db.transaction(async (tx) => {
      await query(tx, `CREATE TABLE statements_spec (k text PRIMARY KEY)`);
      await query(tx, `INSERT INTO statements_spec (k) VALUES ($1)`, ['one']);
      return query<{ k: string }>(tx, `SELECT k FROM statements_spec WHERE k = $1`, ['one']);
    });
    expect(rows).toEqual([{ k: 'one' }]);
  });

  it('fails a failing statement as it is, and the transaction with it', async () => {
    const insert = `INSERT INTO statements_spec (k) VALUES ($1)`;
    await expect(
      db.transaction(async (tx) => {
        await query(tx, insert, ['two']);
        await query(tx, insert, ['one']); // a duplicate key
      }),
    ).rejects.toThrow(/duplicate key/);
    await expect(
      db.read((tx) => query(tx, `SELECT k FROM statements_spec WHERE k = $1`, ['two'])),
    ).resolves.toEqual([]);
  });
});

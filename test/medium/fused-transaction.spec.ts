import { DatabaseService } from 'src/database/database.service';
import { defer, query, queryAndCommit, Statement } from 'src/database/sql';
import { openTestDatabase } from '../support/test-app';

/**
 * DatabaseService.transactionFused: `BEGIN` sent with the first statement and `COMMIT` with the
 * last (on a Postgres server; a plain transaction on PGlite), and `defer`red statements sent in
 * front of the next one. Whatever the path, it is one transaction: all of it commits, or none, in
 * the order it was written, and the connection is fit for the next one.
 */
describe('fused transactions', () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
    await db.transaction((tx) => query(tx, `CREATE TABLE fused_spec (k text PRIMARY KEY, v int NOT NULL)`));
  });

  afterAll(() => closeDb());

  /** Opens with the values of `$1` (text) and `$2` (text[]) read back by the database. */
  const echo = (text: string, list: string[]): Statement<{ t: string; l: string[] }> => ({
    text: `SELECT $1::text AS t, $2::text[] AS l`,
    params: [text, list],
    result: (rows) => rows[0] as { t: string; l: string[] },
  });
  const put = (k: string, v: number) => ({
    text: `INSERT INTO fused_spec (k, v) VALUES ($1, $2)`,
    params: [k, v],
  });
  const get = async (k: string) =>
    (await db.read((tx) => query<{ v: number }>(tx, `SELECT v FROM fused_spec WHERE k = $1`, [k])))[0]?.v;

  it('gives the first statement’s rows, and commits with the last statement', async () => {
    const opened = await db.transactionFused([echo('a', ['x'])], async (tx, [first]) => {
      await query(tx, put('one', 1).text, put('one', 1).params);
      await queryAndCommit(tx, put('two', -2).text, put('two', -2).params);
      return first;
    });
    expect(opened).toEqual({ t: 'a', l: ['x'] });
    expect([await get('one'), await get('two')]).toEqual([1, -2]);
  });

  it('opens with several statements, each with its rows, in order', async () => {
    const count = {
      text: `SELECT count(*)::int AS n FROM fused_spec WHERE k = ANY($1::text[])`,
      params: [['one', 'two', 'nine']],
      result: (rows: unknown[]) => (rows[0] as { n: number }).n,
    };
    const opened = await db.transactionFused([echo('b', ['y', 'z']), count, echo('c', [])], (_tx, all) =>
      Promise.resolve(all),
    );
    expect(opened).toEqual([{ t: 'b', l: ['y', 'z'] }, 2, { t: 'c', l: [] }]);
  });

  it('commits at the end when no statement took the commit along', async () => {
    await db.transactionFused([echo('a', [])], (tx) =>
      query(tx, put('three', 3).text, put('three', 3).params),
    );
    expect(await get('three')).toBe(3);
  });

  it('commits nothing when the last statement fails, and the connection serves the next transaction', async () => {
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await query(tx, put('four', 4).text, put('four', 4).params);
        await queryAndCommit(tx, put('one', 5).text, put('one', 5).params); // a duplicate key
      }),
    ).rejects.toThrow(/duplicate key/);
    expect(await get('four')).toBeUndefined();
    // Every pooled connection (ten) is fit: the failed one went back rolled back, or was dropped.
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        db.transactionFused([echo('a', [])], (tx) =>
          queryAndCommit(tx, put(`after-${i}`, i).text, put(`after-${i}`, i).params),
        ),
      ),
    );
    expect(await get('after-11')).toBe(11);
  });

  it('commits nothing when the work fails after the first statement, or the first statement does', async () => {
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await query(tx, put('five', 5).text, put('five', 5).params);
        throw new Error('the work failed');
      }),
    ).rejects.toThrow('the work failed');
    expect(await get('five')).toBeUndefined();
    await expect(
      db.transactionFused([{ ...echo('a', []), text: 'SELECT * FROM no_such_table' }], () =>
        Promise.resolve(),
      ),
    ).rejects.toThrow(/no_such_table/);
    await db.transactionFused([echo('a', [])], (tx) => query(tx, put('six', 6).text, put('six', 6).params));
    expect(await get('six')).toBe(6);
  });

  it('takes the commit along with a statement the server will not prepare, in a transaction it keeps', async () => {
    // DDL cannot be prepared: its PREPARE is refused inside the transaction (in a savepoint), and the
    // statement is written out in full instead, the work before it kept.
    await db.transactionFused([echo('a', [])], async (tx) => {
      await query(tx, put('nine', 9).text, put('nine', 9).params);
      await queryAndCommit(tx, `CREATE TABLE fused_spec_ddl (k text PRIMARY KEY)`);
    });
    expect(await get('nine')).toBe(9);
    await expect(
      db.read((tx) => query(tx, `SELECT count(*)::int AS n FROM fused_spec_ddl`)),
    ).resolves.toEqual([{ n: 0 }]);
  });

  it('refuses a statement after the one that took the commit along (a Postgres server only)', async () => {
    const run = db.transactionFused([echo('a', [])], async (tx) => {
      await queryAndCommit(tx, put('seven', 7).text, put('seven', 7).params);
      await query(tx, put('eight', 8).text, put('eight', 8).params);
    });
    if (db.embedded) {
      await run; // a plain transaction: the last statement is any statement
    } else {
      await expect(run).rejects.toThrow('a statement after the commit of its transaction');
      expect(await get('eight')).toBeUndefined();
    }
    expect(await get('seven')).toBe(7);
  });

  it('runs deferred statements in order, in front of the next statement, which sees them', async () => {
    const seen = await db.transactionFused([echo('a', [])], async (tx) => {
      await defer(tx, put('d1', 1).text, put('d1', 1).params);
      await defer(tx, `UPDATE fused_spec SET v = v + 10 WHERE k = $1`, ['d1']);
      const rows = await query<{ v: number }>(tx, `SELECT v FROM fused_spec WHERE k = $1`, ['d1']);
      await defer(tx, `UPDATE fused_spec SET v = v * 2 WHERE k = $1`, ['d1']);
      await defer(tx, put('d2', 2).text, put('d2', 2).params);
      return rows[0].v;
    });
    expect(seen).toBe(11);
    expect([await get('d1'), await get('d2')]).toEqual([22, 2]);
  });

  it('sends deferred statements with the statement that takes the commit along', async () => {
    await db.transactionFused([echo('a', [])], async (tx) => {
      await defer(tx, put('d3', 3).text, put('d3', 3).params);
      await defer(tx, `UPDATE fused_spec SET v = v + 1 WHERE k = $1`, ['d3']);
      await queryAndCommit(tx, `UPDATE fused_spec SET v = v * 5 WHERE k = $1`, ['d3']);
    });
    expect(await get('d3')).toBe(20);
  });

  it('keeps the order of statements sent without waiting for each other', async () => {
    await db.transactionFused([echo('a', [])], async (tx) => {
      await defer(tx, put('d4', 1).text, put('d4', 1).params);
      const ops = [2, 3, 4].map((n) =>
        query(tx, `UPDATE fused_spec SET v = v * 10 + $2 WHERE k = $1`, ['d4', n]),
      );
      await Promise.all(ops);
    });
    expect(await get('d4')).toBe(1234);
  });

  it('sends a statement deferred after a statement not yet answered behind that statement', async () => {
    await db.transactionFused([echo('a', [])], async (tx) => {
      await defer(tx, put('d13', 1).text, put('d13', 1).params);
      const second = query(tx, `UPDATE fused_spec SET v = v * 10 + 2 WHERE k = $1`, ['d13']);
      await defer(tx, `UPDATE fused_spec SET v = v * 10 + 3 WHERE k = $1`, ['d13']);
      await second;
    });
    expect(await get('d13')).toBe(123);
  });

  it('fails the whole transaction when a deferred statement fails, wherever it is sent', async () => {
    // Sent in front of a later statement: that statement's call fails with the deferred one's error.
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await query(tx, put('d5', 5).text, put('d5', 5).params);
        await defer(tx, put('one', 1).text, put('one', 1).params); // a duplicate key
        await query(tx, put('d6', 6).text, put('d6', 6).params);
      }),
    ).rejects.toThrow(/duplicate key/);
    // Sent with the COMMIT at the end.
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await query(tx, put('d7', 7).text, put('d7', 7).params);
        await defer(tx, put('one', 1).text, put('one', 1).params);
      }),
    ).rejects.toThrow(/duplicate key/);
    // Sent with the closing statement.
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await defer(tx, put('one', 1).text, put('one', 1).params);
        await queryAndCommit(tx, put('d8', 8).text, put('d8', 8).params);
      }),
    ).rejects.toThrow(/duplicate key/);
    expect([await get('d5'), await get('d6'), await get('d7'), await get('d8')]).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    await db.transactionFused([echo('a', [])], (tx) => defer(tx, put('d9', 9).text, put('d9', 9).params));
    expect(await get('d9')).toBe(9);
  });

  it('sends a statement with a NUL in a parameter at once, failing as its own statement', async () => {
    // The server refuses NUL in text; in a simple query's text it would break the connection's stream.
    let failedAtDefer = false;
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await defer(tx, put('d14', 14).text, put('d14', 14).params);
        await defer(tx, put('nul\u0000key', 1).text, put('nul\u0000key', 1).params).catch((err: unknown) => {
          failedAtDefer = true;
          throw err;
        });
      }),
    ).rejects.toThrow(/0x00|invalid byte sequence/);
    expect(failedAtDefer).toBe(true);
    expect(await get('d14')).toBeUndefined();
    // Also as the statement that takes the commit along: it fails alone, the work before it undone.
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await defer(tx, put('d16', 16).text, put('d16', 16).params);
        await queryAndCommit(tx, put('nul\u0000key', 1).text, put('nul\u0000key', 1).params);
      }),
    ).rejects.toThrow(/0x00|invalid byte sequence/);
    expect(await get('d16')).toBeUndefined();
    await db.transactionFused([echo('a', [])], (tx) => defer(tx, put('d15', 15).text, put('d15', 15).params));
    expect(await get('d15')).toBe(15);
  });

  it('sends nothing deferred when the work fails before the commit', async () => {
    await expect(
      db.transactionFused([echo('a', [])], async (tx) => {
        await defer(tx, put('d10', 10).text, put('d10', 10).params);
        throw new Error('the work failed');
      }),
    ).rejects.toThrow('the work failed');
    expect(await get('d10')).toBeUndefined();
  });

  it('refuses a deferred statement after the commit (a Postgres server only)', async () => {
    const run = db.transactionFused([echo('a', [])], async (tx) => {
      await queryAndCommit(tx, put('d11', 11).text, put('d11', 11).params);
      await defer(tx, put('d12', 12).text, put('d12', 12).params);
    });
    if (db.embedded) {
      await run;
    } else {
      await expect(run).rejects.toThrow('a statement after the commit of its transaction');
      expect(await get('d12')).toBeUndefined();
    }
    expect(await get('d11')).toBe(11);
  });

  it.each([
    ["it's", ['a "quoted" one', 'back\\slash', "it's", '{braces,comma}', '']],
    ["back\\slash \\' $1 $$ ${x}", ['NULL', 'null', 'ünïcødé ✓']],
  ])('passes %j and its list through unchanged', async (text, list) => {
    await expect(
      db.transactionFused([echo(text, list)], (_tx, [first]) => Promise.resolve(first)),
    ).resolves.toEqual({
      t: text,
      l: list,
    });
  });
});

import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, sql, Tx } from 'src/database/database.service';
import { HistoryService } from 'src/sessions/history.service';
import { startTestApp, TestApp } from '../support/test-app';

/**
 * The group commit behind every session write (HistoryService.inSession), on the real database
 * inside the real app: writes that arrive while a batch commits share the next transaction.
 */
describe('group commit of session writes', () => {
  let t: TestApp;
  let history: HistoryService;
  let db: DatabaseService;
  let n = 0;

  beforeAll(async () => {
    // Small limits, so that a test can fill a batch and the waiting line.
    // One lane, so that every session's writes meet in the same batches on both databases.
    t = await startTestApp({ env: { COMMIT_BATCH_MAX: '8', COMMIT_PENDING_MAX: '20', COMMIT_LANES: '1' } });
    history = t.app.get(HistoryService);
    db = t.app.get(DatabaseService);
  });

  afterAll(() => t.close());

  async function newSession(): Promise<string> {
    const sessionId = `gc-${++n}`;
    await db.transaction((tx) =>
      sql(tx).query(
        `INSERT INTO session (id, owner, metadata, limits, created_at) VALUES ($1, 'open', '{}', '{}', now())`,
        [sessionId],
      ),
    );
    return sessionId;
  }

  const txid = async (tx: Tx) =>
    (await sql(tx).query<Array<{ id: string }>>('SELECT txid_current()::text AS id'))[0].id;

  /** A write that records `{ n }` and says which transaction it ran in (made as the session's owner with `owner`). */
  const write = (sessionId: string, i: number, owner = false) =>
    history.inSession(
      sessionId,
      async (tx) => {
        await history.record(tx, sessionId, 'async.event.broadcast', { event: 'n', data: i, woke: [] });
        return { i, tx: await txid(tx) };
      },
      { owner },
    );

  const recorded = async (sessionId: string) =>
    (await history.page(sessionId, 0, 1000)).map((r) => ({ seq: r.seq, n: r.payload.data as number }));

  /** A write that holds its batch open until `open()`: a slow database, as far as the writes behind it can tell. */
  function slowWrite(sessionId: string) {
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const done = history.inSession(sessionId, async (tx) => {
      await txid(tx);
      entered();
      await gate;
      return 'slow';
    });
    return { done, inside, open };
  }

  it('commits the writes that wait behind a batch together, in arrival order, and settles them in that order', async () => {
    const sessionId = await newSession();
    const slow = slowWrite(sessionId);
    await slow.inside;
    const settled: number[] = [];
    const writes = Array.from({ length: 16 }, (_, i) =>
      write(sessionId, i).then((r) => {
        settled.push(i);
        return r;
      }),
    );
    slow.open();
    await slow.done;
    const results = await Promise.all(writes);

    expect(settled).toEqual(results.map((r) => r.i));
    expect(await recorded(sessionId)).toEqual(results.map((r, i) => ({ seq: i + 1, n: r.i })));
    // 16 writes behind the slow one, at most 8 a batch: two transactions.
    const transactions = new Set(results.map((r) => r.tx));
    expect(transactions.size).toBe(2);
    expect(results.slice(0, 8).every((r) => r.tx === results[0].tx)).toBe(true);
  });

  it('commits a write alone at once when nothing else is waiting', async () => {
    const sessionId = await newSession();
    const first = await write(sessionId, 1);
    const second = await write(sessionId, 2);
    expect(first.tx).not.toBe(second.tx);
    expect(await recorded(sessionId)).toEqual([
      { seq: 1, n: 1 },
      { seq: 2, n: 2 },
    ]);
  });

  it('fails only the write that failed: the others of its batch commit, in order, without its changes', async () => {
    const sessionId = await newSession();
    const slow = slowWrite(sessionId);
    await slow.inside;
    const outcomes = Array.from({ length: 8 }, (_, i) => {
      if (i === 2) {
        // Writes, then throws: its record must not survive.
        return history.inSession(sessionId, async (tx) => {
          await history.record(tx, sessionId, 'async.event.broadcast', { event: 'n', data: 99, woke: [] });
          throw new RpcError('conflict', 'write 2 refuses');
        });
      }
      if (i === 5) {
        // A failing statement aborts the whole transaction in Postgres; the others still commit.
        return history.inSession(sessionId, (tx) => sql(tx).query('SELECT 1 / 0'));
      }
      return write(sessionId, i);
    }).map((p) =>
      p.then(
        (value: unknown) => ({ ok: value }),
        (err: unknown) => ({ err }),
      ),
    );
    slow.open();
    await slow.done;
    const settled = await Promise.all(outcomes);

    expect(settled[2]).toEqual({ err: new RpcError('conflict', 'write 2 refuses') });
    expect(String((settled[5] as { err: unknown }).err)).toMatch(/division by zero/);
    const good = [0, 1, 3, 4, 6, 7];
    expect(good.map((i) => (settled[i] as { ok: { i: number } }).ok.i)).toEqual(good);
    expect(await recorded(sessionId)).toEqual(good.map((i, k) => ({ seq: k + 1, n: i })));
  });

  it('settles a write only once its commit is visible to every other connection', async () => {
    const sessionId = await newSession();
    const seen = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        write(sessionId, i).then(async () => (await recorded(sessionId)).some((r) => r.n === i)),
      ),
    );
    expect(seen).toEqual(Array(20).fill(true));
  });

  it('refuses new writes with unavailable while too many wait, and loses none it accepted', async () => {
    const sessionId = await newSession();
    const slow = slowWrite(sessionId);
    await slow.inside;
    const outcomes = Array.from({ length: 25 }, (_, i) =>
      write(sessionId, i).then(
        () => 'committed',
        (err: unknown) => (err instanceof RpcError ? err.reason : String(err)),
      ),
    );
    expect(history.pendingWrites(sessionId)).toBe(20);
    slow.open();
    await slow.done;
    expect(await Promise.all(outcomes)).toEqual([
      ...Array(20).fill('committed'),
      ...Array(5).fill('unavailable'),
    ]);
    expect((await recorded(sessionId)).map((r) => r.n)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // Once the line is short again, writes are taken again.
    await expect(write(sessionId, 100)).resolves.toMatchObject({ i: 100 });
  });

  it("refuses an owner's write when the lease fence does, and still commits a client's write of the same batch", async () => {
    // A session made by hand has no lease: nobody owns it, so a write made as its owner is fenced out.
    const sessionId = await newSession();
    const slow = slowWrite(sessionId);
    await slow.inside;
    const asOwner = write(sessionId, 1, true).catch((err: RpcError) => err.reason);
    const asClient = write(sessionId, 2);
    slow.open();
    await slow.done;
    expect(await asOwner).toBe('unavailable');
    await expect(asClient).resolves.toMatchObject({ i: 2 });
    expect(await recorded(sessionId)).toEqual([{ seq: 1, n: 2 }]);
  });

  it("fences a client's write that asks for it (requireFence), and when refused commits the batch again without it", async () => {
    const sessionId = await newSession(); // no lease: nobody owns it, the fence is refused
    const slow = slowWrite(sessionId);
    await slow.inside;
    let runs = 0;
    const fenced = history
      .inSession(sessionId, async (tx) => {
        runs += 1;
        await history.record(tx, sessionId, 'async.event.broadcast', { event: 'n', data: 1, woke: [] });
        history.requireFence(tx, sessionId);
        return 'fenced';
      })
      .catch((err: RpcError) => err.reason);
    const plain = write(sessionId, 2);
    slow.open();
    await slow.done;
    expect(await fenced).toBe('unavailable');
    await expect(plain).resolves.toMatchObject({ i: 2 });
    expect(await recorded(sessionId)).toEqual([{ seq: 1, n: 2 }]);
    expect(runs).toBe(2); // refused once with its batch, then alone: the fence was in doubt
  });

  it('tells a write whether it runs in a batch of the session, and gives it the session row as locked', async () => {
    const sessionId = await newSession();
    const other = await newSession();
    const seen = await history.inSession(sessionId, (tx) =>
      Promise.resolve({
        mine: history.inBatch(tx, sessionId),
        other: history.inBatch(tx, other),
        locked: history.lockedSession(tx, sessionId)?.sessionId,
      }),
    );
    expect(seen).toEqual({ mine: true, other: false, locked: sessionId });
    await expect(db.transaction((tx) => Promise.resolve(history.inBatch(tx, sessionId)))).resolves.toBe(
      false,
    );
  });

  describe('writes that share a statement (inSessionMerged)', () => {
    /** A statement that echoes the values; it fails when one of them is 13. */
    const echo = (args: number[]) => ({
      text: `SELECT (x.v::int / CASE WHEN x.v::int = 13 THEN 0 ELSE 1 END) AS v FROM jsonb_array_elements_text($1::jsonb) AS x(v)`,
      params: [JSON.stringify(args)],
      result: (rows: unknown[]) => (rows as Array<{ v: number }>).map((r) => r.v),
    });

    /**
     * A mergeable write for `agentId`: its statement echoes the args (the first round sends it with
     * the batch's lock), and each write records what it got. `calls` gets the args of each merged
     * statement.
     */
    function mergeable(
      sessionId: string,
      agentId: string,
      n: number,
      calls: number[][],
      opts: { failThen?: boolean; agentIds?: string[] } = {},
    ) {
      const record = async (tx: Tx, v: number) => {
        if (opts.failThen) {
          throw new RpcError('conflict', `write ${n} refuses`);
        }
        await history.record(tx, sessionId, 'async.event.broadcast', { event: agentId, data: v, woke: [] });
        return v;
      };
      return history.inSessionMerged(
        sessionId,
        async (tx) => record(tx, echo([n]).result(await sql(tx).query(echo([n]).text, echo([n]).params))[0]),
        {
          kind: 'echo',
          agentId,
          agentIds: opts.agentIds,
          args: n,
          statement: (args: number[]) => {
            calls.push(args);
            return echo(args);
          },
          then: (tx: Tx, v: number) => record(tx, v),
        },
      );
    }

    const events = async (sessionId: string) =>
      (await history.page(sessionId, 0, 1000)).map(
        (r) => `${String(r.payload.event)}:${String(r.payload.data)}`,
      );

    it('runs the writes of a kind to different agents as one statement, never passing an earlier write of the same agent or a write that cannot merge', async () => {
      const sessionId = await newSession();
      const slow = slowWrite(sessionId);
      await slow.inside;
      const calls: number[][] = [];
      const writes = [
        mergeable(sessionId, 'a', 1, calls),
        mergeable(sessionId, 'b', 2, calls),
        mergeable(sessionId, 'a', 3, calls), // a's second: after a's first, so in the next statement
        mergeable(sessionId, 'c', 4, calls),
        write(sessionId, 5), // cannot merge: a barrier
        mergeable(sessionId, 'd', 6, calls),
      ];
      slow.open();
      await slow.done;
      await expect(Promise.all(writes)).resolves.toEqual([1, 2, 3, 4, { i: 5, tx: expect.any(String) }, 6]);
      expect(calls).toEqual([[1, 2, 4], [3], [6]]);
      expect(await events(sessionId)).toEqual(['a:1', 'b:2', 'c:4', 'a:3', 'n:5', 'd:6']);
    });

    it('keeps a write to several agents (agentIds) before the later writes of any of them', async () => {
      const sessionId = await newSession();
      const slow = slowWrite(sessionId);
      await slow.inside;
      const calls: number[][] = [];
      const writes = [
        mergeable(sessionId, 'a', 1, calls),
        mergeable(sessionId, 'b', 2, calls, { agentIds: ['b', 'c'] }),
        mergeable(sessionId, 'c', 3, calls), // after the write to b and c: in the next statement
        mergeable(sessionId, 'd', 4, calls),
      ];
      slow.open();
      await slow.done;
      await expect(Promise.all(writes)).resolves.toEqual([1, 2, 3, 4]);
      expect(calls).toEqual([[1, 2, 4], [3]]);
      expect(await events(sessionId)).toEqual(['a:1', 'b:2', 'd:4', 'c:3']);
    });

    it('runs the writes of a kind of several sessions as one statement, each session in its own order', async () => {
      const [s1, s2] = [await newSession(), await newSession()];
      const slow = slowWrite(s1);
      await slow.inside;
      const calls: number[][] = [];
      const writes = [
        mergeable(s1, 'a', 1, calls),
        mergeable(s2, 'a', 5, calls), // the same agent id in another session: merges
        mergeable(s1, 'b', 2, calls),
        write(s1, 3), // a barrier in s1 only
        mergeable(s2, 'a', 6, calls), // a's second in s2: the next statement
        mergeable(s1, 'c', 4, calls),
      ];
      slow.open();
      await slow.done;
      await expect(Promise.all(writes)).resolves.toEqual([1, 5, 2, { i: 3, tx: expect.any(String) }, 6, 4]);
      expect(calls).toEqual([[1, 2, 5], [6], [4]]);
      expect(await events(s1)).toEqual(['a:1', 'b:2', 'n:3', 'c:4']);
      expect(await events(s2)).toEqual(['a:5', 'a:6']);
    });

    it('sends the first round’s statements with the lock and the later rounds’ on their own', async () => {
      const [s1, s2] = [await newSession(), await newSession()];
      const slow = slowWrite(s1);
      await slow.inside;
      const built: number[][] = [];
      const writes = [
        mergeable(s1, 'a', 1, built),
        mergeable(s2, 'a', 2, built),
        mergeable(s1, 'a', 3, built), // a's second in s1: the second round
        mergeable(s2, 'b', 4, built),
      ];
      slow.open();
      await slow.done;
      await expect(Promise.all(writes)).resolves.toEqual([1, 2, 3, 4]);
      expect(built).toEqual([[1, 2, 4], [3]]);
      expect(await events(s1)).toEqual(['a:1', 'a:3']);
      expect(await events(s2)).toEqual(['a:2', 'b:4']);
    });

    it('fails only its own write when a statement sent with the lock fails', async () => {
      const [s1, s2] = [await newSession(), await newSession()];
      const slow = slowWrite(s1);
      await slow.inside;
      const built: number[][] = [];
      const writes = [
        mergeable(s1, 'a', 1, built),
        mergeable(s2, 'a', 13, built),
        mergeable(s2, 'b', 3, built),
      ].map((p) => p.catch((err: Error) => (/division by zero/.test(err.message) ? 'failed' : err.message)));
      slow.open();
      await slow.done;
      expect(await Promise.all(writes)).toEqual([1, 'failed', 3]);
      expect(built[0]).toEqual([1, 13, 3]); // the merged attempt; then write by write
      expect(await events(s1)).toEqual(['a:1']);
      expect(await events(s2)).toEqual(['b:3']);
    });

    it('runs the batch again write by write when one write fails, so that only that write fails', async () => {
      const sessionId = await newSession();
      const slow = slowWrite(sessionId);
      await slow.inside;
      const calls: number[][] = [];
      const writes = [
        mergeable(sessionId, 'a', 1, calls),
        mergeable(sessionId, 'b', 2, calls, { failThen: true }),
        mergeable(sessionId, 'c', 3, calls),
      ].map((p) => p.catch((err: RpcError) => err.message));
      slow.open();
      await slow.done;
      expect(await Promise.all(writes)).toEqual([1, 'write 2 refuses', 3]);
      expect(calls).toEqual([[1, 2, 3]]); // the merged attempt; the second run went write by write
      expect(await events(sessionId)).toEqual(['a:1', 'c:3']);
    });
  });

  it("commits several sessions' writes in one transaction, each in its own history, and fails only a missing session's", async () => {
    const [a, b] = [await newSession(), await newSession()];
    const slow = slowWrite(a);
    await slow.inside;
    const writes = [write(a, 1), write(b, 2), write('gc-nowhere', 3), write(a, 4), write(b, 5)].map((p) =>
      p.then(
        (r) => r.tx,
        (err: RpcError) => err.reason,
      ),
    );
    slow.open();
    await slow.done;
    const [ta1, tb2, missing, ta4, tb5] = await Promise.all(writes);
    expect(missing).toBe('session_not_found');
    expect(new Set([ta1, tb2, ta4, tb5]).size).toBe(1);
    expect(await recorded(a)).toEqual([
      { seq: 1, n: 1 },
      { seq: 2, n: 4 },
    ]);
    expect(await recorded(b)).toEqual([
      { seq: 1, n: 2 },
      { seq: 2, n: 5 },
    ]);
  });

  it('fails every write of a batch for a session that does not exist', async () => {
    const writes = [write('gc-missing', 1), write('gc-missing', 2)];
    for (const w of writes) {
      await expect(w).rejects.toMatchObject({ reason: 'session_not_found' });
    }
  });
});

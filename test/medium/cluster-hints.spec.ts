import { firstValueFrom, Observable, take, toArray } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { NodeIdentity } from 'src/cluster/node-identity';
import { loadConfig } from 'src/config/app-config';
import { DatabaseService } from 'src/database/database.service';
import { openTestDatabase } from '../support/test-app';

describe(ClusterHints.name, () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;
  let databaseUrl: string | undefined;
  const started: ClusterHints[] = [];

  beforeAll(async () => {
    ({ db, databaseUrl, close: closeDb } = await openTestDatabase());
  });

  afterAll(async () => {
    await Promise.all(started.map((h) => h.onApplicationShutdown()));
    await closeDb();
  });

  /** A node's hints on the suite's database. */
  async function node(id: string, url: string | undefined): Promise<ClusterHints> {
    const config = loadConfig({ NODE_ID: id, DATABASE_URL: url });
    const sut = new ClusterHints(db, new NodeIdentity(config), config);
    await sut.onModuleInit();
    started.push(sut);
    return sut;
  }

  const next = <T>(source: Observable<T>, n = 1) => firstValueFrom(source.pipe(take(n), toArray()));

  if (!process.env.TEST_DATABASE_URL) {
    it('sends nothing on the embedded database: one process, delivery in-process', async () => {
      const sut = await node('alone', undefined);
      expect(sut.enabled).toBe(false);
      await db.transaction(async (tx) => {
        sut.add(tx, 's', { work: ['a'] });
        await sut.flush(tx);
      });
    });
    return;
  }

  it('delivers one hint per committed transaction to the other nodes, merged, and nothing for a rollback', async () => {
    const x = await node('x', databaseUrl);
    const y = await node('y', databaseUrl);
    const received = next(y.remote$);
    const own = next(x.remote$);
    await db
      .transaction(async (tx) => {
        x.add(tx, 'rolled-back', { work: ['a'] });
        await x.flush(tx);
        throw new Error('roll back');
      })
      .catch(() => undefined);
    await db.transaction(async (tx) => {
      x.add(tx, 's1', { seq: [4, 4], work: ['a'] });
      x.add(tx, 's1', { seq: [5, 5], work: ['a', 'b'], abort: [{ agentId: 'c' }] });
      await x.flush(tx);
    });
    await expect(received).resolves.toEqual([
      { sessionId: 's1', seq: [4, 5], work: ['a', 'b'], abort: [{ agentId: 'c' }] },
    ]);
    // The sender does not hear itself: it delivered in-process. Its next hint is from another node.
    await db.transaction(async (tx) => {
      y.add(tx, 's2', { timers: true });
      await y.flush(tx);
    });
    await expect(own).resolves.toEqual([{ sessionId: 's2', timers: true }]);
  });

  it('sends a streamed delta too big for one NOTIFY as consecutive pieces', async () => {
    const x = await node('x2', databaseUrl);
    const y = await node('y2', databaseUrl);
    const delta = 'ß'.repeat(10_000) + '\n"done"';
    const pieces = next(y.ephemeral$, 3);
    await x.sendEphemeral({ sessionId: 's', type: 'async.task.output', payload: { taskId: 't', delta } });
    const got = await pieces;
    expect(got.map((p) => p.payload.delta).join('')).toBe(delta);
    expect(got.every((p) => p.payload.taskId === 't' && p.type === 'async.task.output')).toBe(true);
  });
});

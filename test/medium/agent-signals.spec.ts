import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { NodeIdentity } from 'src/cluster/node-identity';
import { loadConfig } from 'src/config/app-config';
import { DatabaseService } from 'src/database/database.service';
import { AgentSignal, AgentSignals, SIGNALS_PER_TURN } from 'src/mailbox/agent-signals';
import { openTestDatabase } from '../support/test-app';

describe(AgentSignals.name, () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;
  let sut: AgentSignals;
  const seen: AgentSignal[] = [];

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
    const config = loadConfig({});
    sut = new AgentSignals(db, new ClusterHints(db, new NodeIdentity(config), config));
    sut.signals$.subscribe((s) => seen.push(s));
  });

  beforeEach(() => (seen.length = 0));

  afterAll(() => closeDb());

  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it('gives work signals only once the transaction commits, none when it rolls back', async () => {
    await db
      .transaction((tx) => {
        sut.workAfterCommit(tx, 's', ['a', 'b']);
        expect(seen).toEqual([]);
        return Promise.reject(new Error('roll back'));
      })
      .catch(() => undefined);
    await turn();
    expect(seen).toEqual([]);
    await db.transaction((tx) => Promise.resolve(sut.workAfterCommit(tx, 's', ['a', 'b'])));
    expect(seen).toEqual([
      { sessionId: 's', agentId: 'a', type: 'work' },
      { sessionId: 's', agentId: 'b', type: 'work' },
    ]);
  });

  it('gives many signals a turn at a time, so the commit’s answer need not wait for them all; none is lost', async () => {
    const agentIds = Array.from({ length: SIGNALS_PER_TURN * 2 + 1 }, (_, i) => `a${i}`);
    let answeredWith = -1;
    await db
      .transaction((tx) => Promise.resolve(sut.workAfterCommit(tx, 's', agentIds)))
      .then(() => {
        answeredWith = seen.length;
      });
    expect(answeredWith).toBe(SIGNALS_PER_TURN);
    await turn();
    await turn();
    await turn();
    expect(seen.map((s) => s.agentId)).toEqual(agentIds);
  });
});

import { Subject } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { EphemeralPush, SessionHint } from 'src/cluster/cluster.types';
import { DatabaseService, Tx } from 'src/database/database.service';
import { HistoryRepository } from './history.repository';
import { NotificationBus } from './notification-bus';
import { PushFanout } from './push-fanout.service';
import { HistoryRecord } from './session.types';

const record = (seq: number, sessionId = 's'): HistoryRecord => ({
  sessionId,
  seq,
  at: '2026-12-01T00:00:00.000Z',
  type: 'async.task.started',
  payload: { n: seq },
});

describe(PushFanout.name, () => {
  /** The committed history, as another node's commits leave it. */
  let committed: HistoryRecord[];
  let pushed: number[];
  let remote: Subject<SessionHint>;
  let remoteEphemeral: Subject<EphemeralPush>;
  let sent: EphemeralPush[];
  let ephemeral: EphemeralPush[];
  let bus: NotificationBus;
  let sut: PushFanout;

  beforeEach(() => {
    committed = [];
    pushed = [];
    remote = new Subject();
    remoteEphemeral = new Subject();
    sent = [];
    ephemeral = [];
    const db = { read: (fn: (tx: Tx) => Promise<unknown>) => fn({} as Tx) } as unknown as DatabaseService;
    const history = {
      page: (_tx: Tx, sessionId: string, after: number, limit: number) =>
        Promise.resolve(committed.filter((r) => r.sessionId === sessionId && r.seq > after).slice(0, limit)),
    } as unknown as HistoryRepository;
    bus = new NotificationBus();
    bus.records$.subscribe((r) => pushed.push(r.seq));
    bus.ephemeral$.subscribe((p) => ephemeral.push(p));
    const hints = {
      remote$: remote,
      ephemeral$: remoteEphemeral,
      reconnected$: new Subject<void>(),
      sendEphemeral: (p: EphemeralPush) => Promise.resolve(void sent.push(p)),
    } as unknown as ClusterHints;
    sut = new PushFanout(db, history, bus, hints);
    sut.onModuleInit();
  });

  afterEach(() => sut.onModuleDestroy());

  const commit = (...seqs: number[]) => committed.push(...seqs.map((n) => record(n)));
  const settled = () => new Promise((resolve) => setImmediate(resolve));

  it("pushes this node's records at once, in order", () => {
    commit(1, 2);
    sut.local(record(1));
    sut.local(record(2));
    expect(pushed).toEqual([1, 2]);
  });

  it("reads another node's records from the history when its hint arrives", async () => {
    commit(1, 2, 3);
    remote.next({ sessionId: 's', seq: [1, 3] });
    await settled();
    expect(pushed).toEqual([1, 2, 3]);
  });

  it('fills the gap before a local record whose predecessors another node committed', async () => {
    commit(1);
    sut.local(record(1));
    commit(2, 3, 4); // 2 and 3 by another node, its hint still on the way; 4 here
    sut.local(record(4));
    remote.next({ sessionId: 's', seq: [2, 3] }); // late: nothing left to push
    await settled();
    expect(pushed).toEqual([1, 2, 3, 4]);
  });

  it('pushes nothing twice, whichever way a record arrives', async () => {
    commit(1, 2);
    remote.next({ sessionId: 's', seq: [1, 2] });
    await settled();
    sut.local(record(2));
    remote.next({ sessionId: 's', seq: [1, 2] });
    await settled();
    expect(pushed).toEqual([1, 2]);
  });

  it('sends streamed text made here to the other nodes, and hands theirs to this node', () => {
    const mine = { sessionId: 's', type: 'async.task.output', payload: { delta: 'here' } };
    const theirs = { sessionId: 's', type: 'async.task.output', payload: { delta: 'there' } };
    bus.publishEphemeral(mine);
    remoteEphemeral.next(theirs);
    expect(ephemeral).toEqual([mine, theirs]);
    expect(sent).toEqual([mine]);
  });
});

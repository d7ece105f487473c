import { EphemeralPush } from 'src/cluster/cluster.types';
import { NotificationBus } from './notification-bus';
import { HistoryRecord } from './session.types';

const record = (seq: number, sessionId = 's'): HistoryRecord => ({
  sessionId,
  seq,
  at: '2026-12-01T00:00:00.000Z',
  type: 'async.tool.called',
  payload: { n: seq },
});

const output = (delta: string, sessionId = 's') => ({
  sessionId,
  at: '2026-12-01T00:00:01.000Z',
  type: 'async.task.output',
  payload: { delta },
});

describe(NotificationBus.name, () => {
  let sut: NotificationBus;
  /** Records (by seq) and ephemeral pushes (by delta, with their stamp), in the order they went out. */
  let out: string[];

  beforeEach(() => {
    sut = new NotificationBus();
    out = [];
    sut.records$.subscribe((r) => out.push(`record ${r.seq}`));
    sut.ephemeral$.subscribe((p: EphemeralPush) =>
      out.push(`${String(p.payload.delta)} @${String(p.payload.seq)}`),
    );
  });

  it('stamps an ephemeral push with the latest record of its session', () => {
    sut.publish(record(1));
    sut.publishEphemeral(output('a'));
    sut.publishEphemeral(output('b', 'other'));

    expect(out).toEqual(['record 1', 'a @1', 'b @0']);
  });

  it('holds the ephemeral pushes made while committed records are expected, until they are published', () => {
    sut.publish(record(1));
    sut.expect('s', 3);
    sut.publishEphemeral(output('a'));
    sut.publishEphemeral(output('b'));
    sut.publishEphemeral(output('elsewhere', 'other'));
    sut.publish(record(2));

    expect(out).toEqual(['record 1', 'elsewhere @0', 'record 2']);

    sut.publish(record(3));
    sut.publishEphemeral(output('c'));

    expect(out).toEqual(['record 1', 'elsewhere @0', 'record 2', 'record 3', 'a @3', 'b @3', 'c @3']);
  });

  it('expects nothing of records already published', () => {
    sut.publish(record(5));
    sut.expect('s', 4);
    sut.publishEphemeral(output('a'));

    expect(out).toEqual(['record 5', 'a @5']);
  });
});

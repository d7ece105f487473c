import type { MailroomClient } from '../src/client';
import type { HistoryEvent } from '../src/protocol/results';
import type { AnyPush, PushName } from '../src/protocol/pushes';
import { MailroomSession } from '../src/session';

/**
 * A hand-written stand-in for the connection: `session.subscribe` answers at once, `async.getHistory`
 * pages through `history`, and `gate` (when set) holds each history call until the test releases it.
 */
class FakeConnection {
  history: HistoryEvent[] = [];
  historyCalls: number[] = [];
  gate?: Promise<void>;
  errors: unknown[] = [];

  async call(method: string, params: { after?: number; limit?: number }): Promise<unknown> {
    if (method === 'session.subscribe' || method === 'session.start') {
      return { sessionId: 's' };
    }
    if (method === 'async.getHistory') {
      this.historyCalls.push(params.after ?? 0);
      await this.gate;
      const events = this.history.filter((e) => e.seq > (params.after ?? 0)).slice(0, params.limit ?? 500);
      return { events, nextAfter: events.length ? events[events.length - 1].seq : params.after };
    }
    throw new Error(`unexpected ${method}`);
  }

  reportError(err: unknown): void {
    this.errors.push(err);
  }
}

const record = (
  seq: number,
  type: PushName = 'async.tool.called',
  payload: Record<string, unknown> = {},
) => ({
  seq,
  at: `2026-01-01T00:00:${String(seq).padStart(2, '0')}.000Z`,
  type,
  payload: { agentId: 'a', taskId: 't1', ...payload },
});
const live = (e: HistoryEvent) => ({ ...e.payload, sessionId: 's', seq: e.seq, at: e.at });
const streamed = (seq: number, index: number, taskId = 't1') => ({
  sessionId: 's',
  at: 'x',
  seq,
  agentId: 'a',
  taskId,
  delta: `d${index}`,
  index,
});

function gate() {
  let open!: () => void;
  const closed = new Promise<void>((resolve) => (open = resolve));
  return { closed, open };
}

describe(MailroomSession.name, () => {
  let connection: FakeConnection;
  let sut: MailroomSession;
  let seen: AnyPush[];

  beforeEach(() => {
    connection = new FakeConnection();
    sut = new MailroomSession(connection as unknown as MailroomClient, 's');
    seen = [];
    sut.onAny((p) => seen.push(p));
  });

  const seqs = () =>
    seen.map((p) => (p.name === 'async.task.output' ? `${p.payload.seq}:${p.payload.index}` : p.payload.seq));

  it('replays the history, then the pushes held meanwhile, each once', async () => {
    connection.history = [record(1), record(2), record(3)];
    const held = gate();
    connection.gate = held.closed;
    const subscribed = sut.subscribe();
    // Pushes that arrive while the history is read: one it will return, one after it.
    sut.receive('async.tool.called', live(record(3)));
    connection.history.push(record(4));
    sut.receive('async.tool.called', live(record(4)));
    held.open();
    await subscribed;
    expect(seqs()).toEqual([1, 2, 3, 4]);
    sut.receive('async.tool.called', live(record(4)));
    sut.receive('async.tool.called', live(record(5)));
    expect(seqs()).toEqual([1, 2, 3, 4, 5]);
  });

  it('streamed text shares the seq of the record it follows and does not break the dedupe', async () => {
    connection.history = [record(1, 'async.task.started', { kind: 'task' })];
    await sut.subscribe();
    sut.receive('async.task.output', streamed(1, 0));
    sut.receive('async.task.output', streamed(1, 1));
    sut.receive('async.task.output', streamed(1, 1)); // the same piece twice
    sut.receive('async.tool.called', live(record(2)));
    sut.receive('async.task.output', streamed(2, 2));
    sut.receive('async.task.output', streamed(1, 3)); // older than what was delivered: out of order
    sut.receive('async.task.completed', live(record(3, 'async.task.completed', { result: { final: 'x' } })));
    expect(seqs()).toEqual([1, '1:0', '1:1', 2, '2:2', 3]);
  });

  it('a retried task streams its text again from index 0', async () => {
    connection.history = [record(1, 'async.task.started', { kind: 'task' })];
    await sut.subscribe();
    sut.receive('async.task.output', streamed(1, 0));
    sut.receive('async.task.output', streamed(1, 1));
    sut.receive('async.task.started', live(record(2, 'async.task.started', { kind: 'task' })));
    sut.receive('async.task.output', streamed(2, 0));
    expect(seqs()).toEqual([1, '1:0', '1:1', 2, '2:0']);
  });

  it('streamed text recorded in the history (no index) is an ordinary record', async () => {
    connection.history = [record(1), record(2, 'async.task.output', { delta: 'hi' })];
    await sut.subscribe();
    sut.receive('async.task.output', live(record(2, 'async.task.output', { delta: 'hi' })));
    sut.receive('async.task.output', live(record(3, 'async.task.output', { delta: 'there' })));
    expect(seen.map((p) => p.payload.seq)).toEqual([1, 2, 3]);
  });

  it('a live push past a gap fetches the missing records first', async () => {
    connection.history = [record(1)];
    await sut.subscribe();
    connection.history.push(record(2), record(3), record(4));
    sut.receive('async.tool.called', live(record(4)));
    await new Promise<void>((resolve) =>
      sut.on('async.tool.called', (p) => (p.seq === 4 ? resolve() : undefined)),
    );
    expect(seqs()).toEqual([1, 2, 3, 4]);
    expect(connection.historyCalls).toEqual([0, 1]);
  });

  it('subscribe({ after }) starts past the records the caller already has', async () => {
    connection.history = [record(1), record(2), record(3)];
    await sut.subscribe({ after: 2 });
    expect(seqs()).toEqual([3]);
  });

  it('waitForTask resolves for a task that ended before it was asked', async () => {
    connection.history = [
      record(1, 'async.task.failed', { error: { code: 'limit_exceeded', message: 'm' }, errorCount: 1 }),
    ];
    await sut.subscribe();
    await expect(sut.waitForTask('t1')).resolves.toMatchObject({ seq: 1, error: { code: 'limit_exceeded' } });
  });

  it('a handler that throws is reported and the others still run', async () => {
    sut.on('async.tool.called', () => {
      throw new Error('handler bug');
    });
    connection.history = [record(1), record(2)];
    await sut.subscribe();
    expect(seqs()).toEqual([1, 2]);
    expect(connection.errors).toHaveLength(2);
  });
});

import { HistoryRecord, NotificationType } from './session.types';
import { WorkTimeline } from './work-timeline';

let seq = 0;
const record = (type: NotificationType, at: number, payload: Record<string, unknown>): HistoryRecord => ({
  sessionId: 's1',
  seq: ++seq,
  at: new Date(at).toISOString(),
  type,
  payload,
});
const changed = (at: number, agentId: string, previous: string | null, state: string, reason: string) =>
  record('async.agent.stateChanged', at, { agentId, previous, state, reason });

describe(WorkTimeline.name, () => {
  let sut: WorkTimeline;

  beforeEach(() => {
    sut = new WorkTimeline();
  });

  it('reports a created agent once, not its later state changes', () => {
    expect(sut.observe(changed(0, 'a', null, 'idle', 'created'))).toEqual([
      { type: 'agentCreated', sessionId: 's1', agentId: 'a', state: 'idle' },
    ]);
    expect(sut.observe(changed(1, 'a', 'idle', 'active', 'task'))).toEqual([]);
  });

  it('gives a task its kind and its duration from the two records', () => {
    sut.observe(record('async.task.started', 1_000, { agentId: 'a', taskId: 't1', kind: 'mailbox_message' }));
    expect(
      sut.observe(
        record('async.task.completed', 1_250, {
          agentId: 'a',
          taskId: 't1',
          usage: { promptTokens: 7, completionTokens: 3 },
        }),
      ),
    ).toEqual([
      {
        type: 'taskEnded',
        sessionId: 's1',
        agentId: 'a',
        taskId: 't1',
        kind: 'mailbox_message',
        outcome: 'completed',
        durationMs: 250,
        tokens: 10,
      },
    ]);
  });

  it('reports a failure it did not see start with its code, kind unknown and no duration', () => {
    expect(
      sut.observe(
        record('async.task.failed', 5, {
          agentId: 'a',
          taskId: 't9',
          error: { code: 'cancelled', message: 'x' },
        }),
      ),
    ).toEqual([
      {
        type: 'taskEnded',
        sessionId: 's1',
        agentId: 'a',
        taskId: 't9',
        kind: 'unknown',
        outcome: 'failed',
        code: 'cancelled',
      },
    ]);
  });

  it('measures a wake for arriving work up to the start of the next task', () => {
    sut.observe(changed(100, 'm', 'sleeping', 'idle', 'event:alert'));
    sut.observe(changed(130, 'm', 'idle', 'active', 'event'));
    const out = sut.observe(record('async.task.started', 140, { agentId: 'm', taskId: 't2', kind: 'event' }));
    expect(out).toContainEqual({
      type: 'wokeToWork',
      sessionId: 's1',
      agentId: 'm',
      reason: 'event',
      latencyMs: 40,
    });
    // Measured once: the next task of the same agent is not a wake-up.
    const next = sut.observe(
      record('async.task.started', 500, { agentId: 'm', taskId: 't3', kind: 'event' }),
    );
    expect(next.map((o) => o.type)).toEqual(['taskStarted']);
  });

  it('does not measure wakes without work (timer, wakeAgent) or wakes that led elsewhere', () => {
    sut.observe(changed(0, 'm', 'sleeping', 'idle', 'timer'));
    expect(
      sut.observe(record('async.task.started', 9_000, { agentId: 'm', taskId: 'a', kind: 'task' })),
    ).toHaveLength(1);
    sut.observe(changed(10_000, 'm', 'sleeping', 'idle', 'mail_received'));
    sut.observe(changed(10_001, 'm', 'idle', 'stopped', 'stopped'));
    expect(
      sut.observe(record('async.task.started', 20_000, { agentId: 'm', taskId: 'b', kind: 'task' })),
    ).toHaveLength(1);
  });
});

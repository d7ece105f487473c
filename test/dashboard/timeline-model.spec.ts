import { agentsAt } from '../../dashboard/src/agents-model';
import type { HistoryRecord } from '../../dashboard/src/protocol';
import { Timeline, type WaitEntry } from '../../dashboard/src/timeline-model';

/** History records as the server writes them, numbered from seq 1, one second apart. */
function history(...records: Array<[type: string, payload: Record<string, unknown>]>): HistoryRecord[] {
  return records.map(([type, payload], i) => ({
    seq: i + 1,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    type: `async.${type}`,
    payload,
  }));
}

const changed = (agentId: string, previous: string | null, state: string, reason: string) =>
  ['agent.stateChanged', { agentId, previous, state, reason }] as [string, Record<string, unknown>];

describe(Timeline.name, () => {
  const records = history(
    changed('writer', null, 'idle', 'created'),
    changed('reviewer', null, 'idle', 'created'),
    ['task.started', { agentId: 'writer', taskId: 't1', kind: 'mailbox_message' }],
    changed('writer', 'idle', 'active', 'mailbox_message'),
    changed('writer', 'active', 'waiting', 'waiting_on:reviewer'),
    ['task.output', { agentId: 'reviewer', taskId: 't2', delta: 'Approved' }],
    changed('writer', 'waiting', 'active', 'reply_received'),
    [
      'tool.called',
      {
        agentId: 'reviewer',
        taskId: 't2',
        tool: 'send_mail_with_switch',
        args: { to: 'writer' },
        result: { error: "refused: waiting on 'writer' would close a cycle" },
      },
    ],
    ['task.completed', { agentId: 'writer', taskId: 't1', result: { final: 'done' }, usage: null }],
  );

  it('draws a send-and-switch wait from its state changes, and a refused one from the tool result', () => {
    const sut = new Timeline();
    records.forEach((r) => sut.add(r));

    expect(sut.waits).toEqual<WaitEntry[]>([
      expect.objectContaining({ agentId: 'writer', on: 'reviewer', seq: 5, endSeq: 7, outcome: 'answered' }),
      expect.objectContaining({ agentId: 'reviewer', on: 'writer', seq: 8, endSeq: 8, outcome: 'refused' }),
    ]);
    expect(sut.toolCalls.get('t2')).toHaveLength(1);
    expect(sut.taskPhases.get('t1')).toBe('completed');
    // Streamed text is not a timeline entry.
    expect(sut.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 7, 8, 9]);
    expect(sut.countUpTo(6)).toBe(5);
  });

  it('takes each seq once, so history pages and pushes may overlap', () => {
    const sut = new Timeline();
    records.slice(0, 5).forEach((r) => sut.add(r));
    records.slice(2).forEach((r) => sut.add(r));

    expect(sut.entries.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 7, 8, 9]);
  });

  it('gives the agents’ states after any prefix of the history (replay)', () => {
    expect(agentsAt(records, 0).size).toBe(0);
    const midWait = agentsAt(records, 6);
    expect(midWait.get('writer')).toMatchObject({
      state: 'waiting',
      waitingOn: 'reviewer',
      currentTaskId: 't1',
    });
    expect(midWait.get('reviewer')).toMatchObject({ state: 'idle', queueSize: null });
    expect(agentsAt(records, 9).get('writer')).toMatchObject({
      state: 'active',
      waitingOn: null,
      currentTask: null,
    });
  });
});

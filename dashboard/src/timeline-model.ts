import type { AgentStateName, HistoryRecord, Mail, Usage, WorkKind } from './protocol';

interface Base {
  seq: number;
  at: string;
}

export interface WaitEntry extends Base {
  kind: 'wait';
  agentId: string;
  on: string;
  /** Set when the wait ended (or, for a refused one, at once). */
  endSeq: number | null;
  endAt: string | null;
  /** `waiting`, `refused`, or how it ended: `answered`, `timed out`, `aborted`… */
  outcome: string;
  message: string | null;
}

export type TimelineEntry =
  | (Base & { kind: 'task'; phase: 'started'; agentId: string; taskId: string; taskKind: WorkKind })
  | (Base & {
      kind: 'task';
      phase: 'completed';
      agentId: string;
      taskId: string;
      final: string;
      usage: Usage | null;
    })
  | (Base & { kind: 'task'; phase: 'failed'; agentId: string; taskId: string; error: string })
  | (Base & { kind: 'mail'; mail: Mail })
  | (Base & { kind: 'event'; event: string; woke: string[] })
  | (Base & {
      kind: 'state';
      agentId: string;
      state: AgentStateName;
      previous: AgentStateName | null;
      reason: string;
    })
  | (Base & { kind: 'tool'; agentId: string; taskId: string; tool: string; args: unknown; result: unknown })
  | WaitEntry;

export type EntryKind = TimelineEntry['kind'];
export const ENTRY_KINDS: EntryKind[] = ['task', 'mail', 'event', 'wait', 'state', 'tool'];

export interface ToolCall {
  seq: number;
  tool: string;
  args: unknown;
  result: unknown;
}

/** Reasons that end a send-and-switch wait (see docs/architecture.md, State). */
const WAIT_ENDS: Record<string, string> = {
  reply_received: 'answered',
  switch_timeout: 'timed out',
  switch_aborted: 'aborted',
  switch_failed: 'target failed',
  task_failed: 'task failed',
  task_cancelled: 'task cancelled',
  recovered: 'server restarted',
};

/**
 * A session's history turned into what the timeline draws, in `seq` order. Records are added once
 * each (a repeated or older `seq` is ignored), so history pages and live pushes can overlap.
 */
export class Timeline {
  readonly entries: TimelineEntry[] = [];
  readonly waits: WaitEntry[] = [];
  readonly toolCalls = new Map<string, ToolCall[]>();
  /** How far each task seen in the history has got. */
  readonly taskPhases = new Map<string, 'started' | 'completed' | 'failed'>();
  private readonly openWaits = new Map<string, WaitEntry>();
  lastSeq = 0;

  add(record: HistoryRecord): boolean {
    if (record.type === 'async.task.output' || record.seq <= this.lastSeq) {
      return false;
    }
    this.lastSeq = record.seq;
    const entry = this.entryFor(record);
    if (entry) {
      this.entries.push(entry);
      if (entry.kind === 'task') {
        this.taskPhases.set(entry.taskId, entry.phase);
      }
    }
    return true;
  }

  /** How many entries have `seq` ≤ the given one (entries are sorted by seq). */
  countUpTo(seq: number): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid].seq <= seq) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  private entryFor(record: HistoryRecord): TimelineEntry | null {
    const { seq, at } = record;
    const p = record.payload as Record<string, never>;
    switch (record.type) {
      case 'async.agent.stateChanged':
        return this.stateChanged(seq, at, p.agentId, p.state, p.previous, p.reason ?? '');
      case 'async.task.started':
        return {
          kind: 'task',
          phase: 'started',
          seq,
          at,
          agentId: p.agentId,
          taskId: p.taskId,
          taskKind: p.kind,
        };
      case 'async.task.completed':
        return {
          kind: 'task',
          phase: 'completed',
          seq,
          at,
          agentId: p.agentId,
          taskId: p.taskId,
          final: (p.result as { final?: string } | undefined)?.final ?? '',
          usage: p.usage ?? null,
        };
      case 'async.task.failed':
        return {
          kind: 'task',
          phase: 'failed',
          seq,
          at,
          agentId: p.agentId,
          taskId: p.taskId,
          error: (p.error as { message?: string } | undefined)?.message ?? 'failed',
        };
      case 'async.mail.sent':
        return { kind: 'mail', seq, at, mail: p.message };
      case 'async.event.broadcast':
        return { kind: 'event', seq, at, event: p.event, woke: p.woke ?? [] };
      case 'async.tool.called':
        return this.toolCalled(seq, at, p.agentId, p.taskId, p.tool, p.args, p.result);
      default:
        return null;
    }
  }

  private stateChanged(
    seq: number,
    at: string,
    agentId: string,
    state: AgentStateName,
    previous: AgentStateName | null,
    reason: string,
  ): TimelineEntry {
    const open = this.openWaits.get(agentId);
    if (open && WAIT_ENDS[reason]) {
      open.endSeq = seq;
      open.endAt = at;
      open.outcome = WAIT_ENDS[reason];
      this.openWaits.delete(agentId);
    }
    if (reason.startsWith('waiting_on:')) {
      const wait: WaitEntry = {
        kind: 'wait',
        seq,
        at,
        agentId,
        on: reason.slice('waiting_on:'.length),
        endSeq: null,
        endAt: null,
        outcome: 'waiting',
        message: null,
      };
      this.openWaits.set(agentId, wait);
      this.waits.push(wait);
      return wait;
    }
    return { kind: 'state', seq, at, agentId, state, previous, reason };
  }

  private toolCalled(
    seq: number,
    at: string,
    agentId: string,
    taskId: string,
    tool: string,
    args: unknown,
    result: unknown,
  ): TimelineEntry {
    const calls = this.toolCalls.get(taskId) ?? [];
    calls.push({ seq, tool, args, result });
    this.toolCalls.set(taskId, calls);
    const error = (result as { error?: unknown } | null)?.error;
    if (tool === 'send_mail_with_switch' && typeof error === 'string' && error.startsWith('refused')) {
      // A refused wait never became a state: it is drawn from the tool's answer.
      const wait: WaitEntry = {
        kind: 'wait',
        seq,
        at,
        agentId,
        on: targetOf(args),
        endSeq: seq,
        endAt: at,
        outcome: 'refused',
        message: error,
      };
      this.waits.push(wait);
      return wait;
    }
    return { kind: 'tool', seq, at, agentId, taskId, tool, args, result };
  }
}

function targetOf(args: unknown): string {
  const to = (args as { to?: unknown } | null)?.to;
  return typeof to === 'string' ? to : '?';
}

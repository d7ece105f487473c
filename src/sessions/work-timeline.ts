import { HistoryRecord } from './session.types';

export type WorkObservation =
  | { type: 'agentCreated'; sessionId: string; agentId: string; state: string }
  | { type: 'taskStarted'; sessionId: string; agentId: string; taskId: string; kind: string }
  | {
      type: 'taskEnded';
      sessionId: string;
      agentId: string;
      taskId: string;
      /** `unknown` for an item that ended without this process seeing it start (failed while queued). */
      kind: string;
      outcome: 'completed' | 'failed';
      /** From its `task.started` record to this one; undefined when that was not seen. */
      durationMs?: number;
      code?: string;
      tokens?: number;
    }
  | { type: 'wokeToWork'; sessionId: string; agentId: string; reason: 'event' | 'mail'; latencyMs: number };

/** The fields of the records read here (see docs/protocol.md, "Server push"). */
interface RecordFields {
  agentId: string;
  taskId: string;
  kind: string;
  state: string;
  previous: string | null;
  reason: string;
  error?: { code?: string };
  usage?: { promptTokens: number; completionTokens: number };
}

const MAX_OPEN_TASKS = 100_000;

interface Started {
  kind: string;
  at: number;
}

/**
 * Turns the committed history (as the NotificationBus delivers it) into what metrics and logs
 * report: tasks with their kind and duration, agents created, wake-ups. Times are the records'
 * own `at`, so durations are what the history says.
 *
 * A wake-up is measured only when arriving work woke the agent (an event, or mail): such a wake
 * always comes with a queued item, so the time to the next `task.started` is the latency of
 * getting to it. A timer or a `wakeAgent` may wake an agent with nothing to do.
 */
export class WorkTimeline {
  private readonly started = new Map<string, Started>();
  private readonly woken = new Map<string, { reason: 'event' | 'mail'; at: number }>();

  observe(record: HistoryRecord): WorkObservation[] {
    const p = record.payload as unknown as RecordFields;
    const at = Date.parse(record.at);
    const { sessionId } = record;
    const agentKey = `${sessionId}\u0000${p.agentId}`;
    switch (record.type) {
      case 'async.agent.stateChanged':
        return this.stateChanged(sessionId, agentKey, p, at);
      case 'async.task.started': {
        this.started.set(p.taskId, { kind: p.kind, at });
        // A running item that is cancelled records no end; the oldest such entries make room.
        if (this.started.size > MAX_OPEN_TASKS) {
          this.started.delete(this.started.keys().next().value!);
        }
        const out: WorkObservation[] = [
          { type: 'taskStarted', sessionId, agentId: p.agentId, taskId: p.taskId, kind: p.kind },
        ];
        const wake = this.woken.get(agentKey);
        if (wake) {
          this.woken.delete(agentKey);
          out.push({
            type: 'wokeToWork',
            sessionId,
            agentId: p.agentId,
            reason: wake.reason,
            latencyMs: at - wake.at,
          });
        }
        return out;
      }
      case 'async.task.completed':
      case 'async.task.failed': {
        const start = this.started.get(p.taskId);
        this.started.delete(p.taskId);
        const completed = record.type === 'async.task.completed';
        const usage = p.usage;
        return [
          {
            type: 'taskEnded',
            sessionId,
            agentId: p.agentId,
            taskId: p.taskId,
            kind: start?.kind ?? 'unknown',
            outcome: completed ? 'completed' : 'failed',
            ...(start ? { durationMs: at - start.at } : {}),
            ...(completed ? {} : { code: String(p.error?.code ?? 'unknown') }),
            ...(usage ? { tokens: usage.promptTokens + usage.completionTokens } : {}),
          },
        ];
      }
      case 'async.task.output':
      case 'async.tool.called':
      case 'async.mail.sent':
      case 'async.event.broadcast':
        return [];
    }
  }

  private stateChanged(sessionId: string, agentKey: string, p: RecordFields, at: number): WorkObservation[] {
    const { reason } = p;
    if (p.previous === null && reason === 'created') {
      return [{ type: 'agentCreated', sessionId, agentId: p.agentId, state: p.state }];
    }
    if (p.previous === 'sleeping') {
      const cause = wakeCause(reason);
      if (cause && p.state === 'idle') {
        this.woken.set(agentKey, { reason: cause, at });
      }
      return [];
    }
    // The claim itself (idle → active) keeps the pending wake; any other change means it did not lead to work.
    if (!(p.previous === 'idle' && p.state === 'active')) {
      this.woken.delete(agentKey);
    }
    return [];
  }
}

function wakeCause(reason: string): 'event' | 'mail' | undefined {
  if (reason.startsWith('event:')) {
    return 'event';
  }
  return ['mail_received', 'high_priority_mail', 'switch_mail'].includes(reason) ? 'mail' : undefined;
}

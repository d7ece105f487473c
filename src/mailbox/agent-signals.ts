import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { DatabaseService, Tx } from 'src/database/database.service';

export interface AgentSignal {
  sessionId: string;
  agentId: string;
  /** `work`: something may be claimable now. `abort`: stop the item in hand (the agent was stopped). */
  type: 'work' | 'abort';
  /** With `abort`: only abandon the item in hand if it is this one. */
  taskId?: string;
}

/**
 * Wake-ups for agent loops. A signal is only a hint: the loop always asks the database what to
 * do, and a slow poll covers a lost hint, so losing one delays and never loses work. A signal
 * given in a transaction reaches this node's loops after commit and the session's owner, when it
 * is another node, through the transaction's cluster hint.
 */
@Injectable()
export class AgentSignals {
  private readonly subject = new Subject<AgentSignal>();
  readonly signals$: Observable<AgentSignal> = this.subject.asObservable();

  constructor(
    private readonly db: DatabaseService,
    private readonly hints: ClusterHints,
  ) {}

  emit(signal: AgentSignal): void {
    this.subject.next(signal);
  }

  /** Emits once `tx` commits, here and on the session's owner. */
  emitAfterCommit(tx: Tx, signal: AgentSignal): void {
    this.hints.add(
      tx,
      signal.sessionId,
      signal.type === 'work'
        ? { work: [signal.agentId] }
        : { abort: [{ agentId: signal.agentId, ...(signal.taskId ? { taskId: signal.taskId } : {}) }] },
    );
    this.db.afterCommit(tx, () => this.emit(signal));
  }

  /**
   * A `work` signal for each of the session's agents, once `tx` commits: one hint and one hook for
   * all. Past the first {@link SIGNALS_PER_TURN}, the signals go out that many per event-loop turn:
   * each starts a loop's first step, and ten thousand of them at once (a broadcast to sleepers) would
   * hold back the answer of the call that committed them, and every other reply, until all had run.
   */
  workAfterCommit(tx: Tx, sessionId: string, agentIds: string[]): void {
    if (agentIds.length === 0) {
      return;
    }
    this.hints.add(tx, sessionId, { work: agentIds });
    this.db.afterCommit(tx, () => this.emitWork(sessionId, agentIds, 0));
  }

  private emitWork(sessionId: string, agentIds: string[], from: number): void {
    const end = Math.min(agentIds.length, from + SIGNALS_PER_TURN);
    for (let i = from; i < end; i++) {
      this.emit({ sessionId, agentId: agentIds[i], type: 'work' });
    }
    if (end < agentIds.length) {
      setImmediate(() => this.emitWork(sessionId, agentIds, end));
    }
  }
}

/** Work signals given per event-loop turn (see AgentSignals.workAfterCommit). */
export const SIGNALS_PER_TURN = 256;

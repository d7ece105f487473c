import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { DatabaseService, Tx } from 'src/database/database.service';

/** An agent of a session. */
export interface NewAgent {
  sessionId: string;
  agentId: string;
}

/**
 * The agents created on this node, once their creation commits: what the runtime, above, knows of
 * an agent before its first item (it has no conversation yet, so the first item reads none). Not the
 * history's `stateChanged … created` records: those also arrive, late, for agents another node
 * made, when this node's loops may have run them already.
 */
@Injectable()
export class NewAgents {
  private readonly subject = new Subject<NewAgent[]>();
  /** Per transaction, the agents it creates: one after-commit hook for a batch of thousands. */
  private readonly pending = new WeakMap<Tx, NewAgent[]>();
  readonly created$: Observable<NewAgent[]> = this.subject.asObservable();

  constructor(private readonly db: DatabaseService) {}

  /** Tells `created$` of the agent once `tx`, which creates it, commits. */
  createdAfterCommit(tx: Tx, agent: NewAgent): void {
    const agents = this.pending.get(tx);
    if (agents) {
      agents.push(agent);
      return;
    }
    const first = [agent];
    this.pending.set(tx, first);
    this.db.afterCommit(tx, () => this.subject.next(first));
  }
}

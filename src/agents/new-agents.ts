import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { DatabaseService, Tx } from 'src/database/database.service';

/** An agent of a session. */
export interface NewAgent {
  sessionId: string;
  agentId: string;
}

/**
 * The agents created on this node, each once its creation commits: what the runtime, above, knows
 * of an agent before its first item (it has no conversation yet, so the first item reads none).
 */
@Injectable()
export class NewAgents {
  private readonly subject = new Subject<NewAgent>();
  readonly created$: Observable<NewAgent> = this.subject.asObservable();

  constructor(private readonly db: DatabaseService) {}

  /** Tells `created$` of the agent once `tx`, which creates it, commits. */
  createdAfterCommit(tx: Tx, agent: NewAgent): void {
    this.db.afterCommit(tx, () => this.subject.next(agent));
  }
}

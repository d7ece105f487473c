import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { WorkItem } from './mailbox.types';

/**
 * Work claimed by the statement that queued it: the item, already `running`, and its agent's row
 * (as the database gives it) as it became `active`.
 */
export interface HandedWork {
  item: WorkItem;
  agentRow: unknown;
}

/** Who runs agents' loops on this node (the agent runtime, which registers itself). */
export interface WorkTaker {
  /**
   * True when work queued now for the session's agents, in a batch of its writes (HistoryService),
   * may be claimed by the statement that queues it: this node runs the session's loops.
   */
  takes(sessionId: string): boolean;
  /** In the transaction that claimed it: records the claim; hands the item to its agent's loop once `tx` commits. */
  take(tx: Tx, work: HandedWork): Promise<void>;
}

/**
 * The hand-off (ADR 0020): an item queued for an idle agent with nothing else queued, on the node
 * that runs its loop, is claimed by the statement that queues it, and the loop runs it without a
 * claim transaction of its own. The mailbox queues; the runtime, above it, takes: it registers here.
 */
@Injectable()
export class WorkHandOff {
  private taker?: WorkTaker;

  register(taker: WorkTaker): void {
    this.taker = taker;
  }

  takes(sessionId: string): boolean {
    return this.taker?.takes(sessionId) ?? false;
  }

  take(tx: Tx, work: HandedWork): Promise<void> {
    if (!this.taker) {
      throw new Error('work was claimed for a hand-off with no taker registered');
    }
    return this.taker.take(tx, work);
  }
}

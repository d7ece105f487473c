import { Injectable } from '@nestjs/common';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { Session } from 'src/sessions/session.types';
import { Agent } from '../agent.types';
import { TaskOutputs } from '../task-outputs.service';
import { ClaimWork } from './use-cases/claim-work';
import { CompleteWork } from './use-cases/complete-work';
import { FailWork } from './use-cases/fail-work';
import { Think } from './use-cases/think';
import { ClaimedWork, NextWork, noUsage, Thought } from './use-cases/work-values';

/**
 * Takes one work item through its steps, each a use case passing plain values on: claim, think
 * (model turns and tool calls, no transaction open), then complete, fail or abandon.
 */
@Injectable()
export class AgentWorker {
  constructor(
    private readonly claimWork: ClaimWork,
    private readonly think: Think,
    private readonly completeWork: CompleteWork,
    private readonly failWork: FailWork,
    private readonly outputs: TaskOutputs,
  ) {}

  /** Claims the agent's next item in protocol order; undefined when it has none or may not work now. */
  claim(sessionId: string, agentId: string): Promise<ClaimedWork | undefined> {
    return this.claimWork.run(sessionId, agentId);
  }

  /** What claiming records, for an item claimed by the statement that queued it (a hand-off, see WorkHandOff). */
  recordClaim(
    tx: Tx,
    claimed: { agent: Agent; item: WorkItem },
    session: Session,
  ): Promise<ClaimedWork | undefined> {
    return this.claimWork.recordClaim(tx, claimed, session);
  }

  /**
   * Runs a claimed item to its end: done, failed, or (when aborted) back in the queue. Resolves the
   * agent's next item when its completion claimed it too (one statement, no claim of its own); else
   * false when the agent surely has nothing more queued (so its loop need not look).
   */
  async process(work: ClaimedWork, signal: AbortSignal): Promise<NextWork> {
    const { item } = work;
    // Tokens are spent even when the item fails; they count against budgets all the same.
    const usage = noUsage();
    try {
      let thought: Thought;
      try {
        thought = await this.think.run(work, signal, usage);
      } catch (err) {
        if (signal.aborted) {
          await this.failWork.abandon(work, usage);
        } else if (isDatabaseAway(err)) {
          // A tool's write met a database away or a lease lost: the item stays running and is put back
          // (by the backstop here, or by the session's next owner); failing it would lose acknowledged work.
          throw err;
        } else {
          await this.failWork.fail(work, err, usage);
        }
        return true;
      }
      try {
        // An aborted loop (closing, or the item cancelled) takes nothing more.
        return await this.completeWork.run(work, thought, usage, !signal.aborted);
      } catch (err) {
        if (isDatabaseAway(err)) {
          throw err; // the item stays running and is put back when the database returns
        }
        await this.failWork.fail(work, err, usage);
        return true;
      }
    } finally {
      this.outputs.end(item.taskId);
    }
  }

  /** See {@link FailWork.markFailed}: for the runtime's recovery of items interrupted too often. */
  markFailed(tx: Tx, item: WorkItem, error: { code: string; message: string }): Promise<boolean> {
    return this.failWork.markFailed(tx, item, error);
  }
}

const isDatabaseAway = (err: unknown) => err instanceof RpcError && err.reason === 'unavailable';

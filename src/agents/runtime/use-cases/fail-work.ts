import { Injectable, Logger } from '@nestjs/common';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { ModelCallError } from 'src/llm/model-provider';
import { Usage, WorkItem } from 'src/mailbox/mailbox.types';
import { SwitchWaiters } from 'src/mailbox/switch-waiters';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { AgentRepository } from '../../agent.repository';
import { TaskFailure } from '../task-failure';
import { TokenCharges } from './token-charges';
import { ClaimedWork } from './work-values';

/** The ways an item ends without an answer: it failed, or its run was abandoned and it goes back in the queue. */
@Injectable()
export class FailWork {
  private readonly logger = new Logger(FailWork.name);

  constructor(
    private readonly history: HistoryService,
    private readonly items: WorkItemRepository,
    private readonly agents: AgentRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly waiters: SwitchWaiters,
    private readonly charges: TokenCharges,
  ) {}

  /** The item failed with `err`: recorded, charged, and the agent goes on (or is stopped by a limit). */
  async fail({ agent, item }: ClaimedWork, err: unknown, usage: Usage): Promise<void> {
    const failure = asFailure(err);
    if (!(err instanceof TaskFailure) && !(err instanceof ModelCallError)) {
      this.logger.warn(
        `Task ${item.taskId} of ${agent.agentId} failed: ${err instanceof Error ? err.stack : String(err)}`,
      );
    }
    const error = { code: failure.code, message: failure.message };
    await this.history.inSession(
      agent.sessionId,
      async (tx) => {
        await this.markFailed(tx, item, error, usage);
        await this.charges.charge(tx, agent.sessionId, agent.agentId, usage);
        let me = await this.lifecycle.get(tx, agent.sessionId, agent.agentId);
        if (failure.stopAgent) {
          me = await this.lifecycle.stop(tx, me, 'limit_exceeded');
        }
        if (me.state === 'active' || me.state === 'waiting') {
          await this.lifecycle.transition(tx, me, 'idle', 'task_failed', { waitingOn: null });
        }
      },
      { owner: true },
    );
  }

  /**
   * Marks a queued or running item failed, counts the error on its agent, records `async.task.failed`
   * and ends the wait of a send-and-switch caller on it. False when the item had already ended.
   */
  async markFailed(
    tx: Tx,
    item: WorkItem,
    error: { code: string; message: string },
    usage?: Usage,
  ): Promise<boolean> {
    const failed = await this.items.finish(tx, item.taskId, {
      state: 'failed',
      error,
      usage,
      at: this.lifecycle.now(),
    });
    if (!failed) {
      return false;
    }
    const errorCount = await this.agents.recordError(tx, item.sessionId, item.agentId, error.message);
    await this.history.record(tx, item.sessionId, 'async.task.failed', {
      agentId: item.agentId,
      taskId: item.taskId,
      error,
      errorCount,
    });
    const original = item.isSwitch ? item.payload.messageId : undefined;
    if (original) {
      this.lifecycle.afterCommit(tx, () =>
        this.waiters.settle(original, { error: `'${item.agentId}' failed: ${error.message}` }),
      );
    }
    return true;
  }

  /** The agent was stopped (or the task cancelled) mid-step: the item goes back to the queue unless cancelled. */
  async abandon({ agent, item }: ClaimedWork, usage: Usage): Promise<void> {
    await this.history.inSession(
      agent.sessionId,
      async (tx) => {
        const requeued = await this.items.requeue(tx, item.taskId);
        await this.charges.charge(tx, agent.sessionId, agent.agentId, usage);
        const me = await this.lifecycle.get(tx, agent.sessionId, agent.agentId);
        if (me.state === 'active' || me.state === 'waiting') {
          const reason = requeued ? 'requeued' : 'task_cancelled'; // put back (shutdown) or cancelled
          await this.lifecycle.transition(tx, me, 'idle', reason, { waitingOn: null });
        } else if (me.waitingOn) {
          await this.agents.update(tx, agent.sessionId, agent.agentId, { waitingOn: null });
        }
      },
      { owner: true },
    );
  }
}

function asFailure(err: unknown): TaskFailure {
  if (err instanceof TaskFailure) {
    return err;
  }
  if (err instanceof ModelCallError) {
    return new TaskFailure(err.code, err.message);
  }
  if (err instanceof RpcError) {
    return new TaskFailure(err.reason, err.message);
  }
  return new TaskFailure('internal_error', err instanceof Error ? err.message : String(err));
}

import { Injectable } from '@nestjs/common';
import { Priority } from 'src/common/names';
import { RpcError } from 'src/common/rpc-error';
import { AgentSignals } from 'src/mailbox/agent-signals';
import { Enqueued, MailboxService, MissingAgent } from 'src/mailbox/mailbox.service';
import { SwitchWaiters } from 'src/mailbox/switch-waiters';
import { WorkItem, WorkState } from 'src/mailbox/mailbox.types';
import { NewWorkItem, WorkItemRepository } from 'src/mailbox/work-item.repository';
import { Tx } from 'src/database/database.service';
import { HistoryService } from 'src/sessions/history.service';
import { AgentLifecycleService } from './agent-lifecycle.service';
import { TaskOutputs } from './task-outputs.service';
import type { TaskView } from '@mailroom/client/protocol';

/** The task view of any work item is the protocol's (`async.getTask`). */
export type { TaskView };

/** Tasks from the client, and the task view of every work item (mail, events and schedules have task ids too). */
@Injectable()
export class TasksService {
  constructor(
    private readonly history: HistoryService,
    private readonly items: WorkItemRepository,
    private readonly mailbox: MailboxService,
    private readonly lifecycle: AgentLifecycleService,
    private readonly signals: AgentSignals,
    private readonly waiters: SwitchWaiters,
    private readonly outputs: TaskOutputs,
  ) {}

  /** Commits the task before answering, so an acknowledged task is never lost. */
  send(input: {
    sessionId: string;
    agentId: string;
    prompt: string;
    priority: Priority;
    idempotencyKey?: string;
  }): Promise<{ taskId: string; queued: true; queueSize: number }> {
    const item: NewWorkItem = {
      sessionId: input.sessionId,
      agentId: input.agentId,
      kind: 'task',
      priority: input.priority,
      idempotencyKey: input.idempotencyKey,
      prompt: input.prompt,
      createdAt: this.lifecycle.now(),
    };
    const answer = async (tx: Tx, queued: () => Promise<Enqueued>) => {
      try {
        const { item: task, queueSize } = await queued();
        return { taskId: task.taskId, queued: true as const, queueSize };
      } catch (err) {
        if (err instanceof MissingAgent) {
          await this.lifecycle.get(tx, input.sessionId, input.agentId); // throws, naming the agents it has
        }
        throw err;
      }
    };
    // Tasks for different agents sent at about the same time are queued by one statement.
    return this.history.inSessionMerged(
      input.sessionId,
      (tx) => answer(tx, () => this.mailbox.enqueue(tx, item)),
      this.mailbox.enqueueWrite(item, (tx, queued) => answer(tx, () => Promise.resolve(queued))),
    );
  }

  get(sessionId: string, taskId: string): Promise<TaskView> {
    return this.history.readSession(sessionId, async (tx) => {
      const item = await this.items.find(tx, sessionId, taskId);
      if (!item) {
        throw taskNotFound(taskId);
      }
      const view = toView(item);
      if (item.state === 'running') {
        view.output = this.outputs.textOf(taskId) ?? '';
      }
      return view;
    });
  }

  /**
   * Cancels a queued or running task. A running one is abandoned at its next safe point; a
   * finished one is left as it is (cancelling is idempotent) and its state returned.
   */
  cancel(sessionId: string, taskId: string): Promise<{ taskId: string; state: WorkState }> {
    return this.history.inSession(sessionId, async (tx) => {
      const item = await this.items.find(tx, sessionId, taskId);
      if (!item) {
        throw taskNotFound(taskId);
      }
      if (item.state !== 'queued' && item.state !== 'running') {
        return { taskId, state: item.state };
      }
      await this.items.finish(tx, taskId, {
        state: 'cancelled',
        error: { code: 'cancelled', message: 'Cancelled by the client' },
        at: this.lifecycle.now(),
      });
      if (item.state === 'running') {
        this.signals.emitAfterCommit(tx, { sessionId, agentId: item.agentId, type: 'abort', taskId });
      }
      const awaitedMail = item.isSwitch ? item.payload.messageId : undefined;
      if (awaitedMail) {
        // Whoever waits on this mail with send_mail_with_switch learns at once instead of timing out.
        this.waiters.failAfterCommit(
          tx,
          sessionId,
          awaitedMail,
          `'${item.agentId}' will not answer: the mail was cancelled`,
        );
      }
      return { taskId, state: 'cancelled' as const };
    });
  }
}

function taskNotFound(taskId: string): RpcError {
  return RpcError.invalidParams([{ path: 'taskId', message: `no task '${taskId}' in this session` }]);
}

export function toView(item: WorkItem): TaskView {
  return {
    taskId: item.taskId,
    agentId: item.agentId,
    kind: item.kind,
    state: item.state,
    prompt: item.prompt,
    priority: item.priority,
    hops: item.hops,
    ...(item.result ? { result: item.result } : {}),
    ...(item.error ? { error: item.error } : {}),
    createdAt: item.createdAt,
    ...(item.startedAt ? { startedAt: item.startedAt } : {}),
    ...(item.finishedAt ? { finishedAt: item.finishedAt } : {}),
    ...(item.usage ? { usage: item.usage } : {}),
  };
}

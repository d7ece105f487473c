import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { HistoryService } from 'src/sessions/history.service';
import { activeTraceparent } from 'src/telemetry/tracing';
import { AgentSignals } from './agent-signals';
import { MailRepository, NewMail } from './mail.repository';
import { Mail, USER, WorkItem } from './mailbox.types';
import { NewWorkItem, WorkItemRepository } from './work-item.repository';

/**
 * Durable enqueue and delivery. Everything here runs inside the caller's transaction, so a work
 * item, its mail and their history records commit together; the owning loop is signalled after commit.
 */
@Injectable()
export class MailboxService {
  constructor(
    private readonly items: WorkItemRepository,
    private readonly mail: MailRepository,
    private readonly history: HistoryService,
    private readonly signals: AgentSignals,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Queues a work item for an agent; `limit_exceeded` when its queue is full. A repeated
   * idempotency key answers with the first item even then. `force` skips the limit, for work the
   * system owes an agent (a reply it was waiting for) rather than new work from outside.
   */
  async enqueue(
    tx: Tx,
    item: NewWorkItem,
    opts: { force?: boolean } = {},
  ): Promise<{ item: WorkItem; created: boolean; queueSize: number }> {
    const queued = await this.items.countQueued(tx, item.sessionId, item.agentId);
    const earlier = item.idempotencyKey
      ? await this.items.findByIdempotencyKey(tx, item.sessionId, item.agentId, item.idempotencyKey)
      : undefined;
    if (earlier) {
      return { item: earlier, created: false, queueSize: queued };
    }
    if (queued >= this.config.maxQueueSize && !opts.force) {
      throw new RpcError('limit_exceeded', `The queue of agent '${item.agentId}' is full (${queued} items)`);
    }
    // The receiving agent's span continues the trace of whoever queued this (see AgentRuntimeService).
    const traceparent = activeTraceparent();
    const result = await this.items.insert(
      tx,
      traceparent ? { ...item, payload: { ...item.payload, traceparent } } : item,
    );
    if (result.created) {
      this.signalAfterCommit(tx, item.sessionId, item.agentId);
    }
    return { ...result, queueSize: result.created ? queued + 1 : queued };
  }

  /**
   * Queues the same item for each of `agentIds` (their queues in that order) with a few statements
   * whatever their number, under {@link enqueue}'s rules: the first agent (in that order) whose queue
   * is full fails it all with `limit_exceeded`, and the item carries the active trace.
   */
  async enqueueForEach(
    tx: Tx,
    agentIds: string[],
    item: Omit<NewWorkItem, 'agentId' | 'idempotencyKey'>,
  ): Promise<Array<{ agentId: string; taskId: string }>> {
    if (agentIds.length === 0) {
      return [];
    }
    const queued = await this.items.countQueuedEach(tx, item.sessionId, agentIds);
    const full = agentIds.find((id) => (queued.get(id) ?? 0) >= this.config.maxQueueSize);
    if (full !== undefined) {
      throw new RpcError(
        'limit_exceeded',
        `The queue of agent '${full}' is full (${queued.get(full)} items)`,
      );
    }
    const traceparent = activeTraceparent();
    const made = await this.items.insertForEach(
      tx,
      agentIds,
      traceparent ? { ...item, payload: { ...item.payload, traceparent } } : item,
    );
    this.signals.workAfterCommit(tx, item.sessionId, agentIds);
    return made;
  }

  /**
   * Stores a mail, records `async.mail.sent`, and (for mail to an agent) queues the work item that
   * makes the recipient read it. Mail to `user`, and a reply handed straight to a waiting
   * send-and-switch caller (`enqueue: false`), is only stored and pushed.
   */
  async post(
    tx: Tx,
    m: NewMail,
    opts: { enqueue: boolean; force?: boolean } = { enqueue: true },
  ): Promise<{ mail: Mail; item?: WorkItem }> {
    const mail = await this.mail.insert(tx, m);
    await this.history.record(tx, m.sessionId, 'async.mail.sent', { message: mail });
    if (mail.to === USER || !opts.enqueue) {
      return { mail };
    }
    const { item } = await this.enqueue(
      tx,
      {
        sessionId: m.sessionId,
        agentId: mail.to,
        kind: 'mailbox_message',
        priority: mail.priority,
        isSwitch: m.isSwitch,
        hops: mail.hops,
        prompt: mail.body,
        payload: { messageId: mail.messageId, from: mail.from, subject: mail.subject },
        createdAt: m.createdAt,
      },
      { force: opts.force },
    );
    return { mail, item };
  }

  /** A reply stored for a waiter that had already given up: it becomes ordinary unread mail for its recipient. */
  async requeueAsUnread(tx: Tx, mail: Mail): Promise<void> {
    await this.mail.markUnread(tx, mail.messageId);
    if (mail.to === USER) {
      return;
    }
    await this.enqueue(
      tx,
      {
        sessionId: mail.sessionId,
        agentId: mail.to,
        kind: 'mailbox_message',
        priority: mail.priority,
        hops: mail.hops,
        prompt: mail.body,
        payload: { messageId: mail.messageId, from: mail.from, subject: mail.subject },
        createdAt: mail.createdAt,
      },
      { force: true },
    );
  }

  signalAfterCommit(tx: Tx, sessionId: string, agentId: string): void {
    this.signals.emitAfterCommit(tx, { sessionId, agentId, type: 'work' });
  }
}

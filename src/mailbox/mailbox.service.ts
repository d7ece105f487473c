import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { HistoryService, MergeableWrite } from 'src/sessions/history.service';
import { activeTraceparent } from 'src/telemetry/tracing';
import { AgentSignals } from './agent-signals';
import { MailRepository, NewMail } from './mail.repository';
import { Mail, USER, WorkItem } from './mailbox.types';
import { WorkHandOff } from './work-hand-off';
import { NewWorkItem, QueueOutcome, ToEnqueue, WorkItemRepository } from './work-item.repository';

/**
 * Durable enqueue and delivery. Everything here runs inside the caller's transaction, so a work
 * item, its mail and their history records commit together; the owning loop is signalled after commit.
 */
/** What queueing an item gave: the item (the earlier one for a repeated idempotency key), and the queue's size after. */
export interface Enqueued {
  item: WorkItem;
  created: boolean;
  queueSize: number;
}

/** Work queued for an agent the session does not have (the caller knows how to say so). */
export class MissingAgent extends RpcError {
  constructor(sessionId: string, agentId: string) {
    super('agent_not_found', `Agent '${agentId}' not found in session '${sessionId}'`);
  }
}

@Injectable()
export class MailboxService {
  constructor(
    private readonly items: WorkItemRepository,
    private readonly mail: MailRepository,
    private readonly history: HistoryService,
    private readonly signals: AgentSignals,
    private readonly handOff: WorkHandOff,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /**
   * Queues a work item for an agent; `limit_exceeded` when its queue is full. A repeated
   * idempotency key answers with the first item even then. `force` skips the limit, for work the
   * system owes an agent (a reply it was waiting for) rather than new work from outside. An idle
   * agent with nothing else queued, whose loop runs here, is handed the item at once (WorkHandOff).
   */
  async enqueue(tx: Tx, item: NewWorkItem, opts: { force?: boolean } = {}): Promise<Enqueued> {
    const { item: traced, maxQueued } = this.toEnqueue(item, opts);
    // Only in a batch of session writes (HistoryService), which the claim's records need.
    const claim = this.history.inBatch(tx, item.sessionId) && this.handOff.takes(item.sessionId);
    return this.settleEnqueue(tx, item, await this.items.enqueue(tx, traced, maxQueued, claim));
  }

  /**
   * The queueing of one item as a write that may share its statement with the queueing of other
   * agents' items in the same batch (HistoryService.inSessionMerged). `then` gets the item's outcome.
   * Whether it may be handed off is asked when the batch builds the statement: a batch run again
   * after a refused fence asks again (see the runtime's WorkTaker).
   */
  enqueueWrite<T>(
    item: NewWorkItem,
    then: (tx: Tx, queued: Enqueued) => Promise<T>,
    opts: { force?: boolean } = {},
  ): MergeableWrite<ToEnqueue, QueueOutcome, T> {
    return {
      kind: 'enqueue',
      agentId: item.agentId,
      args: this.toEnqueue(item, opts),
      statement: (args) =>
        this.items.enqueueManyStatement(
          args.map((a) => ({ ...a, claim: this.handOff.takes(a.item.sessionId) })),
        ),
      then: async (tx, row) => then(tx, await this.settleEnqueue(tx, item, row)),
    };
  }

  private toEnqueue(item: NewWorkItem, opts: { force?: boolean }) {
    // The receiving agent's span continues the trace of whoever queued this (see AgentRuntimeService).
    const traceparent = activeTraceparent();
    return {
      item: traceparent ? { ...item, payload: { ...item.payload, traceparent } } : item,
      maxQueued: opts.force ? null : this.config.maxQueueSize,
    };
  }

  private async settleEnqueue(tx: Tx, item: NewWorkItem, queued: QueueOutcome): Promise<Enqueued> {
    if (queued.earlier) {
      return { item: queued.earlier, created: false, queueSize: queued.queued };
    }
    if (queued.inserted) {
      if (queued.claimedBy) {
        await this.handOff.take(tx, { item: queued.inserted, agentRow: queued.claimedBy });
      } else {
        this.signalAfterCommit(tx, item.sessionId, item.agentId);
      }
      // Counted as queued when accepted, even when its agent took it at once.
      return { item: queued.inserted, created: true, queueSize: queued.queued + 1 };
    }
    if (!queued.agentExists) {
      throw new MissingAgent(item.sessionId, item.agentId);
    }
    if (item.idempotencyKey) {
      // The key was taken by a write that committed after this statement's snapshot began.
      const raced = await this.items.findByIdempotencyKey(
        tx,
        item.sessionId,
        item.agentId,
        item.idempotencyKey,
      );
      if (raced) {
        return { item: raced, created: false, queueSize: queued.queued };
      }
    }
    throw new RpcError(
      'limit_exceeded',
      `The queue of agent '${item.agentId}' is full (${queued.queued} items)`,
    );
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
  ): Promise<void> {
    if (agentIds.length === 0) {
      return;
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
    await this.items.insertForEach(
      tx,
      agentIds,
      traceparent ? { ...item, payload: { ...item.payload, traceparent } } : item,
    );
    this.signals.workAfterCommit(tx, item.sessionId, agentIds);
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

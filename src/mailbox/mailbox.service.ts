import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { HistoryService } from 'src/sessions/history.service';
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
    private readonly db: DatabaseService,
    private readonly items: WorkItemRepository,
    private readonly mail: MailRepository,
    private readonly history: HistoryService,
    private readonly signals: AgentSignals,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** Queues a work item for an agent; `limit_exceeded` when its queue is full. */
  async enqueue(tx: Tx, item: NewWorkItem): Promise<{ item: WorkItem; created: boolean; queueSize: number }> {
    const queued = await this.items.countQueued(tx, item.sessionId, item.agentId);
    if (queued >= this.config.maxQueueSize) {
      throw new RpcError('limit_exceeded', `The queue of agent '${item.agentId}' is full (${queued} items)`);
    }
    const result = await this.items.insert(tx, item);
    if (result.created) {
      this.signalAfterCommit(tx, item.sessionId, item.agentId);
    }
    return { ...result, queueSize: result.created ? queued + 1 : queued };
  }

  /**
   * Stores a mail, records `async.mail.sent`, and (for mail to an agent) queues the work item that
   * makes the recipient read it. Mail to `user`, and a reply handed straight to a waiting
   * send-and-switch caller (`enqueue: false`), is only stored and pushed.
   */
  async post(
    tx: Tx,
    m: NewMail,
    opts: { enqueue: boolean } = { enqueue: true },
  ): Promise<{ mail: Mail; item?: WorkItem }> {
    const mail = await this.mail.insert(tx, m);
    await this.history.record(tx, m.sessionId, 'async.mail.sent', { message: mail });
    if (mail.to === USER || !opts.enqueue) {
      return { mail };
    }
    const { item } = await this.enqueue(tx, {
      sessionId: m.sessionId,
      agentId: mail.to,
      kind: 'mailbox_message',
      priority: mail.priority,
      isSwitch: m.isSwitch,
      prompt: mail.body,
      payload: { messageId: mail.messageId, from: mail.from, subject: mail.subject },
      createdAt: m.createdAt,
    });
    return { mail, item };
  }

  signalAfterCommit(tx: Tx, sessionId: string, agentId: string): void {
    this.db.afterCommit(tx, () => this.signals.emit({ sessionId, agentId, type: 'work' }));
  }
}

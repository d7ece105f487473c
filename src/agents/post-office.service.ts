import { Injectable } from '@nestjs/common';
import { HIGH_PRIORITY_MAIL, MAIL_RECEIVED, Priority } from 'src/common/names';
import { MAX_KNOWN_AGENTS, RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { MailboxService } from 'src/mailbox/mailbox.service';
import { Mail, USER, WorkItem } from 'src/mailbox/mailbox.types';
import { Agent } from './agent.types';
import { AgentLifecycleService } from './agent-lifecycle.service';
import { AgentRepository } from './agent.repository';

export interface Letter {
  sessionId: string;
  from: string;
  to: string;
  subject: string;
  body: string;
  priority: Priority;
  replyTo?: string | null;
  /** The thread of `replyTo`, when the caller has it from its own read (saves reading the original again). */
  threadId?: string;
  /** The recipient as the caller read it in this transaction (saves reading it again). */
  recipient?: Agent;
  /** Sync-switch mail: jumps the recipient's queue and wakes it. */
  isSwitch?: boolean;
  messageId?: string;
  /** False for a reply consumed by a waiting send-and-switch caller: stored as read, not queued. */
  enqueue?: boolean;
  /** Queue even past the recipient's queue limit (a reply it was waiting for). */
  force?: boolean;
  /** Agent-to-agent sends that led to this mail; 0 (the default) for the user's. */
  hops?: number;
}

/**
 * Delivers mail between agents and the user: checks the recipient, threads replies, stores and
 * queues the mail (MailboxService), and wakes a sleeping recipient when the protocol says mail may.
 */
@Injectable()
export class PostOfficeService {
  constructor(
    private readonly agents: AgentRepository,
    private readonly mail: MailRepository,
    private readonly mailbox: MailboxService,
    private readonly lifecycle: AgentLifecycleService,
  ) {}

  async deliver(tx: Tx, letter: Letter): Promise<{ mail: Mail; item?: WorkItem }> {
    const enqueue = letter.enqueue ?? true;
    // A reply handed to its waiting caller is not queued, so its recipient is not read: the caller
    // is an agent of the session (it is waiting for this), and agents are never deleted.
    const recipient =
      letter.to === USER || !enqueue
        ? undefined
        : (letter.recipient ?? (await this.agents.find(tx, letter.sessionId, letter.to)));
    if (letter.to !== USER && enqueue && !recipient) {
      const known = await this.agents.knownIds(tx, letter.sessionId, MAX_KNOWN_AGENTS);
      throw RpcError.agentNotFound(letter.sessionId, letter.to, known.ids, known.total);
    }
    let threadId: string | null = letter.threadId ?? null;
    if (letter.replyTo && letter.threadId === undefined) {
      const original = await this.mail.find(tx, letter.sessionId, letter.replyTo);
      if (!original) {
        throw RpcError.invalidParams([
          { path: 'replyTo', message: `no message '${letter.replyTo}' in this session` },
        ]);
      }
      threadId = original.threadId;
    }
    const posted = await this.mailbox.post(
      tx,
      {
        messageId: letter.messageId,
        status: enqueue ? 'unread' : 'read',
        sessionId: letter.sessionId,
        from: letter.from,
        to: letter.to,
        subject: letter.subject,
        body: letter.body,
        priority: letter.priority,
        isSwitch: letter.isSwitch,
        replyTo: letter.replyTo ?? null,
        threadId,
        hops: letter.hops ?? 0,
        createdAt: this.lifecycle.now(),
      },
      { enqueue, force: letter.force },
    );
    if (enqueue && recipient?.state === 'sleeping') {
      const urgent = letter.priority === 'high' || letter.priority === 'urgent';
      const reason = letter.isSwitch
        ? 'switch_mail'
        : recipient.wakeEvents.includes(MAIL_RECEIVED)
          ? MAIL_RECEIVED
          : urgent && recipient.wakeEvents.includes(HIGH_PRIORITY_MAIL)
            ? HIGH_PRIORITY_MAIL
            : undefined;
      if (reason) {
        await this.lifecycle.wake(tx, recipient, reason);
      }
    }
    return posted;
  }
}

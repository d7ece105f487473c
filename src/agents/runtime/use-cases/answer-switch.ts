import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { SwitchWaiters } from 'src/mailbox/switch-waiters';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { PostOfficeService } from '../../post-office.service';

/** The final answer to send-and-switch mail is its reply, handed to the caller waiting for it. */
@Injectable()
export class AnswerSwitch {
  constructor(
    private readonly mail: MailRepository,
    private readonly postOffice: PostOfficeService,
    private readonly waiters: SwitchWaiters,
    private readonly lifecycle: AgentLifecycleService,
  ) {}

  /** In the completing transaction of `item` (a switch mail), with the answer `final`. */
  async answer(tx: Tx, item: WorkItem, final: string): Promise<void> {
    const original = item.payload.messageId!;
    const caller = item.payload.from!;
    const threadId = await this.mail.markReplied(tx, original, this.lifecycle.now());
    if (threadId === undefined) {
      return; // answered already, with reply_mail
    }
    // Awaited: handed straight to the waiter (and queued by its endWait if it gave up meanwhile).
    // Not awaited any more: ordinary mail for the caller, even past its queue limit.
    const awaited = this.waiters.isAwaited(original);
    const { mail } = await this.postOffice.deliver(tx, {
      sessionId: item.sessionId,
      from: item.agentId,
      to: caller,
      subject: `Re: ${item.payload.subject ?? ''}`,
      body: final,
      priority: 'high',
      replyTo: original,
      threadId,
      enqueue: !awaited,
      force: true,
      // The answer is what the caller waited for, so it is not refused at the hop limit; its
      // hops still count, so a caller that mails on from it is.
      hops: item.hops + 1,
    });
    this.lifecycle.afterCommit(tx, () =>
      this.waiters.settle(original, {
        reply: { from: item.agentId, body: final, messageId: mail.messageId },
      }),
    );
  }
}

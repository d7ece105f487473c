import { Injectable } from '@nestjs/common';
import { Priority } from 'src/common/names';
import { RpcError } from 'src/common/rpc-error';
import { MailRepository } from 'src/mailbox/mail.repository';
import { Mail, MailStatus, USER } from 'src/mailbox/mailbox.types';
import { HistoryService } from 'src/sessions/history.service';
import { PostOfficeService } from './post-office.service';

/** The client's side of the mailbox: mail from `user` into an agent's inbox, and reading any mailbox. */
@Injectable()
export class MailService {
  constructor(
    private readonly history: HistoryService,
    private readonly mail: MailRepository,
    private readonly postOffice: PostOfficeService,
  ) {}

  send(input: {
    sessionId: string;
    to: string;
    subject: string;
    body: string;
    priority: Priority;
    replyTo?: string;
  }): Promise<{ messageId: string }> {
    if (input.to === USER) {
      throw RpcError.invalidParams([
        { path: 'to', message: "mail from the user must go to an agent, not to 'user'" },
      ]);
    }
    return this.history.inSession(input.sessionId, async (tx) => {
      const { mail } = await this.postOffice.deliver(tx, { ...input, from: USER });
      return { messageId: mail.messageId };
    });
  }

  list(input: {
    sessionId: string;
    agentId?: string;
    status?: MailStatus;
    limit: number;
    before?: number;
  }): Promise<{ messages: Mail[]; nextBefore: number | null }> {
    return this.history.readSession(input.sessionId, (tx) => this.mail.list(tx, input));
  }
}

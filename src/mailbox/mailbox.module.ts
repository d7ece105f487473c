import { Module } from '@nestjs/common';
import { SessionsModule } from 'src/sessions/sessions.module';
import { AgentSignals } from './agent-signals';
import { MailRepository } from './mail.repository';
import { MailboxService } from './mailbox.service';
import { SwitchWaiters } from './switch-waiters';
import { WorkHandOff } from './work-hand-off';
import { WorkItemRepository } from './work-item.repository';

@Module({
  imports: [SessionsModule],
  providers: [MailRepository, WorkItemRepository, MailboxService, AgentSignals, SwitchWaiters, WorkHandOff],
  exports: [MailRepository, WorkItemRepository, MailboxService, AgentSignals, SwitchWaiters, WorkHandOff],
})
export class MailboxModule {}

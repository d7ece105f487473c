import { Module } from '@nestjs/common';
import { MailboxModule } from 'src/mailbox/mailbox.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { AgentLifecycleService } from './agent-lifecycle.service';
import { AgentWrites } from './agent-writes.repository';
import { AgentRepository } from './agent.repository';
import { AgentsService } from './agents.service';
import { ConversationRepository } from './conversation.repository';
import { MailService } from './mail.service';
import { NewAgents } from './new-agents';
import { PostOfficeService } from './post-office.service';
import { TaskOutputs } from './task-outputs.service';
import { TasksService } from './tasks.service';
import { TemplatesService } from './templates.service';

const PROVIDERS = [
  AgentRepository,
  AgentWrites,
  ConversationRepository,
  AgentLifecycleService,
  AgentsService,
  NewAgents,
  TasksService,
  TaskOutputs,
  MailService,
  PostOfficeService,
  TemplatesService,
];

/** Agent records, templates and lifecycle. The loop that runs agents is AgentRuntimeModule (`runtime/`). */
@Module({ imports: [SessionsModule, MailboxModule], providers: PROVIDERS, exports: PROVIDERS })
export class AgentsModule {}

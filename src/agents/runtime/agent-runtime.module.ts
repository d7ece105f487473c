import { Module } from '@nestjs/common';
import { EventsModule } from 'src/events/events.module';
import { LlmModule } from 'src/llm/llm.module';
import { MailboxModule } from 'src/mailbox/mailbox.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { ToolsModule } from 'src/tools/tools.module';
import { AgentsModule } from '../agents.module';
import { AgentRuntimeService } from './agent-runtime.service';
import { AgentWorker } from './agent-worker.service';
import { AnswerSwitch } from './use-cases/answer-switch';
import { ClaimWork } from './use-cases/claim-work';
import { CompleteWork } from './use-cases/complete-work';
import { FailWork } from './use-cases/fail-work';
import { Think } from './use-cases/think';
import { TokenCharges } from './use-cases/token-charges';
import { HotConversations } from './hot-conversations';
import { WorkStepRepository } from './work-step.repository';

/** The per-agent loops. Separate from AgentsModule so tools and events can depend on agents without a cycle. */
@Module({
  imports: [SessionsModule, MailboxModule, AgentsModule, EventsModule, ToolsModule, LlmModule],
  providers: [
    AgentRuntimeService,
    AgentWorker,
    ClaimWork,
    Think,
    CompleteWork,
    FailWork,
    AnswerSwitch,
    TokenCharges,
    WorkStepRepository,
    HotConversations,
  ],
  exports: [AgentRuntimeService],
})
export class AgentRuntimeModule {}

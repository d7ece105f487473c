import { Module } from '@nestjs/common';
import { EventsModule } from 'src/events/events.module';
import { LlmModule } from 'src/llm/llm.module';
import { MailboxModule } from 'src/mailbox/mailbox.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { ToolsModule } from 'src/tools/tools.module';
import { AgentsModule } from '../agents.module';
import { AgentRuntimeService } from './agent-runtime.service';
import { AgentWorker } from './agent-worker.service';

/** The per-agent loops. Separate from AgentsModule so tools and events can depend on agents without a cycle. */
@Module({
  imports: [SessionsModule, MailboxModule, AgentsModule, EventsModule, ToolsModule, LlmModule],
  providers: [AgentRuntimeService, AgentWorker],
  exports: [AgentRuntimeService],
})
export class AgentRuntimeModule {}

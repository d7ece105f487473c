import { Module } from '@nestjs/common';
import { AgentsModule } from 'src/agents/agents.module';
import { EventsModule } from 'src/events/events.module';
import { MailboxModule } from 'src/mailbox/mailbox.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { BuiltinToolsService } from './builtin-tools.service';
import { McpServersService } from './mcp/mcp-servers.service';
import { SwitchService } from './switch.service';
import { ToolEffectRepository } from './tool-effect.repository';
import { ToolRegistryService } from './tool-registry.service';

@Module({
  imports: [SessionsModule, MailboxModule, AgentsModule, EventsModule],
  providers: [
    BuiltinToolsService,
    SwitchService,
    ToolEffectRepository,
    ToolRegistryService,
    McpServersService,
  ],
  exports: [ToolRegistryService, SwitchService, McpServersService],
})
export class ToolsModule {}

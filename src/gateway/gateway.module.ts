import { Module } from '@nestjs/common';
import { AgentsModule } from 'src/agents/agents.module';
import { EventsModule } from 'src/events/events.module';
import { LlmModule } from 'src/llm/llm.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { MethodsService } from './methods.service';
import { RpcDispatcher } from './rpc-dispatcher.service';
import { RpcGateway } from './rpc.gateway';

@Module({
  imports: [SessionsModule, AgentsModule, EventsModule, LlmModule],
  providers: [MethodsService, RpcDispatcher, RpcGateway],
  exports: [RpcDispatcher],
})
export class GatewayModule {}

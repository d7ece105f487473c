import { Module } from '@nestjs/common';
import { AgentsModule } from 'src/agents/agents.module';
import { EventsModule } from 'src/events/events.module';
import { LlmModule } from 'src/llm/llm.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { AuthService } from './auth.service';
import { MethodsService } from './methods.service';
import { RpcDispatcher } from './rpc-dispatcher.service';
import { RpcController } from './rpc.controller';
import { RpcGateway } from './rpc.gateway';
import { WsGateway } from './ws.gateway';

@Module({
  imports: [SessionsModule, AgentsModule, EventsModule, LlmModule],
  controllers: [RpcController],
  providers: [AuthService, MethodsService, RpcDispatcher, RpcGateway, WsGateway],
  exports: [RpcDispatcher, AuthService, MethodsService],
})
export class GatewayModule {}

import { DynamicModule, Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { AdminModule } from './admin/admin.module';
import { AgentsModule } from './agents/agents.module';
import { AgentRuntimeModule } from './agents/runtime/agent-runtime.module';
import { ClusterModule } from './cluster/cluster.module';
import { Clock, SystemClock } from './common/clock';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { EventsModule } from './events/events.module';
import { GatewayModule } from './gateway/gateway.module';
import { MailboxModule } from './mailbox/mailbox.module';
import { SessionsModule } from './sessions/sessions.module';
import { ToolsModule } from './tools/tools.module';
import { ClockModule } from './common/clock.module';

@Module({})
export class AppModule {
  /** The whole service for a given config; tests and benchmarks pass a fake clock. */
  static forRoot(config: AppConfig, clock: Clock = new SystemClock()): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        ClockModule.forRoot(clock),
        ScheduleModule.forRoot(),
        DatabaseModule,
        ClusterModule,
        SessionsModule,
        MailboxModule,
        AgentsModule,
        EventsModule,
        ToolsModule,
        AgentRuntimeModule,
        GatewayModule,
        AdminModule,
      ],
    };
  }
}

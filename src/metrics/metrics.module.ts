import { Module } from '@nestjs/common';
import { AgentRuntimeModule } from 'src/agents/runtime/agent-runtime.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { MetricsController } from './metrics.controller';
import { MetricsRepository } from './metrics.repository';
import { MetricsService } from './metrics.service';

/** `GET /metrics`; the instruments themselves live in the global TelemetryModule. */
@Module({
  imports: [SessionsModule, AgentRuntimeModule],
  controllers: [MetricsController],
  providers: [MetricsService, MetricsRepository],
})
export class MetricsModule {}

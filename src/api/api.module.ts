import { Module } from '@nestjs/common';
import { GatewayModule } from 'src/gateway/gateway.module';
import { AgentsController } from './agents.controller';
import { ApiNotFoundController } from './api-not-found.controller';
import { ApiCallService } from './api-call.service';
import { MethodSchemas } from './method-schemas.service';
import { SessionsController } from './sessions.controller';
import { TemplatesController } from './templates.controller';
import { WorkController } from './work.controller';

/** REST under `/api`: thin routes onto the methods' dispatcher, described by OpenAPI at `/docs`. */
@Module({
  imports: [GatewayModule],
  controllers: [
    SessionsController,
    AgentsController,
    WorkController,
    TemplatesController,
    ApiNotFoundController,
  ],
  providers: [ApiCallService, MethodSchemas],
})
export class ApiModule {}

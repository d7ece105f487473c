import { DynamicModule, Module, RequestMethod } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { AppConfig } from 'src/config/app-config';
import { SessionsModule } from 'src/sessions/sessions.module';
import { ActivityLogService } from './activity-log.service';
import { MailroomLogger } from './mailroom-logger';
import { pinoHttpOptions } from './pino-options';

/** pino for every log line (see {@link pinoHttpOptions}) and the activity log fed by the session history. */
@Module({})
export class LoggingModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: LoggingModule,
      imports: [
        LoggerModule.forRoot({
          pinoHttp: pinoHttpOptions(config),
          // Express 5's spelling of "every path".
          forRoutes: [{ path: '{*path}', method: RequestMethod.ALL }],
        }),
        SessionsModule,
      ],
      providers: [MailroomLogger, ActivityLogService],
      exports: [MailroomLogger],
    };
  }
}

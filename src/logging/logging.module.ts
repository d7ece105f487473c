import { DynamicModule, Inject, MiddlewareConsumer, Module, NestModule, RequestMethod } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { pinoHttp } from 'pino-http';
import { AppConfig } from 'src/config/app-config';
import { APP_CONFIG } from 'src/config/config.module';
import { SessionsModule } from 'src/sessions/sessions.module';
import { ActivityLogService } from './activity-log.service';
import { MailroomLogger } from './mailroom-logger';
import { pinoHttpOptions } from './pino-options';

/**
 * pino for every log line (see {@link pinoHttpOptions}) and the activity log fed by the session history.
 *
 * HTTP requests are logged by pino-http itself, not through nestjs-pino's middleware: that one binds
 * each request's logger with an AsyncLocalStorage, and once one is entered Node hooks every promise
 * of the process for good (about a tenth of its CPU per task). Nest's logger calls log through the
 * app's pino logger either way; a request's own lines carry its id from pino-http.
 */
@Module({})
export class LoggingModule implements NestModule {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: LoggingModule,
      imports: [LoggerModule.forRoot({ pinoHttp: pinoHttpOptions(config), forRoutes: [] }), SessionsModule],
      providers: [MailroomLogger, ActivityLogService],
      exports: [MailroomLogger],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    // Express 5's spelling of "every path".
    consumer
      .apply(pinoHttp(...pinoHttpOptions(this.config)))
      .forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}

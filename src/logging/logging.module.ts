import { DynamicModule, Inject, MiddlewareConsumer, Module, NestModule, RequestMethod } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import { HttpLogger, pinoHttp } from 'pino-http';
import { AppConfig } from 'src/config/app-config';
import { SessionsModule } from 'src/sessions/sessions.module';
import { ActivityLogService } from './activity-log.service';
import { MailroomLogger } from './mailroom-logger';
import { pinoHttpOptions } from './pino-options';

const HTTP_LOGGER = Symbol('HTTP_LOGGER');

/**
 * pino for every log line (see {@link pinoHttpOptions}) and the activity log fed by the session history.
 *
 * One pino logger, made by pino-http: it logs HTTP requests as a plain middleware, and nestjs-pino
 * logs Nest's calls through it (`useExisting`, no routes of its own). nestjs-pino's middleware would
 * bind each request's logger with an AsyncLocalStorage, and once one is entered Node hooks every
 * promise of the process for good (about a tenth of its CPU per task).
 */
@Module({})
export class LoggingModule implements NestModule {
  constructor(@Inject(HTTP_LOGGER) private readonly httpLogger: HttpLogger) {}

  static forRoot(config: AppConfig): DynamicModule {
    const httpLogger = pinoHttp(...pinoHttpOptions(config));
    return {
      module: LoggingModule,
      imports: [
        LoggerModule.forRoot({ pinoHttp: { logger: httpLogger.logger }, useExisting: true, forRoutes: [] }),
        SessionsModule,
      ],
      providers: [MailroomLogger, ActivityLogService, { provide: HTTP_LOGGER, useValue: httpLogger }],
      exports: [MailroomLogger],
    };
  }

  configure(consumer: MiddlewareConsumer): void {
    // Express 5's spelling of "every path".
    consumer.apply(this.httpLogger).forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}

import { INestApplication, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { json, text } from 'express';
import { AppModule } from './app.module';
import { Clock, SystemClock } from './common/clock';
import { AppConfig } from './config/app-config';
import { DataDirLock } from './database/data-dir-lock';
import { MailroomIoAdapter, messageLimitBytes } from './gateway/io.adapter';

const LEVELS: LogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'];

/** Builds and starts the service; `main.ts` and the tests both start it this way. */
export async function createApp(
  config: AppConfig,
  clock: Clock = new SystemClock(),
): Promise<INestApplication> {
  if (!config.databaseUrl) {
    DataDirLock.assertFree(config.dataDir); // refused before Nest logs a line; the database takes the lock
  }
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, clock), {
    logger: LEVELS.slice(0, LEVELS.indexOf(config.logLevel) + 1),
    bodyParser: false,
  });
  // POST /rpc reads its body as text, so that malformed JSON is a JSON-RPC parse_error, not an HTTP 400.
  const bodyLimit = messageLimitBytes(config.maxParamsBytes);
  app.use('/rpc', text({ type: () => true, limit: bodyLimit }));
  app.use(json({ limit: bodyLimit }));
  app.useWebSocketAdapter(new MailroomIoAdapter(app, config.maxParamsBytes));
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  return app;
}

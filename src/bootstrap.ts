import { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { NestExpressApplication } from '@nestjs/platform-express';
import { json, text } from 'express';
import { setupOpenApi } from './api/openapi';
import { AppModule } from './app.module';
import { Clock, SystemClock } from './common/clock';
import { AppConfig } from './config/app-config';
import { DataDirLock } from './database/data-dir-lock';
import { coalesceUpgradedWrites } from './gateway/coalesced-writes';
import { MailroomIoAdapter, messageLimitBytes } from './gateway/io.adapter';
import { MailroomLogger } from './logging/mailroom-logger';

/** Builds and starts the service; `main.ts` and the tests both start it this way. */
export async function createApp(
  config: AppConfig,
  clock: Clock = new SystemClock(),
): Promise<INestApplication> {
  if (!config.databaseUrl) {
    DataDirLock.assertFree(config.dataDir); // refused before Nest logs a line; the database takes the lock
  }
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, clock), {
    // Held until pino takes over, so that even the first lines come out as JSON (or pretty) at LOG_LEVEL.
    bufferLogs: true,
    bodyParser: false,
  });
  app.useLogger(app.get(MailroomLogger));
  // POST /rpc and /api read their bodies as text, so that malformed JSON is the protocol's parse_error.
  const bodyLimit = messageLimitBytes(config.maxParamsBytes);
  app.use('/rpc', text({ type: () => true, limit: bodyLimit }));
  app.use('/api', text({ type: () => true, limit: bodyLimit })); // bad JSON: the protocol's parse_error
  setupOpenApi(app);
  app.use(json({ limit: bodyLimit }));
  coalesceUpgradedWrites(app.getHttpServer());
  app.useWebSocketAdapter(new MailroomIoAdapter(app, config.maxParamsBytes));
  app.enableShutdownHooks();
  await app.listen(config.port, config.host);
  return app;
}

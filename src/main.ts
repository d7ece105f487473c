import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { StartupError } from './common/startup-error';
import { ConfigError, configFromProcessEnv } from './config/app-config';

async function main(): Promise<void> {
  const config = configFromProcessEnv();
  const app = await createApp(config);
  const where = config.databaseUrl ? 'Postgres' : `embedded PGlite in ${config.dataDir}`;
  Logger.log(
    `Mailroom listening on ${await app.getUrl()} (${where}, model: ${config.modelProvider})`,
    'Main',
  );
}

main().catch((err: unknown) => {
  // A bad configuration or a database to fix is one clear message, not a stack trace.
  console.error(err instanceof ConfigError || err instanceof StartupError ? err.message : err);
  process.exit(1);
});

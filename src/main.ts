import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { ConfigError, configFromProcessEnv } from './config/app-config';
import { DataDirInUseError } from './database/data-dir-lock';

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
  // A bad configuration, or a data folder another process holds, is one clear message, not a stack trace.
  console.error(err instanceof ConfigError || err instanceof DataDirInUseError ? err.message : err);
  process.exit(1);
});

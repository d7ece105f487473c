import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './bootstrap';
import { StartupError } from './common/startup-error';
import { ConfigError, configFromProcessEnv } from './config/app-config';
import { DataDirInUseError } from './database/data-dir-lock';

async function main(): Promise<void> {
  const config = configFromProcessEnv();
  const app = await createApp(config);
  const where = config.databaseUrl ? 'Postgres' : `embedded PGlite in ${config.dataDir}`;
  const url = await app.getUrl();
  Logger.log(
    `Mailroom listening on ${url} (${where}, model: ${config.modelProvider}). ` +
      `Dashboard: ${url}/ — open it in a browser, or run the client example in the README.`,
    'Main',
  );
}

main().catch((err: unknown) => {
  // A bad configuration, a database to fix, or a data folder another process holds, is one clear
  // message, not a stack trace.
  console.error(
    err instanceof ConfigError || err instanceof StartupError || err instanceof DataDirInUseError
      ? err.message
      : err,
  );
  process.exit(1);
});

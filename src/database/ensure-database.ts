import { Logger } from '@nestjs/common';
import { Client } from 'pg';
import { StartupError } from 'src/common/startup-error';

const INVALID_CATALOG_NAME = '3D000'; // the database does not exist
const DUPLICATE_DATABASE = '42P04'; // another node created it first
const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * Makes sure the database `url` names exists: creates it when it is missing and the role may
 * (CREATEDB), so `DATABASE_URL=postgres://…/mailroom npm start` works on a fresh server. Every
 * failure is a {@link StartupError} with one line saying what to do.
 */
export async function ensureDatabase(url: string, logger = new Logger('Database')): Promise<void> {
  const target = describe(url);
  try {
    await withClient(url, () => Promise.resolve());
    return;
  } catch (err) {
    if (codeOf(err) !== INVALID_CATALOG_NAME) {
      throw new StartupError(`Cannot connect to Postgres at ${target.where}: ${messageOf(err)}`);
    }
  }
  const create = `CREATE DATABASE ${quoteIdent(target.database)}`;
  let lastError: unknown;
  // Any database the role may connect to will do for CREATE DATABASE; these two exist on every server.
  for (const maintenance of ['postgres', 'template1']) {
    try {
      await withClient(withDatabase(url, maintenance), (c) => c.query(create));
      logger.log(`Created database "${target.database}"`);
      return;
    } catch (err) {
      if (codeOf(err) === DUPLICATE_DATABASE) {
        return;
      }
      if (codeOf(err) === INSUFFICIENT_PRIVILEGE) {
        throw new StartupError(
          `Database "${target.database}" does not exist at ${target.where} and role "${target.user}" may not create it: ` +
            `create it first (createdb -h ${target.host} -p ${target.port} -U <a role with CREATEDB> ${target.database}) ` +
            `or use a role with CREATEDB`,
        );
      }
      lastError = err;
    }
  }
  throw new StartupError(
    `Database "${target.database}" does not exist at ${target.where} and could not be created: ${messageOf(lastError)}`,
  );
}

async function withClient(url: string, fn: (client: Client) => Promise<unknown>): Promise<void> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  // A connection that fails later must not crash the process with an unhandled 'error' event.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Where the URL points, for messages: never its password. */
function describe(url: string) {
  const u = new URL(url);
  const database =
    decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username) || 'postgres';
  const host = u.hostname || 'localhost';
  const port = u.port || '5432';
  const user = decodeURIComponent(u.username) || 'postgres';
  return { database, host, port, user, where: `${host}:${port}/${database} (user "${user}")` };
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function codeOf(err: unknown): unknown {
  return (err as { code?: unknown } | undefined)?.code;
}

/** The driver's message on one line (an AggregateError of several addresses has an empty one). */
function messageOf(err: unknown): string {
  const e = err as { message?: string; code?: string; errors?: Array<{ message?: string }> } | undefined;
  const text = e?.message || e?.errors?.map((x) => x.message).join('; ') || e?.code || String(err);
  return text.replace(/\s+/g, ' ').trim();
}

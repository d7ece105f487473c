import { Client } from 'pg';

/**
 * A new, empty database `name` on the Postgres server `server` (an existing one of that name is
 * dropped first): its URL, and a way to drop it again.
 */
export async function freshDatabase(
  server: string,
  name: string,
): Promise<{ url: string; drop: () => Promise<void> }> {
  const admin = async (text: string) => {
    const c = new Client({ connectionString: server, connectionTimeoutMillis: 2000 });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end().catch(() => undefined);
    }
  };
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

import { Client } from 'pg';
import { literal } from './literals';

/**
 * A transaction on a Postgres server whose `BEGIN` went with its first statements and whose
 * `COMMIT` goes with its last (DatabaseService.transactionFused, `queryAndCommit` in sql.ts): each
 * is text in the same simple query, so a short transaction pays two round trips fewer.
 */
export interface FusedTx {
  client: Client;
  phase: 'open' | 'committing' | 'committed';
}

/** Open fused transactions, by their Tx (the query runner's EntityManager). */
export const fusedTxs = new WeakMap<object, FusedTx>();

/** Texts prepared for fused queries, by name; bounded, since some texts are built. */
const PREPARED_MAX = 500;
const names = new Map<string, string>();
/** Texts the server would not prepare: written out in full each time. */
const unpreparable = new Set<string>();
/** The names prepared on each connection (a new connection prepares again). */
const preparedOn = new WeakMap<Client, Set<string>>();

/**
 * Makes sure `text` is prepared on the connection (once per connection, with SQL `PREPARE`, under
 * a name of its own: the driver's own named statements are kept apart) and gives its name;
 * undefined when it cannot be. In a transaction the `PREPARE` is tried in a savepoint, so that a
 * refusal does not fail the transaction.
 */
export async function prepareFused(
  client: Client,
  text: string,
  inTransaction: boolean,
): Promise<string | undefined> {
  let name = names.get(text);
  if (name === undefined) {
    if (names.size >= PREPARED_MAX || unpreparable.has(text)) {
      return undefined;
    }
    name = `mailroom_fused_${names.size}`;
    names.set(text, name);
  }
  let prepared = preparedOn.get(client);
  if (!prepared) {
    prepared = new Set();
    preparedOn.set(client, prepared);
  }
  if (prepared.has(name)) {
    return name;
  }
  // Each its own query: the server parses a whole query before running any of it, so a PREPARE it
  // refuses to parse would fail a savepoint sent with it too (and the transaction with it).
  if (inTransaction) {
    await client.query('SAVEPOINT mailroom_prepare');
  }
  try {
    await client.query(`PREPARE ${name} AS ${text}`);
    if (inTransaction) {
      await client.query('RELEASE SAVEPOINT mailroom_prepare');
    }
  } catch (err) {
    if (inTransaction) {
      await client.query('ROLLBACK TO SAVEPOINT mailroom_prepare; RELEASE SAVEPOINT mailroom_prepare');
    }
    if (isRefusal(err)) {
      unpreparable.add(text);
      return undefined;
    }
    throw err;
  }
  prepared.add(name);
  return name;
}

/**
 * The statement as one statement of a simple query (which takes no parameters): `EXECUTE` of its
 * prepared copy with the parameters as literals, or, when it has none, the text with its `$n`
 * placeholders replaced by literals (only for texts holding no `$` but placeholders).
 */
export function executable(text: string, params: unknown[], prepared: string | undefined): string {
  if (prepared !== undefined) {
    return params.length > 0
      ? `EXECUTE ${prepared}(${params.map(literal).join(', ')})`
      : `EXECUTE ${prepared}`;
  }
  return text.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1]));
}

/** An error of the statement (SQLSTATE class 42: syntax, unknown types…), not of the connection. */
function isRefusal(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('42');
}

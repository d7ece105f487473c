import { Client } from 'pg';
import { literal } from './literals';
import { PreparedTexts } from './prepared-texts';

/**
 * A transaction on a Postgres server whose `BEGIN` went with its first statements and whose
 * `COMMIT` goes with its last (DatabaseService.transactionFused, `queryAndCommit` in sql.ts): each
 * is text in the same simple query, so a short transaction pays two round trips fewer.
 */
export interface FusedTx {
  client: Client;
  phase: 'open' | 'committing' | 'committed';
  /**
   * Statements whose results nobody waits for (`defer` in sql.ts), in order, not sent yet: they
   * travel in front of the transaction's next statement, or with its `COMMIT`.
   */
  pending: Array<{ text: string; params: unknown[] }>;
  /** A statement being sent with the pending ones in front of it; later statements wait for it, so order is kept. */
  sending?: Promise<unknown>;
}

/**
 * The pending statements of `fused` (taken off it) as statements of one simple query, each `EXECUTE`
 * of its prepared copy: what goes in front of the next statement.
 */
export function takePending(fused: FusedTx): Promise<string[]> {
  return executables(fused.client, fused.pending.splice(0));
}

/** Statements as statements of one simple query, each `EXECUTE` of its copy prepared on `client`. */
export async function executables(
  client: Client,
  pending: Array<{ text: string; params: unknown[] }>,
): Promise<string[]> {
  const texts: string[] = [];
  for (const p of pending) {
    texts.push(executable(p.text, p.params, await prepareFused(client, p.text, true)));
  }
  return texts;
}

/** Open fused transactions, by their Tx (the query runner's EntityManager). */
export const fusedTxs = new WeakMap<object, FusedTx>();

/** Texts of fused queries, under names of their own (the driver's own named statements are kept apart). */
const texts = new PreparedTexts('mailroom_fused_');
/** The names prepared on each connection (a new connection prepares again). */
const preparedOn = new WeakMap<Client, Set<string>>();

/**
 * Makes sure `text` is prepared on the connection (once per connection, with SQL `PREPARE`) and
 * gives its name; undefined when it cannot be (see PreparedTexts.prepare).
 */
export function prepareFused(
  client: Client,
  text: string,
  inTransaction: boolean,
): Promise<string | undefined> {
  let prepared = preparedOn.get(client);
  if (!prepared) {
    prepared = new Set();
    preparedOn.set(client, prepared);
  }
  return texts.prepare((sql) => client.query(sql), prepared, text, inTransaction);
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

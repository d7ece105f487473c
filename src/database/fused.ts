import { Client } from 'pg';

/**
 * A transaction on a Postgres server whose `BEGIN` went with its first statement and whose
 * `COMMIT` goes with its last (DatabaseService.transactionFused, `queryAndCommit` in sql.ts): each
 * is text in the same simple query, so a batch pays two round trips fewer.
 */
export interface FusedTx {
  client: Client;
  phase: 'open' | 'committing' | 'committed';
}

/** Open fused transactions, by their Tx (the query runner's EntityManager). */
export const fusedTxs = new WeakMap<object, FusedTx>();

/**
 * The statement with its `$n` placeholders replaced by literals, for the simple query protocol
 * (which takes no parameters). Only for statements whose text holds no `$` but its placeholders.
 * Strings go through the driver's escaping; a value of another kind is refused.
 */
export function inline(text: string, params: unknown[], client: Client): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1], client));
}

function literal(value: unknown, client: Client): string {
  if (value === null || value === undefined) {
    return 'NULL';
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new Error(`cannot inline the number ${value}`);
    }
    return `(${value})`;
  }
  if (typeof value === 'boolean') {
    return value ? 'TRUE' : 'FALSE';
  }
  if (typeof value === 'string') {
    return client.escapeLiteral(value);
  }
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
    // Postgres's array text: each element double-quoted, its backslashes and quotes escaped.
    const elements = value.map((v) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`);
    return client.escapeLiteral(`{${elements.join(',')}}`);
  }
  throw new Error(`cannot inline a parameter of type ${typeof value}`);
}

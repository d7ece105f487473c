import { Client, QueryResult } from 'pg';
import type { EntityManager } from 'typeorm';
import type { Tx } from './database.service';
import { embeddedStatements } from './embedded-statements';
import { holdsNul } from './literals';
import { executable, executables, FusedTx, fusedTxs, prepareFused, takePending } from './fused';
import { PreparedTexts } from './prepared-texts';

// What DatabaseService's `sql` does; not imported from there, which imports this file.
const manager = (tx: Tx) => tx as unknown as EntityManager;

/** A statement with its parameters, and what its rows mean. */
export interface Statement<R> {
  text: string;
  params: unknown[];
  result(rows: unknown[]): R;
}

/** Runs a statement built elsewhere (a repository's) and gives its result. */
export async function run<R>(tx: Tx, statement: Statement<R>): Promise<R> {
  return statement.result(await query(tx, statement.text, statement.params));
}

/** Names of the driver's named statements (prepared on the connections they run on). */
const driverNames = new PreparedTexts('mailroom_');

/**
 * Runs one statement and returns its rows. Inside a transaction on a Postgres server it goes straight
 * to the connection as a named prepared statement: parsed and planned once per connection instead of
 * on every call (the hot path's statements run thousands of times a second); on the embedded
 * database, prepared with PREPARE and run with EXECUTE (EmbeddedStatements). Otherwise through
 * TypeORM, whose postgres driver answers UPDATE/DELETE with `[rows, count]` and everything else
 * with `rows`; repositories should not care.
 */
export async function query<T>(tx: Tx, text: string, params: unknown[] = []): Promise<T[]> {
  const fused = fusedTxs.get(tx);
  if (fused && fused.phase !== 'open') {
    throw new Error('a statement after the commit of its transaction');
  }
  if (fused && (fused.pending.length > 0 || fused.sending)) {
    return behindPending<T>(fused, text, params);
  }
  const runner = manager(tx).queryRunner as { databaseConnection?: unknown; isReleased: boolean } | undefined;
  const client = runner?.databaseConnection;
  if (client instanceof Client && !runner!.isReleased) {
    const result = await client.query<T & object>({ name: driverNames.nameOf(text), text, values: params });
    return result.rows;
  }
  const embedded = embeddedStatements.get(manager(tx).connection);
  const result: unknown = embedded
    ? await embedded.query(manager(tx), text, params)
    : await manager(tx).query(text, params);
  if (
    Array.isArray(result) &&
    result.length === 2 &&
    Array.isArray(result[0]) &&
    typeof result[1] === 'number'
  ) {
    return result[0] as T[];
  }
  return result as T[];
}

/**
 * Runs a statement whose result nobody needs (an UPDATE or INSERT without RETURNING) in `tx`. In a
 * fused transaction on a Postgres server it is not sent now: it goes in front of the transaction's
 * next statement, or with its `COMMIT`, in the same round trip (the order of statements is kept).
 * Its failure fails the transaction as any statement's would, only at that later point, and is
 * reported as the failure of the statement it travelled with (in a batch of session writes, of
 * that statement's write): defer only statements that fail only when the database does, never one
 * whose error someone means to catch. Elsewhere it runs at once.
 */
export async function defer(tx: Tx, text: string, params: unknown[] = []): Promise<void> {
  const fused = fusedTxs.get(tx);
  // A simple query's text cannot hold a NUL (the protocol ends the text there, and the server
  // takes the connection's stream for broken): a statement carrying one is sent now, as bound
  // parameters, so that the server refuses it as this statement's own error (text holds no NUL).
  if (!fused || params.some(holdsNul)) {
    await query(tx, text, params);
    return;
  }
  if (fused.phase !== 'open') {
    throw new Error('a statement after the commit of its transaction');
  }
  fused.pending.push({ text, params });
}

/** {@link query} with the pending statements of `fused` in front of it, as one simple query. */
function behindPending<T>(fused: FusedTx, text: string, params: unknown[]): Promise<T[]> {
  // Taken now: what is deferred after this call goes behind this statement, not in front of it.
  const taken = fused.pending.splice(0);
  const send = async () => sendFused<T>(fused, await executables(fused.client, taken), { text, params });
  const turn = (fused.sending ?? Promise.resolve()).then(send, send);
  const sending = turn.then(
    () => undefined,
    () => undefined,
  );
  fused.sending = sending;
  void sending.then(() => {
    if (fused.sending === sending) {
      fused.sending = undefined;
    }
  });
  return turn;
}

/**
 * Sends `front` (pending statements, as `EXECUTE`s), then `own`, then `COMMIT` when `commit`, as
 * one simple query, and gives `own`'s rows. A statement whose parameters hold U+0000 cannot be
 * written as literals (see {@link defer}): it goes with bound parameters after `front`, and the
 * `COMMIT` after it.
 */
async function sendFused<T>(
  fused: FusedTx,
  front: string[],
  own?: { text: string; params: unknown[] },
  commit = false,
): Promise<T[]> {
  const { client } = fused;
  if (commit) {
    fused.phase = 'committing';
  }
  let parts = front;
  let rows: T[] = [];
  if (own && own.params.some(holdsNul)) {
    if (front.length > 0) {
      await client.query(front.join('; '));
    }
    rows = (
      await client.query<T & object>({
        name: driverNames.nameOf(own.text),
        text: own.text,
        values: own.params,
      })
    ).rows;
    parts = [];
  } else if (own) {
    parts = [...front, executable(own.text, own.params, await prepareFused(client, own.text, true))];
  }
  const all = commit ? [...parts, 'COMMIT'] : parts;
  if (all.length > 0) {
    const results = (await client.query(all.join('; '))) as unknown as QueryResult | QueryResult[];
    if (own && parts.length > 0) {
      rows = (Array.isArray(results) ? results[parts.length - 1] : results).rows as T[];
    }
  }
  if (commit) {
    fused.phase = 'committed';
  }
  return rows;
}

/**
 * Commits a fused transaction whose last statement did not take the `COMMIT` along: what is still
 * pending goes with it (DatabaseService.transactionFused).
 */
export async function commitFused(fused: FusedTx): Promise<void> {
  await fused.sending;
  await sendFused(fused, await takePending(fused), undefined, true);
}

/**
 * Runs the last statement of a transaction; in a fused transaction (DatabaseService.transactionFused)
 * with the `COMMIT` in the same round trip, as a simple query (`EXECUTE` of its prepared copy, see
 * fused.ts). When the statement fails, the `COMMIT` is not run and the transaction rolls back.
 * Elsewhere a plain statement, committed when the transaction ends. Nothing may follow it.
 */
export async function queryAndCommit<T>(tx: Tx, text: string, params: unknown[] = []): Promise<T[]> {
  const fused = fusedTxs.get(tx);
  if (!fused) {
    return query<T>(tx, text, params);
  }
  if (fused.phase !== 'open') {
    throw new Error('a statement after the commit of its transaction');
  }
  await fused.sending;
  return sendFused<T>(fused, await takePending(fused), { text, params }, true);
}

export async function queryOne<T>(tx: Tx, text: string, params: unknown[] = []): Promise<T | undefined> {
  const rows = await query<T>(tx, text, params);
  return rows[0];
}

/** ISO 8601 UTC from whatever the driver returned for a timestamptz (Date or string). */
export function iso(value: Date | string | null | undefined): string | null {
  if (value === null || value === undefined) {
    return null;
  }
  return (value instanceof Date ? value : new Date(value)).toISOString();
}

/** A number from an int8/numeric column (pg returns strings, PGlite numbers). */
export function num(value: number | string | bigint | null | undefined): number {
  return value === null || value === undefined ? 0 : Number(value);
}

/**
 * Inputs shorter than the planner's own guess of 100 rows are read with `mailroom_few_elements` (see
 * {@link elementsOf}): taken for one row, they are joined by nested loops, which for fewer than 100
 * rows costs less than the table scans the guess led to; a batch of writes holds at most
 * `COMMIT_BATCH_MAX` (64 by default). From 100 rows on the guess is the better estimate.
 */
export const FEW_ELEMENTS = 99;

/**
 * The rows of the JSON array `param` holds (`count` of them), for a statement's FROM. A short array
 * goes through `mailroom_few_elements` (migration 1765200000000), which the planner takes for one
 * row, so the tables the statement joins are read by their keys; a long one through
 * `jsonb_array_elements`, taken for 100 rows, so it is joined by hash. The two give different
 * statement texts, each prepared once per connection.
 */
export function elementsOf(param: string, count: number): string {
  return `${count <= FEW_ELEMENTS ? 'mailroom_few_elements' : 'jsonb_array_elements'}(${param})`;
}

/**
 * The key of a row of `alias` by its session and agent (the agent's id in `agentColumn`) as one
 * text, for {@link rowByKey} and {@link keyIn}. A batch statement holds at most one row per agent.
 */
export function agentKey(alias: string, agentColumn = 'agent_id'): string {
  return `${alias}.session_id || chr(31) || ${alias}.${agentColumn}`;
}

/**
 * The row of the CTE `cte` whose key (`cteKey`, over the alias `r`) is `key`, as jsonb (null when
 * there is none). A join of a batch statement's input to what its CTEs made is planned as a nested
 * loop (the planner takes a short input, and so each CTE, for one row: see {@link elementsOf}),
 * which reads the CTE again for every input row, quadratic in the batch. Here the CTE is read once,
 * into one object by key (an uncorrelated subquery: run once), in which each row is looked up.
 */
export function rowByKey(cte: string, cteKey: string, key: string): string {
  return `((SELECT jsonb_object_agg(${cteKey}, to_jsonb(r)) FROM ${cte} r) -> (${key}))`;
}

/** True when the CTE `cte` has a row whose key (`cteKey`, over the alias `r`) is `key`; the CTE read once, as {@link rowByKey}. */
export function keyIn(cte: string, cteKey: string, key: string): string {
  return `(${key}) = ANY (ARRAY(SELECT ${cteKey} FROM ${cte} r))`;
}

/**
 * `value` as JSON for a jsonb parameter. Postgres stores neither U+0000 nor an unpaired UTF-16
 * surrogate (jsonb refuses their escapes, and one refused record would fail its whole batch), yet
 * a model's or an MCP server's output may hold them: they are stored as U+FFFD instead. A client's
 * params holding them are refused before they get here (RpcDispatcher).
 */
export function json(value: unknown): string {
  const text = JSON.stringify(value ?? null);
  // JSON.stringify writes both as `\u` escapes (a surrogate pair stays as it is): only a text with
  // such an escape (or a string that spells one) is looked at again.
  return UNSTORABLE_ESCAPE.test(text) ? JSON.stringify(storable(value ?? null)) : text;
}

const UNSTORABLE_ESCAPE = /\\u(0000|d[89a-f])/i;
// eslint-disable-next-line no-control-regex -- U+0000 is what it looks for
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** `text` with U+0000 and unpaired surrogates replaced by U+FFFD: what a text or jsonb column can hold. */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE, '\uFFFD');
}

function storable(value: unknown): unknown {
  if (typeof value === 'string') {
    return storableText(value);
  }
  if (Array.isArray(value)) {
    return value.map(storable);
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Date)) {
    const copy: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      copy[storableText(k)] = storable(v);
    }
    return copy;
  }
  return value;
}

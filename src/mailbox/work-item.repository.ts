import { Injectable } from '@nestjs/common';
import { isUuid, Priority, PRIORITY_RANK } from 'src/common/names';
import { Tx } from 'src/database/database.service';
import {
  agentKey,
  defer,
  elementsOf,
  iso,
  json,
  num,
  query,
  queryOne,
  rowByKey,
  run,
  Statement,
} from 'src/database/sql';
import { Usage, WorkItem, WorkKind, WorkPayload, WorkState } from './mailbox.types';

export interface WorkItemRow {
  id: string;
  session_id: string;
  agent_id: string;
  kind: WorkKind;
  priority: number;
  is_switch: boolean;
  hops: number;
  state: WorkState;
  attempts: number;
  idempotency_key: string | null;
  prompt: string;
  payload: WorkPayload;
  result: { final: string } | null;
  error: { code: string; message: string } | null;
  usage: Usage | null;
  created_at: Date | string;
  started_at: Date | string | null;
  finished_at: Date | string | null;
}

const PRIORITY_BY_RANK = Object.fromEntries(Object.entries(PRIORITY_RANK).map(([k, v]) => [v, k])) as Record<
  number,
  Priority
>;

export const toItem = (r: WorkItemRow): WorkItem => ({
  taskId: r.id,
  sessionId: r.session_id,
  agentId: r.agent_id,
  kind: r.kind,
  priority: PRIORITY_BY_RANK[r.priority] ?? 'normal',
  isSwitch: r.is_switch,
  hops: r.hops,
  state: r.state,
  attempts: r.attempts,
  idempotencyKey: r.idempotency_key,
  prompt: r.prompt,
  payload: r.payload,
  result: r.result,
  error: r.error,
  usage: r.usage,
  createdAt: iso(r.created_at)!,
  startedAt: iso(r.started_at),
  finishedAt: iso(r.finished_at),
});

export interface NewWorkItem {
  sessionId: string;
  agentId: string;
  kind: WorkKind;
  priority: Priority;
  isSwitch?: boolean;
  /** Defaults to 0: work from a client or a timer. */
  hops?: number;
  idempotencyKey?: string;
  prompt: string;
  payload?: WorkPayload;
  createdAt: string;
}

/** A new item's columns as `$1`…`$10` of the inserting statements (`insert`, `enqueue`). */
const columnsOf = (item: NewWorkItem): unknown[] => [
  item.sessionId,
  item.agentId,
  item.kind,
  PRIORITY_RANK[item.priority],
  item.isSwitch ?? false,
  item.idempotencyKey ?? null,
  item.prompt,
  json(item.payload ?? {}),
  item.createdAt,
  item.hops ?? 0,
];

/** An item to queue, with its agent's queue limit (none: null). */
export interface ToEnqueue {
  item: NewWorkItem;
  maxQueued: number | null;
  /**
   * Claim it at once when its agent is `idle` with nothing else queued: the item is inserted
   * `running` (its first attempt, started when created) and the agent made `active` (a hand-off).
   */
  claim?: boolean;
}

/** What queueing an item found and did (see WorkItemRepository.enqueue). */
export interface QueueOutcome {
  agentExists: boolean;
  queued: number;
  earlier?: WorkItem;
  /** The new item: `running` when it was claimed, and then `claimedBy` is its agent's row as it became `active`. */
  inserted?: WorkItem;
  claimedBy?: unknown;
}

interface QueueRow {
  agent_exists: boolean;
  queued: number | string;
  earlier: WorkItemRow | null;
  inserted: WorkItemRow | null;
  claimed_by: unknown;
}

@Injectable()
export class WorkItemRepository {
  /**
   * Queues an item. With an idempotency key already used for that agent, nothing is inserted and
   * the earlier item is returned with `created: false`.
   */
  async insert(tx: Tx, item: NewWorkItem): Promise<{ item: WorkItem; created: boolean }> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `INSERT INTO work_item (session_id, agent_id, kind, priority, is_switch, state, idempotency_key, prompt, payload, created_at, hops)
       VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8::jsonb, $9::timestamptz, $10)
       ON CONFLICT (session_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
       RETURNING *`,
      columnsOf(item),
    );
    if (row) {
      return { item: toItem(row), created: true };
    }
    const existing = await queryOne<WorkItemRow>(
      tx,
      `SELECT * FROM work_item WHERE session_id = $1 AND agent_id = $2 AND idempotency_key = $3`,
      [item.sessionId, item.agentId, item.idempotencyKey],
    );
    return { item: toItem(existing!), created: false };
  }

  /**
   * Queues an item in one statement, with what a queue needs to know around it: whether the agent
   * exists, how many items were queued before, and the earlier item of a repeated idempotency key.
   * Nothing is inserted when the agent is missing, the key was used, or `maxQueued` items already wait.
   * With `claim`, see {@link ToEnqueue.claim}.
   */
  async enqueue(tx: Tx, item: NewWorkItem, maxQueued: number | null, claim = false): Promise<QueueOutcome> {
    return (await this.enqueueMany(tx, [{ item, maxQueued, claim }]))[0];
  }

  /**
   * {@link enqueue} for several items (of one session or of several, each for a different agent)
   * in one statement; one result per item, in order (a segment of a group commit, see HistoryService).
   */
  enqueueMany(tx: Tx, items: ToEnqueue[]): Promise<QueueOutcome[]> {
    return run(tx, this.enqueueManyStatement(items));
  }

  /** {@link enqueueMany} as a statement (for a batch that sends it with its lock, see HistoryService). */
  enqueueManyStatement(items: ToEnqueue[]): Statement<QueueOutcome[]> {
    const input = items.map(({ item, maxQueued, claim }) => ({
      session_id: item.sessionId,
      agent_id: item.agentId,
      kind: item.kind,
      priority: PRIORITY_RANK[item.priority],
      is_switch: item.isSwitch ?? false,
      idempotency_key: item.idempotencyKey ?? null,
      prompt: item.prompt,
      payload: item.payload ?? {},
      created_at: item.createdAt,
      hops: item.hops ?? 0,
      max_queued: maxQueued,
      claim: claim ?? false,
    }));
    return {
      text: `WITH input AS (
         SELECT x.n, x.e->>'session_id' AS session_id, x.e->>'agent_id' AS agent_id, x.e->>'kind' AS kind,
           (x.e->>'priority')::int AS priority, (x.e->>'is_switch')::boolean AS is_switch,
           x.e->>'idempotency_key' AS idempotency_key, x.e->>'prompt' AS prompt, x.e->'payload' AS payload,
           (x.e->>'created_at')::timestamptz AS created_at, (x.e->>'hops')::int AS hops,
           (x.e->>'max_queued')::int AS max_queued, (x.e->>'claim')::boolean AS claim
         FROM ${elementsOf('$1::jsonb', items.length)} WITH ORDINALITY AS x(e, n)),
       -- What the statement needs to know of each input row, read once (MATERIALIZED: referenced
       -- twice, it is not inlined, and no lookup runs again inside a join). Separate CTEs joined on
       -- n were joined by nested loops, one of them planned inside another: cubic in the batch.
       facts AS MATERIALIZED (
         SELECT i.*, a.state AS agent_state,
           (SELECT count(*) FROM work_item w
            WHERE w.session_id = i.session_id AND w.agent_id = i.agent_id AND w.state = 'queued')::int AS queued,
           (SELECT row_to_json(w) FROM work_item w
            WHERE w.session_id = i.session_id AND w.agent_id = i.agent_id
              AND w.idempotency_key = i.idempotency_key) AS earlier
         FROM input i LEFT JOIN agent a ON a.session_id = i.session_id AND a.id = i.agent_id),
       inserted AS (
         INSERT INTO work_item (session_id, agent_id, kind, priority, is_switch, state, idempotency_key, prompt, payload, created_at, hops, started_at, attempts)
         SELECT f.session_id, f.agent_id, f.kind, f.priority, f.is_switch, c.state, f.idempotency_key, f.prompt, f.payload, f.created_at, f.hops,
           CASE WHEN c.state = 'running' THEN f.created_at END, CASE WHEN c.state = 'running' THEN 1 ELSE 0 END
         FROM facts f
         -- An idle agent with nothing queued (so nothing running either) takes the item as it is queued.
         CROSS JOIN LATERAL (SELECT CASE WHEN f.claim AND f.agent_state = 'idle' AND f.queued = 0
                                         THEN 'running' ELSE 'queued' END AS state) c
         WHERE f.agent_state IS NOT NULL AND f.earlier IS NULL AND (f.max_queued IS NULL OR f.queued < f.max_queued)
         ORDER BY f.n
         ON CONFLICT (session_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING *),
       -- Only for an item that was inserted (a repeated idempotency key inserts nothing).
       active AS (
         UPDATE agent a SET state = 'active', last_active_at = w.started_at
         FROM inserted w WHERE w.state = 'running' AND a.session_id = w.session_id AND a.id = w.agent_id
         RETURNING a.*)
       SELECT f.agent_state IS NOT NULL AS agent_exists, f.queued, f.earlier,
         ${rowByKey('inserted', agentKey('r'), agentKey('f'))} AS inserted,
         ${rowByKey('active', agentKey('r', 'id'), agentKey('f'))} AS claimed_by
       FROM facts f
       ORDER BY f.n`,
      params: [json(input)],
      result: (rows) =>
        (rows as QueueRow[]).map((row) => ({
          agentExists: Boolean(row.agent_exists),
          queued: num(row.queued),
          ...(row.earlier ? { earlier: toItem(row.earlier) } : {}),
          ...(row.inserted ? { inserted: toItem(row.inserted) } : {}),
          ...(row.claimed_by ? { claimedBy: row.claimed_by } : {}),
        })),
    };
  }

  async findByIdempotencyKey(
    tx: Tx,
    sessionId: string,
    agentId: string,
    key: string,
  ): Promise<WorkItem | undefined> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `SELECT * FROM work_item WHERE session_id = $1 AND agent_id = $2 AND idempotency_key = $3`,
      [sessionId, agentId, key],
    );
    return row && toItem(row);
  }

  async find(tx: Tx, sessionId: string, taskId: string): Promise<WorkItem | undefined> {
    if (!isUuid(taskId)) {
      return undefined;
    }
    const row = await queryOne<WorkItemRow>(tx, `SELECT * FROM work_item WHERE session_id = $1 AND id = $2`, [
      sessionId,
      taskId,
    ]);
    return row && toItem(row);
  }

  /**
   * Marks the agent's next queued item running and returns it: sync-switch mail first, then
   * priority, then first in, first out. SKIP LOCKED keeps two claimers (on a server) apart.
   */
  async claimNext(tx: Tx, sessionId: string, agentId: string, at: string): Promise<WorkItem | undefined> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `UPDATE work_item SET state = 'running', started_at = $3::timestamptz, attempts = attempts + 1
       WHERE id = (
         SELECT id FROM work_item
         WHERE session_id = $1 AND agent_id = $2 AND state = 'queued'
         ORDER BY is_switch DESC, priority DESC, seq
         LIMIT 1 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [sessionId, agentId, at],
    );
    return row && toItem(row);
  }

  async finish(
    tx: Tx,
    taskId: string,
    outcome: {
      state: 'done' | 'failed' | 'cancelled';
      result?: { final: string };
      error?: { code: string; message: string };
      usage?: Usage;
      at: string;
    },
  ): Promise<WorkItem | undefined> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `UPDATE work_item SET state = $2, result = $3::jsonb, error = $4::jsonb, usage = $5::jsonb, finished_at = $6::timestamptz
       WHERE id = $1 AND state IN ('queued', 'running') RETURNING *`,
      [
        taskId,
        outcome.state,
        outcome.result ? json(outcome.result) : null,
        outcome.error ? json(outcome.error) : null,
        outcome.usage ? json(outcome.usage) : null,
        outcome.at,
      ],
    );
    return row && toItem(row);
  }

  /** Puts a running item back in the queue (its agent was stopped mid-step); it keeps its place. */
  async requeue(tx: Tx, taskId: string): Promise<boolean> {
    const rows = await query<{ id: string }>(
      tx,
      `UPDATE work_item SET state = 'queued', started_at = NULL WHERE id = $1 AND state = 'running' RETURNING id`,
      [taskId],
    );
    return rows.length > 0;
  }

  /** Running items of these sessions (all sessions when undefined): a dead owner's, or a lost loop's. */
  async listRunning(tx: Tx, sessionIds?: string[]): Promise<WorkItem[]> {
    const rows = await query<WorkItemRow>(
      tx,
      `SELECT * FROM work_item WHERE state = 'running' AND ($1::text[] IS NULL OR session_id = ANY($1::text[]))
       ORDER BY seq`,
      [sessionIds ?? null],
    );
    return rows.map(toItem);
  }

  /**
   * True when the agent has queued work that would have woken it had it been asleep: switch mail,
   * a schedule firing, an event it listens to, or mail its wake events ask for. Used before a deferred sleep starts.
   */
  async hasWakingWork(tx: Tx, sessionId: string, agentId: string, wakeEvents: string[]): Promise<boolean> {
    const row = await queryOne<{ waking: boolean }>(
      tx,
      `SELECT EXISTS (
         SELECT 1 FROM work_item
         WHERE session_id = $1 AND agent_id = $2 AND state = 'queued' AND (
           is_switch
           OR kind = 'schedule'
           OR (kind = 'event' AND payload->>'event' IN (SELECT jsonb_array_elements_text($3::jsonb)))
           OR (kind = 'mailbox_message' AND ($4 OR ($5 AND priority >= 2))))
       ) AS waking`,
      [
        sessionId,
        agentId,
        json(wakeEvents),
        wakeEvents.includes('mail_received'),
        wakeEvents.includes('high_priority_mail'),
      ],
    );
    return Boolean(row?.waking);
  }

  /**
   * Agents that are idle with work queued (of these sessions; of all without): what the backstop poll
   * wakes, and what a node that takes sessions up wakes in them.
   */
  async listClaimable(tx: Tx, sessionIds?: string[]): Promise<Array<{ sessionId: string; agentId: string }>> {
    const rows = await query<{ session_id: string; agent_id: string }>(
      tx,
      `SELECT DISTINCT w.session_id, w.agent_id FROM work_item w
       JOIN agent a ON a.session_id = w.session_id AND a.id = w.agent_id
       WHERE w.state = 'queued' AND a.state = 'idle' AND ($1::text[] IS NULL OR w.session_id = ANY($1::text[]))`,
      [sessionIds ?? null],
    );
    return rows.map((r) => ({ sessionId: r.session_id, agentId: r.agent_id }));
  }

  async countQueued(tx: Tx, sessionId: string, agentId: string): Promise<number> {
    const row = await queryOne<{ n: number }>(
      tx,
      `SELECT count(*)::int AS n FROM work_item WHERE session_id = $1 AND agent_id = $2 AND state = 'queued'`,
      [sessionId, agentId],
    );
    return num(row?.n);
  }

  /** Queued items per agent, for each of `agentIds` (0 for those with none). */
  async countQueuedEach(tx: Tx, sessionId: string, agentIds: string[]): Promise<Map<string, number>> {
    const rows = await query<{ agent_id: string; n: number }>(
      tx,
      `SELECT agent_id, count(*)::int AS n FROM work_item
       WHERE session_id = $1 AND agent_id = ANY($2::text[]) AND state = 'queued'
       GROUP BY agent_id`,
      [sessionId, agentIds],
    );
    const counts = new Map(agentIds.map((id) => [id, 0]));
    for (const r of rows) {
      counts.set(r.agent_id, num(r.n));
    }
    return counts;
  }

  /**
   * Queues the same item (no idempotency key) for each of `agentIds` in one statement; their queue
   * order (`seq`) follows the order of `agentIds`. Nothing comes back, so the statement travels with
   * the transaction's next one (`defer`).
   */
  async insertForEach(
    tx: Tx,
    agentIds: string[],
    item: Omit<NewWorkItem, 'agentId' | 'idempotencyKey'>,
  ): Promise<void> {
    if (agentIds.length === 0) {
      return;
    }
    await defer(
      tx,
      `INSERT INTO work_item (session_id, agent_id, kind, priority, is_switch, state, prompt, payload, created_at, hops)
       SELECT $1, t.agent_id, $3, $4, $5, 'queued', $6, $7::jsonb, $8::timestamptz, $9
       FROM unnest($2::text[]) WITH ORDINALITY AS t(agent_id, n)
       ORDER BY t.n`,
      [
        item.sessionId,
        agentIds,
        item.kind,
        PRIORITY_RANK[item.priority],
        item.isSwitch ?? false,
        item.prompt,
        json(item.payload ?? {}),
        item.createdAt,
        item.hops ?? 0,
      ],
    );
  }

  async findRunning(tx: Tx, sessionId: string, agentId: string): Promise<WorkItem | undefined> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `SELECT * FROM work_item WHERE session_id = $1 AND agent_id = $2 AND state = 'running' LIMIT 1`,
      [sessionId, agentId],
    );
    return row && toItem(row);
  }

  /** The queued work item a mail made, if it has not been taken yet. */
  async findQueuedForMail(tx: Tx, sessionId: string, messageId: string): Promise<WorkItem | undefined> {
    const row = await queryOne<WorkItemRow>(
      tx,
      `SELECT * FROM work_item WHERE session_id = $1 AND state = 'queued' AND payload->>'messageId' = $2`,
      [sessionId, messageId],
    );
    return row && toItem(row);
  }
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { defer, iso, json, num, query, queryOne, run } from 'src/database/sql';
import { wakeStatement, WokenAgent } from './wake-statement';
import { Agent, AgentConfig, AgentState, AgentStateSnapshot, DEFAULT_LIMITS, WorkKind } from './agent.types';

export interface AgentRow {
  session_id: string;
  id: string;
  template: string;
  config: AgentConfig;
  state: AgentState;
  stop_reason: string | null;
  waiting_on: string | null;
  wake_events: string[];
  sleeping_until: Date | string | null;
  error_count: number;
  last_error: string | null;
  last_active_at: Date | string | null;
  tokens_used: number | string;
  created_at: Date | string;
}

export const toAgent = (r: AgentRow): Agent => ({
  sessionId: r.session_id,
  agentId: r.id,
  template: r.template,
  // Agents stored before a limit existed get its default.
  config: { ...r.config, limits: { ...DEFAULT_LIMITS, ...r.config.limits } },
  state: r.state,
  stopReason: r.stop_reason,
  waitingOn: r.waiting_on,
  wakeEvents: r.wake_events,
  sleepingUntil: iso(r.sleeping_until),
  errorCount: r.error_count,
  lastError: r.last_error,
  lastActiveAt: iso(r.last_active_at),
  tokensUsed: num(r.tokens_used),
  createdAt: iso(r.created_at)!,
});

/** The columns a state transition may change. */
export interface AgentPatch {
  state?: AgentState;
  stopReason?: string | null;
  waitingOn?: string | null;
  wakeEvents?: string[];
  sleepingUntil?: string | null;
  lastActiveAt?: string;
}

const PATCH_COLUMNS: Record<keyof AgentPatch, [string, string]> = {
  state: ['state', ''],
  stopReason: ['stop_reason', ''],
  waitingOn: ['waiting_on', ''],
  wakeEvents: ['wake_events', '::jsonb'],
  sleepingUntil: ['sleeping_until', '::timestamptz'],
  lastActiveAt: ['last_active_at', '::timestamptz'],
};

@Injectable()
export class AgentRepository {
  /** Inserts a new agent; undefined when the id is taken in that session. */
  async insert(tx: Tx, a: Agent): Promise<Agent | undefined> {
    const row = await queryOne<AgentRow>(
      tx,
      `INSERT INTO agent (session_id, id, template, config, state, stop_reason, wake_events, created_at)
       VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::jsonb, $8::timestamptz)
       ON CONFLICT (session_id, id) DO NOTHING RETURNING *`,
      [
        a.sessionId,
        a.agentId,
        a.template,
        json(a.config),
        a.state,
        a.stopReason,
        json(a.wakeEvents),
        a.createdAt,
      ],
    );
    return row && toAgent(row);
  }

  async find(tx: Tx, sessionId: string, agentId: string): Promise<Agent | undefined> {
    const row = await queryOne<AgentRow>(tx, `SELECT * FROM agent WHERE session_id = $1 AND id = $2`, [
      sessionId,
      agentId,
    ]);
    return row && toAgent(row);
  }

  async listBySession(tx: Tx, sessionId: string): Promise<Agent[]> {
    const rows = await query<AgentRow>(
      tx,
      `SELECT * FROM agent WHERE session_id = $1 ORDER BY created_at, id`,
      [sessionId],
    );
    return rows.map(toAgent);
  }

  /**
   * The waits-for graph around `agentIds`: those agents of the session, and every agent of it that
   * waits on another (send-and-switch). Two index reads (the partial index `agent_waiting`), not a
   * read of every agent of the session.
   */
  async listWaitGraph(tx: Tx, sessionId: string, agentIds: string[]): Promise<Agent[]> {
    const rows = await query<AgentRow>(
      tx,
      `SELECT * FROM agent WHERE session_id = $1 AND id = ANY($2::text[])
       UNION ALL
       SELECT * FROM agent WHERE session_id = $1 AND waiting_on IS NOT NULL AND id <> ALL($2::text[])`,
      [sessionId, agentIds],
    );
    return rows.map(toAgent);
  }

  /**
   * The ids of the session's first `limit` agents (in its order) and how many it has: what an
   * `agent_not_found` error names, read without loading every agent of a session of 100,000.
   */
  async knownIds(tx: Tx, sessionId: string, limit: number): Promise<{ ids: string[]; total: number }> {
    const rows = await query<{ id: string; total: number | string }>(
      tx,
      `SELECT id, count(*) OVER () AS total FROM agent WHERE session_id = $1 ORDER BY created_at, id LIMIT $2`,
      [sessionId, limit],
    );
    return { ids: rows.map((r) => r.id), total: num(rows[0]?.total) };
  }

  /**
   * Agents that have a loop to run (everything not stopped, across sessions): ids and state only,
   * since the runtime's backstop asks for them on every poll.
   */
  async listLive(
    tx: Tx,
    sessionIds?: string[],
  ): Promise<Array<Pick<Agent, 'sessionId' | 'agentId' | 'state'>>> {
    const rows = await query<{ session_id: string; id: string; state: AgentState }>(
      tx,
      `SELECT session_id, id, state FROM agent
       WHERE state <> 'stopped' AND ($1::text[] IS NULL OR session_id = ANY($1::text[]))`,
      [sessionIds ?? null],
    );
    return rows.map((r) => ({ sessionId: r.session_id, agentId: r.id, state: r.state }));
  }

  /** Which of these agents exist and are not stopped. */
  async listLiveAmong(
    tx: Tx,
    agents: Array<{ sessionId: string; agentId: string }>,
  ): Promise<Array<{ sessionId: string; agentId: string }>> {
    if (agents.length === 0) {
      return [];
    }
    const rows = await query<{ session_id: string; id: string }>(
      tx,
      `SELECT a.session_id, a.id FROM agent a
       JOIN unnest($1::text[], $2::text[]) AS k(session_id, id) ON a.session_id = k.session_id AND a.id = k.id
       WHERE a.state <> 'stopped'`,
      [agents.map((a) => a.sessionId), agents.map((a) => a.agentId)],
    );
    return rows.map((r) => ({ sessionId: r.session_id, agentId: r.id }));
  }

  /** Sleeping agents with a deadline in these sessions, for arming timers when a node takes them over. */
  async listSleepingWithDeadline(tx: Tx, sessionIds: string[]): Promise<Agent[]> {
    const rows = await query<AgentRow>(
      tx,
      `SELECT * FROM agent WHERE state = 'sleeping' AND sleeping_until IS NOT NULL AND session_id = ANY($1::text[])`,
      [sessionIds],
    );
    return rows.map(toAgent);
  }

  /**
   * The running agents of a session that listen to `event` (their wake events hold it), the sender
   * excepted, in the session's order (created first, first): who a broadcast reaches.
   */
  async listListeners(
    tx: Tx,
    sessionId: string,
    event: string,
    except?: string,
  ): Promise<Array<Pick<Agent, 'agentId' | 'state'>>> {
    const rows = await query<{ id: string; state: AgentState }>(
      tx,
      `SELECT id, state FROM agent
       WHERE session_id = $1 AND state <> 'stopped' AND wake_events @> jsonb_build_array($2::text)
         AND ($3::text IS NULL OR id <> $3::text)
       ORDER BY created_at, id`,
      [sessionId, event, except ?? null],
    );
    return rows.map((r) => ({ agentId: r.id, state: r.state }));
  }

  /**
   * Wakes those of the agents that sleep, in one statement, as AgentLifecycleService.wake does one
   * by one: back to what its loop is doing (`waiting` on a reply, `active` with an item running,
   * else `idle`), its deadline cleared. With `dueBy`, only those whose deadline is at or before it
   * (a timer's firing). The woken, in the order of `agentIds`, with the state each went to and
   * whether it has work queued (unless `askQueued` is false: then `hasWork` is false, unasked).
   */
  async wakeSleeping(
    tx: Tx,
    sessionId: string,
    agentIds: string[],
    dueBy?: string,
    askQueued = true,
  ): Promise<WokenAgent[]> {
    if (agentIds.length === 0) {
      return [];
    }
    const [woken] = await run(tx, wakeStatement([{ sessionId, agentIds, dueBy: dueBy ?? null }], askQueued));
    return woken;
  }

  /**
   * Ends the agent's send-and-switch wait: clears `waiting_on` and makes a `waiting` agent `active`
   * again (one stopped or put to sleep meanwhile keeps its state). Its state before and after;
   * undefined when there is no such agent.
   */
  async endWait(
    tx: Tx,
    sessionId: string,
    agentId: string,
  ): Promise<{ previous: AgentState; state: AgentState } | undefined> {
    return queryOne<{ previous: AgentState; state: AgentState }>(
      tx,
      `WITH before AS (SELECT state FROM agent WHERE session_id = $1 AND id = $2)
       UPDATE agent a SET waiting_on = NULL, state = CASE WHEN a.state = 'waiting' THEN 'active' ELSE a.state END
       FROM before WHERE a.session_id = $1 AND a.id = $2
       RETURNING before.state AS previous, a.state`,
      [sessionId, agentId],
    );
  }

  async update(tx: Tx, sessionId: string, agentId: string, patch: AgentPatch): Promise<Agent> {
    const { text, params } = this.updateStatement(sessionId, agentId, patch);
    const row = await queryOne<AgentRow>(tx, `${text} RETURNING *`, params);
    return toAgent(row!);
  }

  /** {@link update} of an agent known to exist, whose row nobody needs: it travels with the transaction's next statement. */
  async patch(tx: Tx, sessionId: string, agentId: string, patch: AgentPatch): Promise<void> {
    const { text, params } = this.updateStatement(sessionId, agentId, patch);
    await defer(tx, text, params);
  }

  private updateStatement(sessionId: string, agentId: string, patch: AgentPatch) {
    const sets: string[] = [];
    const params: unknown[] = [sessionId, agentId];
    for (const [key, value] of Object.entries(patch) as Array<[keyof AgentPatch, unknown]>) {
      if (value === undefined) {
        continue;
      }
      const [column, cast] = PATCH_COLUMNS[key];
      params.push(key === 'wakeEvents' ? json(value) : value);
      sets.push(`${column} = $${params.length}${cast}`);
    }
    return {
      text: `UPDATE agent SET ${sets.length ? sets.join(', ') : 'state = state'} WHERE session_id = $1 AND id = $2`,
      params,
    };
  }

  async recordError(tx: Tx, sessionId: string, agentId: string, message: string): Promise<number> {
    const row = await queryOne<{ error_count: number }>(
      tx,
      `UPDATE agent SET error_count = error_count + 1, last_error = $3 WHERE session_id = $1 AND id = $2
       RETURNING error_count`,
      [sessionId, agentId, message],
    );
    return row?.error_count ?? 0;
  }

  async addTokens(tx: Tx, sessionId: string, agentId: string, tokens: number): Promise<number> {
    const row = await queryOne<{ tokens_used: number | string }>(
      tx,
      `UPDATE agent SET tokens_used = tokens_used + $3 WHERE session_id = $1 AND id = $2 RETURNING tokens_used`,
      [sessionId, agentId, tokens],
    );
    return num(row?.tokens_used);
  }

  /** How many agents of these sessions are not stopped. */
  async countLive(tx: Tx, sessionIds: string[]): Promise<number> {
    const row = await queryOne<{ n: number | string }>(
      tx,
      `SELECT count(*) AS n FROM agent WHERE state <> 'stopped' AND session_id = ANY($1::text[])`,
      [sessionIds],
    );
    return num(row?.n);
  }

  /** Every agent of a session with its queue size and the kind of the item it is running. */
  async snapshots(tx: Tx, sessionId: string): Promise<Record<string, AgentStateSnapshot>> {
    const rows = await query<AgentRow & { queue_size: number; current_task: WorkKind | null }>(
      tx,
      `SELECT a.*,
         (SELECT count(*) FROM work_item w WHERE w.session_id = a.session_id AND w.agent_id = a.id
            AND w.state = 'queued')::int AS queue_size,
         (SELECT w.kind FROM work_item w WHERE w.session_id = a.session_id AND w.agent_id = a.id
            AND w.state = 'running' LIMIT 1) AS current_task
       FROM agent a WHERE a.session_id = $1 ORDER BY a.created_at, a.id`,
      [sessionId],
    );
    const out: Record<string, AgentStateSnapshot> = {};
    for (const r of rows) {
      out[r.id] = {
        state: r.state,
        current_task: r.current_task,
        queue_size: num(r.queue_size),
        sleeping_until: iso(r.sleeping_until),
        wake_events: r.wake_events,
        error_count: r.error_count,
        last_error: r.last_error,
        last_active_at: iso(r.last_active_at),
        template: r.template,
        tokens_used: num(r.tokens_used),
      };
    }
    return out;
  }
}

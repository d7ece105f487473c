import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { agentKey, elementsOf, iso, json, rowByKey, run, Statement } from 'src/database/sql';
import { Agent, AgentState, DEFAULT_LIMITS } from './agent.types';
import { wakeStatement, WakeWrite, WokenAgent } from './wake-statement';

/** One agent to put to sleep: its new deadline (null: until an event) and, when given, its new wake events. */
export interface SleepWrite {
  sessionId: string;
  agentId: string;
  until: string | null;
  wakeEvents?: string[];
}

/** What {@link AgentWrites.sleepMany} did to one agent. */
export interface SleepRow {
  /** The agent's state before; null when there is no such agent. */
  previous: AgentState | null;
  /** Its deadline and wake events after, when it was put to sleep (not stopped, not missing). */
  slept?: { sleepingUntil: string | null; wakeEvents: string[] };
}

/**
 * The multi-row statements behind `async.createAgent` and `async.sleepAgent`: the writes of a group
 * commit's segment (HistoryService.inSessionMerged) in one statement each, whatever their number,
 * so that creating or putting to sleep thousands of agents costs a statement per batch, not one or
 * two per agent. Each row carries its own session: a segment may hold writes of several sessions.
 * Rows are keyed by (session_id, agent_id); a segment never holds two writes of one agent.
 */
@Injectable()
export class AgentWrites {
  /**
   * AgentRepository.insert for each agent, in one statement: the new agent, or undefined when its id
   * was taken in its session (also by an earlier agent of the same call: the first one wins).
   */
  async insertMany(tx: Tx, agents: Agent[]): Promise<Array<Agent | undefined>> {
    return agents.length === 0 ? [] : run(tx, this.insertManyStatement(agents));
  }

  /** {@link insertMany} as a statement (for a batch that sends it with its lock, see HistoryService). */
  insertManyStatement(agents: Agent[]): Statement<Array<Agent | undefined>> {
    const input = agents.map((a) => ({
      session_id: a.sessionId,
      id: a.agentId,
      template: a.template,
      config: a.config,
      state: a.state,
      stop_reason: a.stopReason,
      wake_events: a.wakeEvents,
      created_at: a.createdAt,
    }));
    return {
      // Only the keys come back: an inserted row is the agent as given (the other columns start
      // empty), so its config is not sent back and parsed again for every agent.
      text: `INSERT INTO agent (session_id, id, template, config, state, stop_reason, wake_events, created_at)
       SELECT x.e->>'session_id', x.e->>'id', x.e->>'template', x.e->'config', x.e->>'state',
         x.e->>'stop_reason', x.e->'wake_events', (x.e->>'created_at')::timestamptz
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n) ORDER BY x.n
       ON CONFLICT (session_id, id) DO NOTHING RETURNING session_id, id`,
      params: [json(input)],
      result: (rows) => {
        const inserted = new Set(
          (rows as Array<{ session_id: string; id: string }>).map((r) => key(r.session_id, r.id)),
        );
        return agents.map((a) => {
          if (!inserted.delete(key(a.sessionId, a.agentId))) {
            return undefined; // taken, also by an earlier agent of this call (its row is the one inserted)
          }
          return { ...a, config: { ...a.config, limits: { ...DEFAULT_LIMITS, ...a.config.limits } } };
        });
      },
    };
  }

  /**
   * Puts each agent to sleep, as AgentLifecycleService.transition to `sleeping` does one by one (its
   * deadline set or cleared, its wake events replaced when given), unless it is stopped. One row per
   * write, in order, with the state each agent had before (from the statement's snapshot).
   */
  async sleepMany(tx: Tx, writes: SleepWrite[]): Promise<SleepRow[]> {
    return writes.length === 0 ? [] : run(tx, this.sleepManyStatement(writes));
  }

  /** {@link sleepMany} as a statement (for a batch that sends it with its lock, see HistoryService). */
  sleepManyStatement(writes: SleepWrite[]): Statement<SleepRow[]> {
    const input = writes.map((w) => ({
      session_id: w.sessionId,
      agent_id: w.agentId,
      until: w.until,
      wake_events: w.wakeEvents ?? null,
    }));
    return {
      text: `WITH input AS (
         SELECT x.n, x.e->>'session_id' AS session_id, x.e->>'agent_id' AS agent_id,
           (x.e->>'until')::timestamptz AS until, NULLIF(x.e->'wake_events', 'null'::jsonb) AS wake_events
         FROM ${elementsOf('$1::jsonb', writes.length)} WITH ORDINALITY AS x(e, n)),
       slept AS (
         UPDATE agent a SET state = 'sleeping', sleeping_until = i.until,
           wake_events = coalesce(i.wake_events, a.wake_events)
         FROM input i WHERE a.session_id = i.session_id AND a.id = i.agent_id AND a.state <> 'stopped'
         RETURNING a.session_id, a.id, a.sleeping_until, a.wake_events)
       -- The agent's state as the statement's snapshot has it: from before its update. Each row of
       -- what the statement made is looked up by key, the CTE read once (sql.ts rowByKey).
       SELECT (SELECT a.state FROM agent a WHERE a.session_id = i.session_id AND a.id = i.agent_id) AS previous,
         s.row IS NOT NULL AS slept, s.row->>'sleeping_until' AS sleeping_until, s.row->'wake_events' AS wake_events
       FROM input i CROSS JOIN LATERAL (SELECT ${rowByKey('slept', agentKey('r', 'id'), agentKey('i'))} AS row) s
       ORDER BY i.n`,
      params: [json(input)],
      result: (rows) =>
        (rows as SleepResultRow[]).map((r) => ({
          previous: r.previous,
          ...(r.slept
            ? { slept: { sleepingUntil: iso(r.sleeping_until), wakeEvents: r.wake_events ?? [] } }
            : {}),
        })),
    };
  }

  /**
   * Wakes the due sleepers of timers' firings, of every session of a batch, in one statement (see
   * SleepTimerService): {@link wakeStatement}.
   */
  wakeDueManyStatement(writes: DueWake[]): Statement<WokenAgent[][]> {
    return wakeStatement(writes);
  }
}

/** The sleepers of one session whose deadline may have come (a timer's firing). */
export interface DueWake extends WakeWrite {
  dueBy: string;
}

interface SleepResultRow {
  previous: AgentState | null;
  slept: boolean;
  sleeping_until: Date | string | null;
  wake_events: string[] | null;
}

const key = (sessionId: string, agentId: string) => `${sessionId}\u0000${agentId}`;

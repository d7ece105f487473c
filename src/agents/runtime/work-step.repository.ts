import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { json, query } from 'src/database/sql';
import { ChatMessage } from 'src/llm/model-provider';
import { Usage, WorkItem } from 'src/mailbox/mailbox.types';
import { toItem, WorkItemRow } from 'src/mailbox/work-item.repository';
import { AgentRow, toAgent } from '../agent.repository';
import { Agent, AgentState } from '../agent.types';

/**
 * The two steps every item takes, each as one statement: claiming it (agent `idle` → `active`)
 * and completing it (result, conversation turns, tokens, agent back to `idle`). They touch the
 * agent, its queue and its conversation at once, which is why they live beside the loop rather
 * than in one of those tables' repositories. The history records they stand for are made by the
 * use cases (ClaimWork, CompleteWork).
 */
@Injectable()
export class WorkStepRepository {
  /**
   * Marks the agent's next queued item running (sync-switch mail first, then priority, then first
   * in, first out) and the agent `active`, if the agent is `idle`; undefined otherwise.
   */
  async claim(
    tx: Tx,
    sessionId: string,
    agentId: string,
    at: string,
  ): Promise<{ agent: Agent; item: WorkItem } | undefined> {
    return (await this.claimMany(tx, sessionId, [agentId], at))[0];
  }

  /** {@link claim} for several agents of one session in one statement; one result per agent, in order. */
  async claimMany(
    tx: Tx,
    sessionId: string,
    agentIds: string[],
    at: string,
  ): Promise<Array<{ agent: Agent; item: WorkItem } | undefined>> {
    const rows = await query<{ item: WorkItemRow | null; agent: AgentRow | null }>(
      tx,
      `WITH input AS (SELECT x.agent_id, x.n FROM unnest($2::text[]) WITH ORDINALITY AS x(agent_id, n)),
       next AS (
         SELECT i.agent_id, nx.id FROM input i
         JOIN agent a ON a.session_id = $1 AND a.id = i.agent_id AND a.state = 'idle'
         CROSS JOIN LATERAL (
           SELECT w.id FROM work_item w
           WHERE w.session_id = $1 AND w.agent_id = i.agent_id AND w.state = 'queued'
           ORDER BY w.is_switch DESC, w.priority DESC, w.seq
           LIMIT 1 FOR UPDATE SKIP LOCKED) nx),
       claimed AS (
         UPDATE work_item w SET state = 'running', started_at = $3::timestamptz, attempts = w.attempts + 1
         FROM next WHERE w.id = next.id RETURNING w.*),
       active AS (
         UPDATE agent a SET state = 'active', last_active_at = $3::timestamptz
         FROM next WHERE a.session_id = $1 AND a.id = next.agent_id RETURNING a.*)
       SELECT (SELECT row_to_json(c) FROM claimed c WHERE c.agent_id = i.agent_id) AS item,
         (SELECT row_to_json(a) FROM active a WHERE a.id = i.agent_id) AS agent
       FROM input i ORDER BY i.n`,
      [sessionId, agentIds, at],
    );
    return rows.map((row) =>
      row.item && row.agent ? { item: toItem(row.item), agent: toAgent(row.agent) } : undefined,
    );
  }

  /**
   * Completes a running (or still queued) item: its result and usage, the turns appended to the
   * agent's conversation, the tokens added to the agent's and the session's totals, and an
   * `active` agent made `idle`. When the item had already ended (cancelled meanwhile) only the
   * agent is made idle. Also says whether the agent has more work queued. (Every data-modifying
   * part runs whether the final SELECT reads it or not.)
   */
  async complete(
    tx: Tx,
    step: {
      sessionId: string;
      agentId: string;
      taskId: string;
      final: string;
      usage: Usage;
      turns: ChatMessage[];
      at: string;
    },
  ): Promise<StepEnd> {
    const { sessionId, at, ...one } = step;
    return (await this.completeMany(tx, sessionId, [one], at))[0];
  }

  /** {@link complete} for several agents' items of one session in one statement; one result per step, in order. */
  async completeMany(tx: Tx, sessionId: string, steps: CompletedStep[], at: string): Promise<StepEnd[]> {
    const input = steps.map((s) => ({
      agent_id: s.agentId,
      task_id: s.taskId,
      result: { final: s.final },
      usage: s.usage,
      turns: s.turns,
      tokens: s.usage.promptTokens + s.usage.completionTokens,
    }));
    const rows = await query<StepEndRow>(
      tx,
      `WITH input AS (
         SELECT x.n, x.e->>'agent_id' AS agent_id, (x.e->>'task_id')::uuid AS task_id, x.e->'result' AS result,
           x.e->'usage' AS usage, x.e->'turns' AS turns, (x.e->>'tokens')::bigint AS tokens
         FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(e, n)),
       done AS (
         UPDATE work_item w SET state = 'done', result = i.result, usage = i.usage, finished_at = $3::timestamptz
         FROM input i WHERE w.id = i.task_id AND w.state IN ('queued', 'running') RETURNING w.id),
       turns AS (
         INSERT INTO conversation_turn (session_id, agent_id, message, created_at)
         SELECT $1, i.agent_id, m.value, $3::timestamptz
         FROM input i CROSS JOIN LATERAL jsonb_array_elements(i.turns) WITH ORDINALITY AS m(value, k)
         WHERE i.task_id IN (SELECT id FROM done) ORDER BY i.n, m.k),
       before AS (SELECT a.id, a.state FROM agent a JOIN input i ON a.session_id = $1 AND a.id = i.agent_id),
       me AS (
         UPDATE agent a SET
           tokens_used = a.tokens_used + CASE WHEN i.task_id IN (SELECT id FROM done) THEN i.tokens ELSE 0 END,
           state = CASE WHEN a.state = 'active' THEN 'idle' ELSE a.state END
         FROM input i WHERE a.session_id = $1 AND a.id = i.agent_id RETURNING a.id, a.state),
       spent AS (SELECT coalesce(sum(i.tokens), 0) AS t FROM input i WHERE i.task_id IN (SELECT id FROM done)),
       charged AS (
         UPDATE session SET tokens_used = tokens_used + (SELECT t FROM spent)
         WHERE id = $1 AND (SELECT t FROM spent) > 0 RETURNING id)
       SELECT i.task_id IN (SELECT id FROM done) AS done, b.state AS previous, m.state AS state,
         -- The statement's snapshot is from before its updates: the item it completes may still look queued.
         EXISTS (SELECT 1 FROM work_item w
                 WHERE w.session_id = $1 AND w.agent_id = i.agent_id AND w.state = 'queued'
                   AND w.id <> i.task_id) AS more_queued
       FROM input i LEFT JOIN before b ON b.id = i.agent_id LEFT JOIN me m ON m.id = i.agent_id
       ORDER BY i.n`,
      [sessionId, json(input), at],
    );
    return rows.map(toStepEnd);
  }
}

interface StepEndRow {
  done: boolean;
  previous: AgentState;
  state: AgentState;
  more_queued: boolean;
}

const toStepEnd = (row: StepEndRow): StepEnd => ({
  done: Boolean(row.done),
  previous: row.previous,
  state: row.state,
  moreQueued: Boolean(row.more_queued),
});

/** An item's end as {@link WorkStepRepository.completeMany} takes it. */
export interface CompletedStep {
  agentId: string;
  taskId: string;
  final: string;
  usage: Usage;
  turns: ChatMessage[];
}

/** What completing an item did: whether it was still open, the agent's state before and after, and whether more is queued. */
export interface StepEnd {
  done: boolean;
  previous: AgentState;
  state: AgentState;
  moreQueued: boolean;
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { json, queryOne } from 'src/database/sql';
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
    const row = await queryOne<{ item: WorkItemRow | null; agent: AgentRow | null }>(
      tx,
      `WITH me AS (SELECT 1 FROM agent WHERE session_id = $1 AND id = $2 AND state = 'idle'),
       next AS (
         SELECT id FROM work_item
         WHERE session_id = $1 AND agent_id = $2 AND state = 'queued' AND EXISTS (SELECT 1 FROM me)
         ORDER BY is_switch DESC, priority DESC, seq
         LIMIT 1 FOR UPDATE SKIP LOCKED),
       claimed AS (
         UPDATE work_item SET state = 'running', started_at = $3::timestamptz, attempts = attempts + 1
         WHERE id = (SELECT id FROM next) RETURNING *),
       active AS (
         UPDATE agent SET state = 'active', last_active_at = $3::timestamptz
         WHERE session_id = $1 AND id = $2 AND EXISTS (SELECT 1 FROM claimed) RETURNING *)
       SELECT (SELECT row_to_json(c) FROM claimed c) AS item, (SELECT row_to_json(a) FROM active a) AS agent`,
      [sessionId, agentId, at],
    );
    return row?.item && row.agent ? { item: toItem(row.item), agent: toAgent(row.agent) } : undefined;
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
  ): Promise<{ done: boolean; previous: AgentState; state: AgentState; moreQueued: boolean }> {
    const tokens = step.usage.promptTokens + step.usage.completionTokens;
    const row = await queryOne<{
      done: boolean;
      previous: AgentState;
      state: AgentState;
      more_queued: boolean;
    }>(
      tx,
      `WITH done AS (
         UPDATE work_item SET state = 'done', result = $4::jsonb, usage = $5::jsonb, finished_at = $6::timestamptz
         WHERE id = $3 AND state IN ('queued', 'running') RETURNING id),
       turns AS (
         INSERT INTO conversation_turn (session_id, agent_id, message, created_at)
         SELECT $1, $2, m.value, $6::timestamptz
         FROM jsonb_array_elements($7::jsonb) WITH ORDINALITY AS m(value, n)
         WHERE EXISTS (SELECT 1 FROM done) ORDER BY m.n),
       before AS (SELECT state FROM agent WHERE session_id = $1 AND id = $2),
       me AS (
         UPDATE agent SET
           tokens_used = tokens_used + CASE WHEN EXISTS (SELECT 1 FROM done) THEN $8::bigint ELSE 0 END,
           state = CASE WHEN state = 'active' THEN 'idle' ELSE state END
         WHERE session_id = $1 AND id = $2 RETURNING state, tokens_used),
       charged AS (
         UPDATE session SET tokens_used = tokens_used + $8::bigint
         WHERE id = $1 AND $8::bigint > 0 AND EXISTS (SELECT 1 FROM done) RETURNING id)
       SELECT EXISTS (SELECT 1 FROM done) AS done, (SELECT state FROM before) AS previous,
         (SELECT state FROM me) AS state,
         EXISTS (
           -- The statement's snapshot still shows the item as it was: a still-queued one is not "more".
           SELECT 1 FROM work_item
           WHERE session_id = $1 AND agent_id = $2 AND state = 'queued' AND id <> $3) AS more_queued`,
      [
        step.sessionId,
        step.agentId,
        step.taskId,
        json({ final: step.final }),
        json(step.usage),
        step.at,
        json(step.turns),
        tokens,
      ],
    );
    return {
      done: Boolean(row?.done),
      previous: row!.previous,
      state: row!.state,
      moreQueued: Boolean(row?.more_queued),
    };
  }
}

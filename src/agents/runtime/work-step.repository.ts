import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { agentKey, elementsOf, json, keyIn, rowByKey, run, Statement } from 'src/database/sql';
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
/**
 * The next queued item of input row `i`'s agent in claim order (sync-switch mail first, then
 * priority, then first in, first out), locked; `also` is a further condition on it (`w`).
 */
const nextQueued = (also: string) => `
  SELECT w.id FROM work_item w
  WHERE w.session_id = i.session_id AND w.agent_id = i.agent_id AND w.state = 'queued' AND ${also}
  ORDER BY w.is_switch DESC, w.priority DESC, w.seq
  LIMIT 1 FOR UPDATE SKIP LOCKED`;

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
    return (await this.claimMany(tx, [{ sessionId, agentId }], at))[0];
  }

  /**
   * {@link claim} for several agents (of one session or of several, each at most once) in one
   * statement; one result per agent, in order.
   */
  claimMany(tx: Tx, agents: AgentKey[], at: string): Promise<Array<Claimed | undefined>> {
    return run(tx, this.claimManyStatement(agents, at));
  }

  /** {@link claimMany} as a statement (for a batch that sends it with its lock, see HistoryService). */
  claimManyStatement(agents: AgentKey[], at: string): Statement<Array<Claimed | undefined>> {
    return {
      text: `WITH input AS (
         SELECT x.n, x.e->>'session_id' AS session_id, x.e->>'agent_id' AS agent_id
         FROM ${elementsOf('$1::jsonb', agents.length)} WITH ORDINALITY AS x(e, n)),
       next AS (
         SELECT i.session_id, i.agent_id, nx.id FROM input i
         JOIN agent a ON a.session_id = i.session_id AND a.id = i.agent_id AND a.state = 'idle'
         CROSS JOIN LATERAL (${nextQueued('TRUE')}) nx),
       claimed AS (
         UPDATE work_item w SET state = 'running', started_at = $2::timestamptz, attempts = w.attempts + 1
         FROM next WHERE w.id = next.id RETURNING w.*),
       active AS (
         UPDATE agent a SET state = 'active', last_active_at = $2::timestamptz
         FROM next WHERE a.session_id = next.session_id AND a.id = next.agent_id RETURNING a.*)
       SELECT ${rowByKey('claimed', agentKey('r'), agentKey('i'))} AS item,
         ${rowByKey('active', agentKey('r', 'id'), agentKey('i'))} AS agent
       FROM input i ORDER BY i.n`,
      params: [json(agents.map((a) => ({ session_id: a.sessionId, agent_id: a.agentId }))), at],
      result: (rows) =>
        (rows as Array<{ item: WorkItemRow | null; agent: AgentRow | null }>).map((row) =>
          row.item && row.agent ? { item: toItem(row.item), agent: toAgent(row.agent) } : undefined,
        ),
    };
  }

  /**
   * Completes a running (or still queued) item: its result and usage, the turns appended to the
   * agent's conversation, the tokens added to the agent's and the session's totals, and an
   * `active` agent made `idle`. When the item had already ended (cancelled meanwhile) only the
   * agent is made idle. With `claimNext`, an agent made idle that has more queued claims its next
   * item at once, as {@link claim} would (so the agent is `active` again, and the step's end says
   * which item it took); otherwise the end says whether the agent has more work queued. (Every
   * data-modifying part runs whether the final SELECT reads it or not.)
   */
  async complete(tx: Tx, step: CompletedStep & { at: string }): Promise<StepEnd> {
    const { at, ...one } = step;
    return (await this.completeMany(tx, [one], at))[0];
  }

  /**
   * {@link complete} for several agents' items (of one session or of several, each agent at most
   * once) in one statement; one result per step, in order.
   */
  completeMany(tx: Tx, steps: CompletedStep[], at: string): Promise<StepEnd[]> {
    return run(tx, this.completeManyStatement(steps, at));
  }

  /** {@link completeMany} as a statement (for a batch that sends it with its lock, see HistoryService). */
  completeManyStatement(steps: CompletedStep[], at: string): Statement<StepEnd[]> {
    const input = steps.map((s) => ({
      session_id: s.sessionId,
      agent_id: s.agentId,
      task_id: s.taskId,
      result: { final: s.final },
      usage: s.usage,
      turns: s.turns,
      tokens: s.usage.promptTokens + s.usage.completionTokens,
      claim_next: s.claimNext ?? false,
    }));
    // Each CTE below is read once, however many rows the input has (sql.ts rowByKey).
    const isDone = `i.task_id = ANY (ARRAY(SELECT id FROM done))`;
    const claimsNext = keyIn('next', agentKey('r'), agentKey('i'));
    return {
      text: `WITH input AS (
         SELECT x.n, x.e->>'session_id' AS session_id, x.e->>'agent_id' AS agent_id,
           (x.e->>'task_id')::uuid AS task_id, x.e->'result' AS result, x.e->'usage' AS usage,
           x.e->'turns' AS turns, (x.e->>'tokens')::bigint AS tokens, (x.e->>'claim_next')::boolean AS claim_next
         FROM ${elementsOf('$1::jsonb', steps.length)} WITH ORDINALITY AS x(e, n)),
       done AS (
         UPDATE work_item w SET state = 'done', result = i.result, usage = i.usage, finished_at = $2::timestamptz
         FROM input i WHERE w.id = i.task_id AND w.session_id = i.session_id AND w.state IN ('queued', 'running')
         RETURNING w.id),
       turns AS (
         INSERT INTO conversation_turn (session_id, agent_id, message, created_at)
         SELECT i.session_id, i.agent_id, m.value, $2::timestamptz
         FROM input i CROSS JOIN LATERAL jsonb_array_elements(i.turns) WITH ORDINALITY AS m(value, k)
         WHERE ${isDone} ORDER BY i.n, m.k),
       -- An agent the step makes idle takes its next item in claim order (the item it completes excluded:
       -- the statement's snapshot is from before its updates, which is also the state 'previous' reads).
       next AS (
         SELECT i.session_id, i.agent_id, nx.id FROM input i
         JOIN agent b ON b.session_id = i.session_id AND b.id = i.agent_id AND b.state = 'active'
         CROSS JOIN LATERAL (${nextQueued('w.id <> i.task_id')}) nx
         WHERE i.claim_next),
       claimed AS (
         UPDATE work_item w SET state = 'running', started_at = $2::timestamptz, attempts = w.attempts + 1
         FROM next WHERE w.id = next.id RETURNING w.*),
       me AS (
         UPDATE agent a SET
           tokens_used = a.tokens_used + CASE WHEN ${isDone} THEN i.tokens ELSE 0 END,
           state = CASE WHEN ${claimsNext} THEN 'active' WHEN a.state = 'active' THEN 'idle' ELSE a.state END,
           last_active_at = CASE WHEN ${claimsNext} THEN $2::timestamptz ELSE a.last_active_at END
         FROM input i
         WHERE a.session_id = i.session_id AND a.id = i.agent_id RETURNING a.*),
       spent AS (
         SELECT i.session_id, sum(i.tokens) AS t FROM input i WHERE ${isDone} GROUP BY i.session_id),
       charged AS (
         UPDATE session s SET tokens_used = s.tokens_used + sp.t
         FROM spent sp WHERE s.id = sp.session_id AND sp.t > 0 RETURNING s.id)
       SELECT ${isDone} AS done,
         (SELECT b.state FROM agent b WHERE b.session_id = i.session_id AND b.id = i.agent_id) AS previous,
         m.row ->> 'state' AS state,
         ${rowByKey('claimed', agentKey('r'), agentKey('i'))} AS next_item,
         CASE WHEN ${claimsNext} THEN m.row END AS next_agent,
         EXISTS (SELECT 1 FROM work_item w
                 WHERE w.session_id = i.session_id AND w.agent_id = i.agent_id AND w.state = 'queued'
                   AND w.id <> i.task_id) AS more_queued
       FROM input i CROSS JOIN LATERAL (SELECT ${rowByKey('me', agentKey('r', 'id'), agentKey('i'))} AS row) m
       ORDER BY i.n`,
      params: [json(input), at],
      result: (rows) => (rows as StepEndRow[]).map(toStepEnd),
    };
  }
}

interface StepEndRow {
  done: boolean;
  previous: AgentState;
  state: AgentState;
  next_item: WorkItemRow | null;
  next_agent: AgentRow | null;
  more_queued: boolean;
}

const toStepEnd = (row: StepEndRow): StepEnd => ({
  done: Boolean(row.done),
  previous: row.previous,
  state: row.state,
  moreQueued: Boolean(row.more_queued),
  ...(row.next_item && row.next_agent
    ? { next: { item: toItem(row.next_item), agent: toAgent(row.next_agent) } }
    : {}),
});

/** An item claimed, with its agent as it became `active`. */
export interface Claimed {
  agent: Agent;
  item: WorkItem;
}

/** An agent of a session. */
export interface AgentKey {
  sessionId: string;
  agentId: string;
}

/** An item's end as {@link WorkStepRepository.completeMany} takes it. */
export interface CompletedStep {
  sessionId: string;
  agentId: string;
  taskId: string;
  final: string;
  usage: Usage;
  turns: ChatMessage[];
  /** Claim the agent's next item in the same statement when the step makes it idle. */
  claimNext?: boolean;
}

/**
 * What completing an item did: whether it was still open, the agent's state before and after, and
 * whether more is queued (the item claimed next included); with `next`, the item the agent claimed
 * in the same statement and the agent as it became `active` again (`state` is then `active`).
 */
export interface StepEnd {
  done: boolean;
  previous: AgentState;
  state: AgentState;
  moreQueued: boolean;
  next?: { agent: Agent; item: WorkItem };
}

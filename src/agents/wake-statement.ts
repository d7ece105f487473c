import { AgentState } from './agent.types';
import { elementsOf, json, Statement } from 'src/database/sql';

/** Sleepers of one session to wake: those of `agentIds` still asleep (with `dueBy`, only those whose deadline is at or before it). */
export interface WakeWrite {
  sessionId: string;
  agentIds: string[];
  dueBy: string | null;
}

/** An agent a {@link WakeWrite} woke: the state it went to, and whether it has work queued. */
export interface WokenAgent {
  agentId: string;
  state: AgentState;
  hasWork: boolean;
}

/**
 * The one statement that wakes sleepers, for the writes of any number of sessions: each resumes what
 * its loop is doing (`waiting` on a reply, `active` with an item running, else `idle`, as
 * AgentLifecycleService.resumeState), its deadline cleared. One row per write: the agents it woke,
 * in the order of its `agentIds`, each with whether it has work queued (false, unasked, when
 * `askQueued` is false).
 */
export function wakeStatement(writes: WakeWrite[], askQueued = true): Statement<WokenAgent[][]> {
  const input = writes.flatMap((w, n) =>
    w.agentIds.map((agentId) => ({ n, session_id: w.sessionId, agent_id: agentId, due_by: w.dueBy })),
  );
  return {
    text: `WITH input AS (
       SELECT x.o, (x.e->>'n')::int AS n, x.e->>'session_id' AS session_id, x.e->>'agent_id' AS agent_id,
         (x.e->>'due_by')::timestamptz AS due_by
       FROM ${elementsOf('$1::jsonb', input.length)} WITH ORDINALITY AS x(e, o)),
     woken AS (
       UPDATE agent a SET
         state = CASE
           WHEN a.waiting_on IS NOT NULL THEN 'waiting'
           WHEN EXISTS (SELECT 1 FROM work_item w
                        WHERE w.session_id = a.session_id AND w.agent_id = a.id AND w.state = 'running') THEN 'active'
           ELSE 'idle' END,
         sleeping_until = NULL
       FROM input i
       WHERE a.session_id = i.session_id AND a.id = i.agent_id AND a.state = 'sleeping'
         AND (i.due_by IS NULL OR a.sleeping_until <= i.due_by)
       RETURNING i.n, i.o, a.id, a.state, CASE WHEN $2::boolean THEN EXISTS (SELECT 1 FROM work_item w
         WHERE w.session_id = a.session_id AND w.agent_id = a.id AND w.state = 'queued') ELSE false END AS has_work)
     -- In input order without joining the input again (a join of two CTEs is planned as a nested loop:
     -- quadratic in the batch, see sql.ts rowByKey).
     SELECT n, id, state, has_work FROM woken ORDER BY o`,
    params: [json(input), askQueued],
    result: (rows) => {
      const woken: WokenAgent[][] = writes.map(() => []);
      for (const r of rows as Array<{ n: number; id: string; state: AgentState; has_work: boolean }>) {
        woken[r.n].push({ agentId: r.id, state: r.state, hasWork: Boolean(r.has_work) });
      }
      return woken;
    },
  };
}

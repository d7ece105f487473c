/**
 * SQL shared by the statements that wake sleeping agents (AgentRepository.wakeSleeping,
 * AgentWrites.wakeDueManyStatement), over the agent row `a`.
 */

/** The SET of a wake-up: back to what the agent's loop is doing (as AgentLifecycleService.resumeState), its deadline cleared. */
export const WAKE_SET = `state = CASE
    WHEN a.waiting_on IS NOT NULL THEN 'waiting'
    WHEN EXISTS (SELECT 1 FROM work_item w
                 WHERE w.session_id = a.session_id AND w.agent_id = a.id AND w.state = 'running') THEN 'active'
    ELSE 'idle' END,
  sleeping_until = NULL`;

/** Whether the agent has work queued. */
export const HAS_QUEUED_WORK = `EXISTS (SELECT 1 FROM work_item w
    WHERE w.session_id = a.session_id AND w.agent_id = a.id AND w.state = 'queued')`;

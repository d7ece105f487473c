import type { AgentStateName, AgentStateSnapshot, HistoryRecord, Usage, WorkKind } from './protocol';

/** What the page knows of one agent: a snapshot from `async.getAgentStates`, moved on by records. */
export interface AgentView {
  agentId: string;
  state: AgentStateName;
  /** Why it last changed state (`task_done`, `sleep_tool`, `waiting_on:reviewer`…). */
  reason: string | null;
  currentTask: WorkKind | null;
  currentTaskId: string | null;
  lastTaskId: string | null;
  /** Unknown in replay: the history does not record what was queued, only what ran. */
  queueSize: number | null;
  sleepingUntil: string | null;
  wakeEvents: string[] | null;
  tokensUsed: number;
  errorCount: number;
  lastError: string | null;
  template: string | null;
  waitingOn: string | null;
}

export type AgentMap = Map<string, AgentView>;

function blankAgent(agentId: string, queueSize: number | null): AgentView {
  return {
    agentId,
    state: 'idle',
    reason: null,
    currentTask: null,
    currentTaskId: null,
    lastTaskId: null,
    queueSize,
    sleepingUntil: null,
    wakeEvents: null,
    tokensUsed: 0,
    errorCount: 0,
    lastError: null,
    template: null,
    waitingOn: null,
  };
}

/** The agents as `async.getAgentStates` reports them, keeping what only records told (task ids, waits). */
export function agentsFromSnapshot(
  snapshot: Record<string, AgentStateSnapshot>,
  known: AgentMap = new Map(),
): AgentMap {
  const agents: AgentMap = new Map();
  for (const [agentId, s] of Object.entries(snapshot)) {
    const before = known.get(agentId);
    agents.set(agentId, {
      agentId,
      state: s.state,
      reason: before?.reason ?? null,
      currentTask: s.current_task,
      currentTaskId: s.current_task ? (before?.currentTaskId ?? null) : null,
      lastTaskId: before?.lastTaskId ?? null,
      queueSize: s.queue_size,
      sleepingUntil: s.sleeping_until,
      wakeEvents: s.wake_events,
      tokensUsed: s.tokens_used,
      errorCount: s.error_count,
      lastError: s.last_error,
      template: s.template,
      waitingOn: s.state === 'waiting' ? (before?.waitingOn ?? null) : null,
    });
  }
  return agents;
}

const WAIT_PREFIX = 'waiting_on:';

/**
 * Moves the agents on by one history record (or push). Live, the counts that records do not carry
 * exactly (queue size) are estimated here and corrected by the next snapshot; in replay
 * (`queueSize` null) they stay unknown.
 */
export function applyToAgents(agents: AgentMap, record: HistoryRecord, estimateQueues = true): void {
  const p = record.payload;
  const agentId = typeof p.agentId === 'string' ? p.agentId : undefined;
  const live = (id: string) => {
    let agent = agents.get(id);
    if (!agent) {
      agent = blankAgent(id, estimateQueues ? 0 : null);
      agents.set(id, agent);
    }
    return agent;
  };
  switch (record.type) {
    case 'async.agent.stateChanged': {
      const agent = live(agentId!);
      const reason = typeof p.reason === 'string' ? p.reason : null;
      agent.state = p.state as AgentStateName;
      agent.reason = reason;
      if (reason?.startsWith(WAIT_PREFIX)) {
        agent.waitingOn = reason.slice(WAIT_PREFIX.length);
      } else if (agent.state !== 'waiting' && agent.state !== 'sleeping') {
        agent.waitingOn = null;
      }
      if (agent.state !== 'sleeping') {
        agent.sleepingUntil = null;
      }
      break;
    }
    case 'async.task.started': {
      const agent = live(agentId!);
      agent.currentTask = p.kind as WorkKind;
      agent.currentTaskId = p.taskId as string;
      agent.lastTaskId = p.taskId as string;
      if (agent.queueSize !== null && agent.queueSize > 0) {
        agent.queueSize -= 1;
      }
      break;
    }
    case 'async.task.completed': {
      const agent = live(agentId!);
      const usage = p.usage as Usage | undefined;
      agent.tokensUsed += (usage?.promptTokens ?? 0) + (usage?.completionTokens ?? 0);
      endTask(agent, p.taskId as string);
      break;
    }
    case 'async.task.failed': {
      const agent = live(agentId!);
      agent.errorCount = typeof p.errorCount === 'number' ? p.errorCount : agent.errorCount + 1;
      agent.lastError = (p.error as { message?: string } | undefined)?.message ?? 'failed';
      endTask(agent, p.taskId as string);
      break;
    }
    case 'async.mail.sent': {
      const to = (p.message as { to?: string } | undefined)?.to;
      const agent = to ? agents.get(to) : undefined;
      if (agent && agent.queueSize !== null) {
        agent.queueSize += 1;
      }
      break;
    }
    default:
      break;
  }
}

function endTask(agent: AgentView, taskId: string): void {
  if (agent.currentTaskId === taskId || agent.currentTaskId === null) {
    agent.currentTask = null;
    agent.currentTaskId = null;
  }
}

/** The agents as they were after the records up to `seq` (replay starts from nothing: seq 1 creates them). */
export function agentsAt(records: readonly HistoryRecord[], seq: number): AgentMap {
  const agents: AgentMap = new Map();
  for (const record of records) {
    if (record.seq > seq) {
      break;
    }
    applyToAgents(agents, record, false);
  }
  return agents;
}

/** Agents sorted by id, optionally filtered by a substring of id, state or template. */
export function agentList(agents: AgentMap, filter: string): AgentView[] {
  const needle = filter.trim().toLowerCase();
  const list = [...agents.values()].filter(
    (a) =>
      !needle ||
      a.agentId.toLowerCase().includes(needle) ||
      a.state === needle ||
      (a.template ?? '').toLowerCase().includes(needle),
  );
  return list.sort((a, b) => (a.agentId < b.agentId ? -1 : a.agentId > b.agentId ? 1 : 0));
}

export function countByState(agents: AgentMap): Record<AgentStateName, number> {
  const counts: Record<AgentStateName, number> = { idle: 0, active: 0, waiting: 0, sleeping: 0, stopped: 0 };
  for (const a of agents.values()) {
    counts[a.state] += 1;
  }
  return counts;
}

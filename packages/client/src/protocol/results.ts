import type { AgentState, MailStatus, Priority, WorkKind, WorkState } from './names';
import type { MethodName } from './params';
import type { PushName } from './pushes';

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface Mail {
  messageId: string;
  sessionId: string;
  /** An agent id or `"user"`. */
  from: string;
  to: string;
  subject: string;
  body: string;
  priority: Priority;
  status: MailStatus;
  replyTo: string | null;
  threadId: string;
  /** Agent-to-agent sends that led to this mail (0 from the user). */
  hops: number;
  createdAt: string;
  readAt: string | null;
}

/** `async.getAgentStates`' per-agent snapshot; the seed's snake_case names are kept on purpose. */
export interface AgentStateSnapshot {
  state: AgentState;
  current_task: WorkKind | null;
  queue_size: number;
  sleeping_until: string | null;
  wake_events: string[];
  error_count: number;
  last_error: string | null;
  last_active_at: string | null;
  template: string;
  tokens_used: number;
}

export interface TaskView {
  taskId: string;
  agentId: string;
  kind: WorkKind;
  state: WorkState;
  prompt: string;
  priority: Priority;
  /** Agent-to-agent sends that led to this item (0 for a client's task or mail). */
  hops: number;
  /** The text streamed so far while it runs. */
  output?: string;
  result?: { final: string };
  error?: { code: string; message: string };
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  usage?: Usage;
}

export interface Schedule {
  scheduleId: string;
  sessionId: string;
  agentId: string;
  cron: string;
  timezone: string;
  prompt: string | null;
  event: string | null;
  nextRunAt: string;
  createdAt: string;
}

export interface HistoryEvent {
  seq: number;
  at: string;
  type: PushName;
  /** The push's payload as it was sent (without `sessionId`, `seq` and `at`, which are beside it). */
  payload: Record<string, unknown>;
}

export interface TemplateSummary {
  name: string;
  description: string;
  /** Built-in tool names, `<server>__<tool>` and `<server>__*`. */
  tools: string[];
  model: string;
}

/** The result of every method, by name. */
export interface MethodResults {
  'session.start': { sessionId: string; createdAt: string };
  'session.subscribe': { sessionId: string };
  'session.list': {
    sessions: Array<{ sessionId: string; createdAt: string; agentCount: number; tokensUsed?: number }>;
  };
  'session.stop': { sessionId: string; stopped: true };
  startSession: { sessionId: string; status: 'active' };
  stopSession: { sessionId: string; status: 'stopped' };
  'async.createAgent': { agentId: string; state: AgentState; template: string };
  'async.startAgent': { agentId: string; state: AgentState };
  'async.stopAgent': { agentId: string; state: 'stopped' };
  'async.sleepAgent': {
    agentId: string;
    state: AgentState;
    sleepingUntil: string | null;
    wakeEvents: string[];
  };
  'async.wakeAgent': { agentId: string; state: AgentState; woke: boolean };
  'async.sendTask': { taskId: string; queued: true; queueSize: number };
  'async.getAgentStates': { agents: Record<string, AgentStateSnapshot> };
  'async.broadcastEvent': { event: string; delivered: string[]; woke: string[] };
  'async.getTask': TaskView;
  'async.cancelTask': { taskId: string; state: WorkState };
  'async.sendMail': { messageId: string };
  'async.listMail': { messages: Mail[]; nextBefore: number | null };
  'async.getHistory': { events: HistoryEvent[]; nextAfter: number };
  'async.scheduleAgent': { scheduleId: string; nextRunAt: string };
  'async.unschedule': { scheduleId: string; removed: true };
  'async.listSchedules': { schedules: Schedule[] };
  'templates.list': { templates: TemplateSummary[] };
}

export type MethodResult<M extends MethodName> = M extends keyof MethodResults ? MethodResults[M] : never;

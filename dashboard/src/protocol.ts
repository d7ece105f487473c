/** The public protocol as the dashboard uses it (see docs/protocol.md); nothing private. */

export const AGENT_STATES = ['idle', 'active', 'waiting', 'sleeping', 'stopped'] as const;
export type AgentStateName = (typeof AGENT_STATES)[number];

export type WorkKind = 'task' | 'mailbox_message' | 'event' | 'schedule';

/** `async.getAgentStates`' value per agent; the seed's snake_case names on purpose. */
export interface AgentStateSnapshot {
  state: AgentStateName;
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

export interface SessionSummary {
  sessionId: string;
  createdAt: string;
  agentCount: number;
}

export interface TemplateSummary {
  name: string;
  description: string;
  tools: string[];
  model: string | null;
}

export interface Mail {
  messageId: string;
  from: string;
  to: string;
  subject: string;
  body: string;
  priority: 'low' | 'normal' | 'high' | 'urgent';
  status: string;
  replyTo: string | null;
  threadId: string;
  hops: number;
  createdAt: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

export interface TaskDetail {
  taskId: string;
  agentId: string;
  kind: WorkKind;
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  prompt: string;
  hops: number;
  output?: string;
  result?: { final?: string } | null;
  error?: { code: string; message: string } | null;
  createdAt: string;
  startedAt?: string | null;
  finishedAt?: string | null;
  usage?: Usage | null;
}

/** One record of a session's history; every push but `async.task.output` is one too. */
export interface HistoryRecord {
  seq: number;
  at: string;
  type: string;
  payload: Record<string, unknown>;
}

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: { reason?: string; issues?: Array<{ path: string; message: string }> };
}

/** The session-scoped pushes; their payload also carries `sessionId`, `at` and `seq`. */
export const PUSHES = [
  'async.agent.stateChanged',
  'async.task.started',
  'async.task.output',
  'async.task.completed',
  'async.task.failed',
  'async.mail.sent',
  'async.event.broadcast',
  'async.tool.called',
] as const;
export type PushName = (typeof PUSHES)[number];

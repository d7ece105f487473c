import type { AgentState, WorkKind } from './names';
import type { Mail, Usage } from './results';

/** Every push carries these: `seq` is the session's history sequence number. */
export interface PushBase {
  sessionId: string;
  at: string;
  seq: number;
}

export interface AgentStateChangedPush extends PushBase {
  agentId: string;
  state: AgentState;
  /** `null` when the agent was just created. */
  previous: AgentState | null;
  reason: string;
}

export interface TaskStartedPush extends PushBase {
  agentId: string;
  taskId: string;
  kind: WorkKind;
}

/**
 * Streamed model text. Not a history record where the server streams it ephemerally: then it has
 * `index` (0, 1, 2… within its task) and the `seq` of the latest record, which it follows.
 */
export interface TaskOutputPush extends PushBase {
  agentId: string;
  taskId: string;
  delta: string;
  index?: number;
}

export interface TaskCompletedPush extends PushBase {
  agentId: string;
  taskId: string;
  result: { final: string };
  usage: Usage;
}

export interface TaskFailedPush extends PushBase {
  agentId: string;
  taskId: string;
  error: { code: string; message: string };
  errorCount: number;
}

export interface MailSentPush extends PushBase {
  message: Mail;
}

export interface EventBroadcastPush extends PushBase {
  event: string;
  data: unknown;
  woke: string[];
}

export interface ToolCalledPush extends PushBase {
  agentId: string;
  taskId: string;
  tool: string;
  args: unknown;
  result: unknown;
}

/** Every server push, by name. */
export interface PushMap {
  'async.agent.stateChanged': AgentStateChangedPush;
  'async.task.started': TaskStartedPush;
  'async.task.output': TaskOutputPush;
  'async.task.completed': TaskCompletedPush;
  'async.task.failed': TaskFailedPush;
  'async.mail.sent': MailSentPush;
  'async.event.broadcast': EventBroadcastPush;
  'async.tool.called': ToolCalledPush;
}

export type PushName = keyof PushMap;
export type AnyPush = { [N in PushName]: { name: N; payload: PushMap[N] } }[PushName];

export const PUSH_NAMES: readonly PushName[] = [
  'async.agent.stateChanged',
  'async.task.started',
  'async.task.output',
  'async.task.completed',
  'async.task.failed',
  'async.mail.sent',
  'async.event.broadcast',
  'async.tool.called',
];

/** How a task ended: its `async.task.completed` or `async.task.failed` payload. */
export type TaskOutcome = TaskCompletedPush | TaskFailedPush;

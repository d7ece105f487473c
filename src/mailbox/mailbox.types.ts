import { Priority } from 'src/common/names';

import type { Mail, MailStatus, Usage, WorkKind, WorkState } from '@mailroom/client/protocol';

// The protocol's words for work and mail (the client package); the work item below is the server's own.
export type { Mail, MailStatus, Usage, WorkKind, WorkState };

/** What a work item carries besides its prompt, by kind. */
export interface WorkPayload {
  /** mailbox_message: the mail that made this item. */
  messageId?: string;
  from?: string;
  subject?: string;
  /** event / schedule: the event name and its data. */
  event?: string;
  data?: unknown;
  scheduleId?: string;
  /** W3C trace context of the span that queued the item (mail sent by a tool call), when tracing. */
  traceparent?: string;
}

/** One unit of an agent's work: a task, a mail, an event or a schedule firing. */
export interface WorkItem {
  taskId: string;
  sessionId: string;
  agentId: string;
  kind: WorkKind;
  priority: Priority;
  /** Sync-switch mail: taken before all other queued work. */
  isSwitch: boolean;
  /** Agent-to-agent sends that led here: 0 for a client's task or mail (see `limits.maxHops`). */
  hops: number;
  state: WorkState;
  attempts: number;
  idempotencyKey: string | null;
  prompt: string;
  payload: WorkPayload;
  result: { final: string } | null;
  error: { code: string; message: string } | null;
  usage: Usage | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** The address of the human client in `from`/`to`. */
export const USER = 'user';

import type { PushName } from '@mailroom/client/protocol';

/** The server pushes (docs/protocol.md, "Server push"), each also a record in the session's history. */
export type NotificationType = PushName;

/** One record of a session's history: gap-free `seq`, written in the transaction of the change it records. */
export interface HistoryRecord {
  sessionId: string;
  seq: number;
  at: string;
  type: NotificationType;
  payload: Record<string, unknown>;
}

export interface Session {
  sessionId: string;
  /** The principal that started it (see AuthService); `open` or null: visible to every caller. */
  owner: string | null;
  createdAt: string;
  metadata: Record<string, unknown>;
  limits: { maxTokens?: number };
  tokensUsed: number;
  stoppedAt: string | null;
}

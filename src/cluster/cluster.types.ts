/**
 * What one committed transaction changed in a session, told to the other nodes by one NOTIFY
 * (ids only). The owner wakes or aborts loops, settles waits and re-arms timers; every node pushes
 * the history rows `seq[0]..seq[1]` to its subscribers.
 */
export interface SessionHint {
  sessionId: string;
  seq?: [number, number];
  /** Agents that may have claimable work now. */
  work?: string[];
  /** Too much to list: the owner looks at the whole session (live agents to wake, stopped ones and cancelled items to abort). */
  allAgents?: boolean;
  /** Agents whose item in hand must be abandoned (all of it, or only `taskId`). */
  abort?: Array<{ agentId: string; taskId?: string }>;
  /** Send-and-switch waits to end with an error (the awaited mail was cancelled). */
  settle?: Array<{ messageId: string; error: string }>;
  /** A sleep deadline or a schedule changed: the owner re-arms the session's timers. */
  timers?: boolean;
}

/** A push that is not in the history (streamed model text): sent to every node as it happens. */
export interface EphemeralPush {
  sessionId: string;
  type: string;
  payload: Record<string, unknown>;
}

/** Messages on the cluster channel. */
export type ClusterMessage =
  | ({ t: 'session'; o: string } & SessionHint)
  | ({ t: 'push'; o: string } & EphemeralPush)
  /** Leases changed hands: `to` was given one (or, without `to`, some were handed back for anyone to take). */
  | { t: 'leases'; o: string; to?: string };

/** Something that keeps per-session state on the node that owns the session. */
export interface SessionOwner {
  /** Runs as the new owner before the node serves the sessions: the takeover's recovery. */
  adopt?(sessionIds: string[]): Promise<void>;
  /** The node now serves the sessions: arm timers, wake loops. */
  serve?(sessionIds: string[]): Promise<void>;
  /** The node lets go of the sessions (handing them back, shutting down, or it lost them): stop their work. */
  release?(sessionIds: string[]): Promise<void>;
  /** True while the session has work in hand here: it is not handed back to balance the nodes. */
  busy?(sessionId: string): boolean;
}

export const CLUSTER_CHANNEL = 'mailroom';
/** Postgres refuses NOTIFY payloads of 8000 bytes or more. */
export const MAX_NOTIFY_BYTES = 7900;

import type { ErrorReason, ParamIssue, RpcErrorBody } from './protocol/errors';

/** Why a call failed on this side, before any reply came. */
export type ConnectionReason = 'disconnected' | 'timeout' | 'connect_failed';

/**
 * A failed call: `reason` is the server's stable reason (`data.reason` of its error reply), or one
 * of the client's own when the call never got a reply (`isConnectionError`).
 */
export class MailroomError extends Error {
  constructor(
    message: string,
    readonly reason: ErrorReason | ConnectionReason,
    readonly code?: number,
    readonly data: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'MailroomError';
  }

  static fromReply(body: RpcErrorBody): MailroomError {
    return new MailroomError(body.message, body.data?.reason ?? 'internal_error', body.code, body.data ?? {});
  }

  /** True when no reply came (the connection dropped or the call timed out): the call may or may not have run. */
  get isConnectionError(): boolean {
    return this.reason === 'disconnected' || this.reason === 'timeout' || this.reason === 'connect_failed';
  }

  get issues(): ParamIssue[] {
    return Array.isArray(this.data.issues) ? (this.data.issues as ParamIssue[]) : [];
  }
}

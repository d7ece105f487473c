import { ERROR_CODES, type ErrorReason, type ParamIssue, type RpcErrorBody } from '@mailroom/client/protocol';

// The error table is the protocol's (the client package); the server's errors are built here.
export { ERROR_CODES };
export type { ErrorReason, ParamIssue, RpcErrorBody };

/** A failure the client is told about. Anything else thrown is a bug and becomes `internal_error`. */
export class RpcError extends Error {
  constructor(
    readonly reason: ErrorReason,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'RpcError';
  }

  toBody(): RpcErrorBody {
    return {
      code: ERROR_CODES[this.reason],
      message: this.message,
      data: { reason: this.reason, ...this.extra },
    };
  }

  static invalidParams(issues: ParamIssue[]): RpcError {
    const summary = issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
    return new RpcError('invalid_params', `Invalid params: ${summary}`, { issues });
  }

  static sessionNotFound(sessionId: string): RpcError {
    return new RpcError('session_not_found', `Session '${sessionId}' not found`);
  }

  static agentNotFound(sessionId: string, agentId: string): RpcError {
    return new RpcError('agent_not_found', `Agent '${agentId}' not found in session '${sessionId}'`);
  }
}

import { ERROR_CODES, type ErrorReason, type ParamIssue, type RpcErrorBody } from '@mailroom/client/protocol';

// The error table is the protocol's (the client package); the server's errors are built here.
export { ERROR_CODES };
export type { ErrorReason, ParamIssue, RpcErrorBody };

export const MAX_KNOWN_AGENTS = 100;

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
    // The most common first mistake: calling async.* before the session exists.
    return new RpcError(
      'session_not_found',
      `Session '${sessionId}' not found; call session.start { sessionId: '${sessionId}' } first`,
    );
  }

  /**
   * `knownAgents`: the session's agent ids, so a typo is easy to see. `data.knownAgents` holds the
   * first {@link MAX_KNOWN_AGENTS} of them, the message the first ten.
   */
  static agentNotFound(
    sessionId: string,
    agentId: string,
    knownAgents: string[],
    /** How many agents the session has, when `knownAgents` is only the first of them. */
    total = knownAgents.length,
  ): RpcError {
    const shown = knownAgents.slice(0, 10).join(', ');
    const more = total > 10 ? ` and ${total - 10} more` : '';
    const known = knownAgents.length ? `its agents: ${shown}${more}` : 'it has no agents yet';
    return new RpcError(
      'agent_not_found',
      `Agent '${agentId}' not found in session '${sessionId}' (${known})`,
      { knownAgents: knownAgents.slice(0, MAX_KNOWN_AGENTS) },
    );
  }
}

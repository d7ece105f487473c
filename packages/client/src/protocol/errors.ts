/** The protocol's error table: one code and one stable reason per kind of failure. */
export const ERROR_CODES = {
  parse_error: -32700,
  invalid_request: -32600,
  method_not_found: -32601,
  invalid_params: -32602,
  unauthorized: -32001,
  session_not_found: -32002,
  agent_not_found: -32003,
  conflict: -32004,
  limit_exceeded: -32005,
  unavailable: -32006,
  internal_error: -32603,
} as const;

export type ErrorReason = keyof typeof ERROR_CODES;

export interface ParamIssue {
  /** Dotted path of the offending param, e.g. `config.limits.maxStepsPerTask`; `""` for the params object itself. */
  path: string;
  message: string;
}

/** `error` of a reply. `data` may carry more than `reason` and `issues` (e.g. the known agents). */
export interface RpcErrorBody {
  code: number;
  message: string;
  data: { reason: ErrorReason; issues?: ParamIssue[]; [key: string]: unknown };
}

/** What a socket.io ack (and, inside JSON-RPC, a response) carries. */
export type Reply<R = unknown> = { result: R } | { error: RpcErrorBody };

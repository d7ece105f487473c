import { ErrorReason } from 'src/common/rpc-error';

/** The HTTP status of each protocol error on the REST API; the body is always `{ error: { code, message, data } }`. */
export const HTTP_STATUS: Record<ErrorReason, number> = {
  parse_error: 400,
  invalid_request: 400,
  invalid_params: 400,
  method_not_found: 404,
  unauthorized: 401,
  session_not_found: 404,
  agent_not_found: 404,
  conflict: 409,
  limit_exceeded: 429,
  unavailable: 503,
  internal_error: 500,
};

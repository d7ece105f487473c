import { ERROR_CODES, ErrorReason, RpcError } from 'src/common/rpc-error';
import { RpcDispatcher } from './rpc-dispatcher.service';
import { CallContext } from './rpc-method';

type Id = string | number | null;

const MAX_BATCH = 100;

export interface JsonRpcResponse {
  jsonrpc: '2.0';
  id: Id;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

const errorResponse = (id: Id, reason: ErrorReason, message: string): JsonRpcResponse => ({
  jsonrpc: '2.0',
  id,
  error: { code: ERROR_CODES[reason], message, data: { reason } },
});

/** The error body for a missing or wrong token, on every transport. */
export const unauthorized = () => new RpcError('unauthorized', 'Missing or wrong token').toBody();

const isId = (v: unknown): v is Id => v === null || typeof v === 'string' || typeof v === 'number';

/**
 * JSON-RPC 2.0 over any text transport (`POST /rpc`, `/ws`), batches included, on the same
 * dispatcher as socket.io. The seed's bare `{"method", "params"}` payloads are accepted too and
 * answered with `id: null`; a proper JSON-RPC request without `id` is a notification (no answer).
 */
export async function handleJsonRpc(
  text: string,
  dispatcher: RpcDispatcher,
  ctx: CallContext,
): Promise<JsonRpcResponse | JsonRpcResponse[] | undefined> {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return errorResponse(null, 'parse_error', 'Parse error: the request is not valid JSON');
  }
  if (Array.isArray(message)) {
    if (message.length === 0) {
      return errorResponse(null, 'invalid_request', 'Invalid request: an empty batch');
    }
    if (message.length > MAX_BATCH) {
      return errorResponse(
        null,
        'invalid_request',
        `Invalid request: a batch holds at most ${MAX_BATCH} requests`,
      );
    }
    const replies = await Promise.all(message.map((m) => handleOne(m, dispatcher, ctx)));
    const answered = replies.filter((r): r is JsonRpcResponse => r !== undefined);
    return answered.length ? answered : undefined;
  }
  return handleOne(message, dispatcher, ctx);
}

async function handleOne(
  message: unknown,
  dispatcher: RpcDispatcher,
  ctx: CallContext,
): Promise<JsonRpcResponse | undefined> {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    return errorResponse(null, 'invalid_request', 'Invalid request: expected an object');
  }
  const m = message as Record<string, unknown>;
  const id = isId(m.id) ? m.id : null;
  const seedStyle = m.jsonrpc === undefined;
  if ((!seedStyle && m.jsonrpc !== '2.0') || typeof m.method !== 'string' || ('id' in m && !isId(m.id))) {
    return errorResponse(
      id,
      'invalid_request',
      'Invalid request: expected {"jsonrpc":"2.0","method":…,"params":…,"id":…}',
    );
  }
  const notification = !seedStyle && !('id' in m);
  if (Array.isArray(m.params)) {
    // Positional params cannot be named; a notification is still never answered.
    return notification
      ? undefined
      : {
          jsonrpc: '2.0',
          id,
          error: RpcError.invalidParams([
            { path: '', message: 'pass params by name, as an object' },
          ]).toBody(),
        };
  }
  const reply = await dispatcher.dispatch(m.method, m.params, ctx);
  if (notification) {
    return undefined;
  }
  return 'error' in reply
    ? { jsonrpc: '2.0', id, error: reply.error }
    : { jsonrpc: '2.0', id, result: reply.result };
}

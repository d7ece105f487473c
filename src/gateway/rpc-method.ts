import {
  METHOD_PARAMS,
  type MethodName,
  type MethodResult,
  type ParsedParams,
} from '@mailroom/client/protocol';
import { z } from 'zod';

/** Who calls, and what a method may do besides returning: subscribe the connection to a session's pushes. */
export interface CallContext {
  /** The authenticated caller (`open` when the server has no tokens). */
  principal: string;
  subscribe(sessionId: string): void;
}

export interface RpcMethod<S extends z.ZodType = z.ZodType> {
  name: string;
  params: S;
  handle(params: z.infer<S>, ctx: CallContext): Promise<unknown>;
  /**
   * The handler decides itself what a `sessionId` the caller may not see means (`session.start`:
   * `conflict`; `stopSession`: already stopped), instead of the dispatcher's `session_not_found`.
   */
  guardsOwnSession?: boolean;
}

/** Declares a method with its params schema; the handler receives the parsed, typed params. */
export function method<S extends z.ZodType>(
  name: string,
  params: S,
  handle: (params: z.infer<S>, ctx: CallContext) => Promise<unknown>,
  options: { guardsOwnSession?: boolean } = {},
): RpcMethod {
  return { name, params, handle, ...options };
}

/**
 * Declares a method of the protocol by name: its params schema is the protocol's (the client
 * package's `METHOD_PARAMS`), and its handler must return the protocol's result type for it, so
 * the server and the typed client cannot drift apart.
 */
export function protocolMethod<M extends MethodName>(
  name: M,
  handle: (params: ParsedParams<M>, ctx: CallContext) => Promise<MethodResult<M>>,
  options: Partial<Omit<RpcMethod, 'name' | 'params' | 'handle'>> = {},
): RpcMethod {
  return { name, params: METHOD_PARAMS[name], handle, ...options };
}

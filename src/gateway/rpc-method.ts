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

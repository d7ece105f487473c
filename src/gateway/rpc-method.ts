import { z } from 'zod';

/** What a method may do besides returning: subscribe the calling connection to a session's pushes. */
export interface CallContext {
  subscribe(sessionId: string): void;
}

export interface RpcMethod<S extends z.ZodType = z.ZodType> {
  name: string;
  params: S;
  handle(params: z.infer<S>, ctx: CallContext): Promise<unknown>;
}

/** Declares a method with its params schema; the handler receives the parsed, typed params. */
export function method<S extends z.ZodType>(
  name: string,
  params: S,
  handle: (params: z.infer<S>, ctx: CallContext) => Promise<unknown>,
): RpcMethod {
  return { name, params, handle };
}

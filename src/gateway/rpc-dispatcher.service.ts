import { Inject, Injectable, Logger } from '@nestjs/common';
import { z } from 'zod';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { ParamIssue, RpcError, RpcErrorBody } from 'src/common/rpc-error';
import { MethodsService } from './methods.service';
import { CallContext, RpcMethod } from './rpc-method';

export type RpcReply = { result: unknown } | { error: RpcErrorBody };

/**
 * The one dispatcher behind every transport: finds the method, checks the size and shape of its
 * params, calls it, and turns any failure into a protocol error. It never throws.
 */
@Injectable()
export class RpcDispatcher {
  private readonly logger = new Logger(RpcDispatcher.name);
  private readonly methods: Map<string, RpcMethod>;

  constructor(
    methods: MethodsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.methods = new Map(methods.methods.map((m) => [m.name, m]));
  }

  async dispatch(name: unknown, params: unknown, ctx: CallContext): Promise<RpcReply> {
    try {
      return { result: await this.call(name, params, ctx) };
    } catch (err) {
      return { error: this.toError(name, err) };
    }
  }

  private async call(name: unknown, params: unknown, ctx: CallContext): Promise<unknown> {
    const m = typeof name === 'string' ? this.methods.get(name) : undefined;
    if (!m) {
      throw new RpcError('method_not_found', `Unknown method '${String(name)}'`);
    }
    const size = Buffer.byteLength(JSON.stringify(params ?? {}) ?? '', 'utf8');
    if (size > this.config.maxParamsBytes) {
      throw new RpcError(
        'limit_exceeded',
        `Params are ${size} bytes; the limit is ${this.config.maxParamsBytes}`,
      );
    }
    // reportInput: tells a missing param (input undefined) from a mistyped one in toIssues.
    const parsed = m.params.safeParse(params ?? {}, { reportInput: true });
    if (!parsed.success) {
      throw RpcError.invalidParams(toIssues(parsed.error));
    }
    const nul = findNul(parsed.data, '');
    if (nul !== undefined) {
      // Postgres text and jsonb cannot hold U+0000: refused here rather than failing in the database.
      throw RpcError.invalidParams([{ path: nul, message: 'must not contain the NUL character (U+0000)' }]);
    }
    return m.handle(parsed.data, ctx);
  }

  private toError(name: unknown, err: unknown): RpcErrorBody {
    if (err instanceof RpcError) {
      return err.toBody();
    }
    this.logger.error(`${String(name)} failed: ${err instanceof Error ? err.stack : String(err)}`);
    return new RpcError('internal_error', 'Internal error').toBody();
  }
}

/**
 * zod's issues as the protocol's `data.issues`: one per offending param, with its dotted path.
 * zod may report several checks failing on one param (`''` is both too short and off-pattern);
 * those become one issue whose message lists them all.
 */
export function toIssues(error: z.ZodError): ParamIssue[] {
  const byPath = new Map<string, string[]>();
  const add = (path: string, message: string) => {
    const messages = byPath.get(path) ?? [];
    if (!messages.includes(message)) {
      messages.push(message);
    }
    byPath.set(path, messages);
  };
  for (const issue of error.issues) {
    const base = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        add(base ? `${base}.${k}` : k, 'unknown param');
      }
    } else if (issue.code === 'invalid_type' && issue.input === undefined) {
      add(base, 'required');
    } else {
      add(base, issue.message);
    }
  }
  return [...byPath].map(([path, messages]) => ({ path, message: messages.join('; ') }));
}

/** The dotted path of the first string (value or key) holding U+0000, if any. */
function findNul(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') {
    return value.includes('\u0000') ? path : undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const at = path ? `${path}.${k}` : k;
    const found = k.includes('\u0000') ? at : findNul(v, at);
    if (found !== undefined) {
      return found;
    }
  }
  return undefined;
}

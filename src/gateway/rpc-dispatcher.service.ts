import { Inject, Injectable, Logger } from '@nestjs/common';
import { SpanKind } from '@opentelemetry/api';
import { z } from 'zod';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { closestName } from 'src/common/did-you-mean';
import { ParamIssue, RpcError, RpcErrorBody } from 'src/common/rpc-error';
import { SessionsService } from 'src/sessions/sessions.service';
import { inSpan, markFailed } from 'src/telemetry/tracing';
import { AuthService } from './auth.service';
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
    private readonly auth: AuthService,
    private readonly sessions: SessionsService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.methods = new Map(methods.methods.map((m) => [m.name, m]));
  }

  /** Each call is an `rpc <method>` span: the work it queues continues its trace. */
  dispatch(name: unknown, params: unknown, ctx: CallContext): Promise<RpcReply> {
    const method = typeof name === 'string' && this.methods.has(name) ? name : 'unknown';
    const attributes = { 'rpc.system': 'jsonrpc', 'rpc.method': method };
    return inSpan(`rpc ${method}`, { kind: SpanKind.SERVER, attributes }, async (span) => {
      try {
        return { result: await this.call(name, params, ctx) };
      } catch (err) {
        const error = this.toError(name, err);
        markFailed(span, error.data.reason);
        return { error };
      }
    });
  }

  private async call(name: unknown, params: unknown, ctx: CallContext): Promise<unknown> {
    const m = typeof name === 'string' ? this.methods.get(name) : undefined;
    if (!m) {
      const suggestion = typeof name === 'string' ? closestName(name, [...this.methods.keys()]) : undefined;
      throw new RpcError(
        'method_not_found',
        `Unknown method '${String(name)}'${suggestion ? `. Did you mean '${suggestion}'?` : ''}`,
        suggestion ? { didYouMean: suggestion } : {},
      );
    }
    if (depthOf(params, MAX_DEPTH) > MAX_DEPTH) {
      throw RpcError.invalidParams([
        { path: '', message: `params are nested deeper than ${MAX_DEPTH} levels` },
      ]);
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
    const unstorable = findUnstorable(parsed.data, '');
    if (unstorable !== undefined) {
      // Postgres text and jsonb cannot hold these: refused here rather than failing in the database.
      throw RpcError.invalidParams([unstorable]);
    }
    // Another caller's session is as good as unknown (docs/protocol.md: "or another token's").
    const sessionId = (parsed.data as { sessionId?: unknown } | null)?.sessionId;
    if (this.auth.enabled && !m.guardsOwnSession && typeof sessionId === 'string') {
      await this.sessions.assertVisible(sessionId, ctx.principal);
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

const MAX_DEPTH = 64;

// A UTF-16 surrogate without its pair: valid in a JS string, refused by Postgres' jsonb.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function unstorableText(text: string): string | undefined {
  if (text.includes('\u0000')) {
    return 'must not contain the NUL character (U+0000)';
  }
  return LONE_SURROGATE.test(text) ? 'must not contain an unpaired UTF-16 surrogate' : undefined;
}

/** The first string (value or key) the database could not store, with its dotted path. */
function findUnstorable(value: unknown, path: string): ParamIssue | undefined {
  if (typeof value === 'string') {
    const message = unstorableText(value);
    return message ? { path, message } : undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  for (const [k, v] of Object.entries(value)) {
    const at = path ? `${path}.${k}` : k;
    const keyProblem = unstorableText(k);
    const found = keyProblem ? { path: at, message: keyProblem } : findUnstorable(v, at);
    if (found !== undefined) {
      return found;
    }
  }
  return undefined;
}

/** How deep objects and arrays nest (iteratively: a hostile depth must not overflow the stack). Stops past `limit`. */
function depthOf(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) {
      continue;
    }
    deepest = Math.max(deepest, depth + 1);
    if (deepest > limit) {
      return deepest;
    }
    for (const child of Object.values(v)) {
      stack.push([child, depth + 1]);
    }
  }
  return deepest;
}

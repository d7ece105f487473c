import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { ToolCall, ToolSchema } from 'src/llm/model-provider';
import { Metrics } from 'src/telemetry/metrics';
import { stopwatch } from 'src/telemetry/stopwatch';
import { inSpan, markFailed } from 'src/telemetry/tracing';
import { BuiltinToolsService, toolErrorMessage } from './builtin-tools.service';
import { ToolName } from './tool-names';
import { ToolContext, ToolDefinition } from './tool.types';

export interface ToolOutcome {
  tool: string;
  args: unknown;
  /** What goes back to the model: the tool's JSON, or `{ error }`. */
  result: unknown;
}

/** Looks tools up, tells the model about them, and runs the calls it makes. */
@Injectable()
export class ToolRegistryService {
  private readonly tools: Map<string, ToolDefinition>;
  private readonly schemas = new Map<string, ToolSchema>();

  constructor(
    builtins: BuiltinToolsService,
    private readonly metrics: Metrics,
  ) {
    this.tools = new Map(builtins.definitions.map((t) => [t.name, t]));
    for (const t of builtins.definitions) {
      const parameters = z.toJSONSchema(t.schema, { io: 'input', unrepresentable: 'any' }) as Record<
        string,
        unknown
      >;
      delete parameters.$schema;
      this.schemas.set(t.name, { name: t.name, description: t.description, parameters });
    }
  }

  /** The function tools given to the model: only those the agent is allowed. */
  schemasFor(allowed: readonly ToolName[]): ToolSchema[] {
    return allowed.map((n) => this.schemas.get(n)).filter((s): s is ToolSchema => s !== undefined);
  }

  /**
   * Runs one call. Malformed JSON, unknown or forbidden tools, invalid arguments and the tool's own
   * refusals come back as `{ error }` for the model to read and correct; limits, aborts and bugs are thrown.
   */
  execute(ctx: ToolContext, call: ToolCall): Promise<ToolOutcome> {
    const elapsed = stopwatch();
    const attributes = {
      'gen_ai.operation.name': 'execute_tool',
      'gen_ai.tool.name': call.name,
      'gen_ai.tool.call.id': call.id,
    };
    // The span is active while the tool runs: mail it sends carries this span's trace context.
    return inSpan(`execute_tool ${call.name}`, { attributes }, async (span) => {
      let outcome = 'error';
      try {
        const done = await this.run(ctx, call);
        const refused = isRefusal(done.result);
        if (refused) {
          markFailed(span, refused);
        }
        outcome = refused ? 'error' : 'ok';
        return done;
      } finally {
        // A name the model made up is not a label value: labels must stay few.
        const tool = this.tools.has(call.name) ? call.name : 'unknown';
        this.metrics.toolCallDuration.observe({ tool, outcome }, elapsed());
      }
    });
  }

  private async run(ctx: ToolContext, call: ToolCall): Promise<ToolOutcome> {
    let args: unknown;
    try {
      args = call.arguments.trim() === '' ? {} : JSON.parse(call.arguments);
    } catch {
      return {
        tool: call.name,
        args: call.arguments,
        result: { error: `arguments are not valid JSON: ${call.arguments.slice(0, 200)}` },
      };
    }
    const tool = this.tools.get(call.name);
    if (!tool || !ctx.agent.config.tools.includes(tool.name)) {
      return {
        tool: call.name,
        args,
        result: { error: `unknown tool '${call.name}'; available: ${ctx.agent.config.tools.join(', ')}` },
      };
    }
    const parsed = tool.schema.safeParse(args);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(arguments)'}: ${i.message}`);
      return { tool: call.name, args, result: { error: `invalid arguments: ${issues.join('; ')}` } };
    }
    try {
      return { tool: call.name, args, result: await tool.run(ctx, parsed.data) };
    } catch (err) {
      const message = toolErrorMessage(err);
      if (message === undefined) {
        throw err;
      }
      return { tool: call.name, args, result: { error: message } };
    }
  }
}

/** The error message of a `{ error }` result the model is told about, else undefined. */
function isRefusal(result: unknown): string | undefined {
  if (typeof result === 'object' && result !== null && 'error' in result) {
    const { error } = result;
    return typeof error === 'string' ? error : 'tool error';
  }
  return undefined;
}

import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { Agent } from 'src/agents/agent.types';
import { DatabaseService, Tx } from 'src/database/database.service';
import { ToolCall, ToolSchema } from 'src/llm/model-provider';
import { HistoryService } from 'src/sessions/history.service';
import { Metrics } from 'src/telemetry/metrics';
import { stopwatch } from 'src/telemetry/stopwatch';
import { inSpan, markFailed } from 'src/telemetry/tracing';
import { BuiltinToolsService, toolErrorMessage } from './builtin-tools.service';
import { allowsMcpTool, splitToolName } from './mcp/mcp-config';
import { McpServersService } from './mcp/mcp-servers.service';
import { ToolEffectRepository } from './tool-effect.repository';
import { ToolCallContext, ToolDefinition } from './tool.types';

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
    private readonly db: DatabaseService,
    private readonly history: HistoryService,
    private readonly effects: ToolEffectRepository,
    private readonly mcp: McpServersService,
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

  /**
   * The function tools given to the model: the built-in ones the agent is allowed, then its MCP
   * servers' (which starts those servers, the first time).
   */
  async schemasFor(agent: Agent, signal: AbortSignal): Promise<ToolSchema[]> {
    const builtins = agent.config.tools
      .map((n) => this.schemas.get(n))
      .filter((s): s is ToolSchema => s !== undefined);
    if (!agent.config.mcpServers) {
      return builtins;
    }
    return [...builtins, ...(await this.mcp.toolsFor(agent, signal))];
  }

  /**
   * Runs one call and records it (`async.tool.called`). Malformed JSON, unknown or forbidden tools,
   * invalid arguments and the tool's own refusals come back as `{ error }` for the model to read and
   * correct; limits, aborts and bugs are thrown. A call that an earlier run of the same item had
   * already committed is not run again: its recorded result is returned.
   */
  execute(ctx: ToolCallContext, call: ToolCall): Promise<ToolOutcome> {
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
        const done = await this.once(ctx, call);
        const refused = isRefusal(done.result);
        if (refused) {
          markFailed(span, refused);
        }
        outcome = refused ? 'error' : 'ok';
        return done;
      } finally {
        // A name the model made up is not a label value: labels must stay few.
        const server = splitToolName(call.name)?.server;
        const known = this.tools.has(call.name) || (server !== undefined && this.mcp.has(ctx.agent, server));
        const tool = known ? call.name : 'unknown';
        this.metrics.toolCallDuration.observe({ tool, outcome }, elapsed());
      }
    });
  }

  /** The call, unless an earlier run of the item committed it already; recorded either way. */
  private async once(ctx: ToolCallContext, call: ToolCall): Promise<ToolOutcome> {
    const key = { taskId: ctx.item.taskId, step: ctx.step, index: ctx.index };
    if (ctx.item.attempts > 1) {
      // Only a retried item can have effects on record: a first run skips the read.
      const earlier = await this.db.read((tx) => this.effects.find(tx, key));
      if (earlier?.tool === call.name) {
        return { tool: call.name, args: parseArgs(call.arguments) ?? call.arguments, result: earlier.result };
      }
    }
    let recorded = false;
    const outcome = await this.run(
      ctx,
      call,
      (tool, args) => (fn) =>
        this.history.inSession(
          ctx.agent.sessionId,
          async (tx) => {
            const result = await fn(tx);
            await this.effects.record(tx, key, tool, result);
            await this.recordCall(tx, ctx, { tool, args, result });
            recorded = true;
            return result;
          },
          { owner: true },
        ),
    );
    if (!recorded) {
      await this.history.inSession(ctx.agent.sessionId, (tx) => this.recordCall(tx, ctx, outcome), {
        owner: true,
      });
    }
    return outcome;
  }

  private async run(
    ctx: ToolCallContext,
    call: ToolCall,
    committer: (tool: string, args: unknown) => <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>,
  ): Promise<ToolOutcome> {
    const args = parseArgs(call.arguments);
    if (args === undefined) {
      return {
        tool: call.name,
        args: call.arguments,
        result: { error: `arguments are not valid JSON: ${call.arguments.slice(0, 200)}` },
      };
    }
    const mcp = splitToolName(call.name);
    if (
      mcp &&
      this.mcp.has(ctx.agent, mcp.server) &&
      allowsMcpTool(ctx.agent.config.tools, mcp.server, mcp.tool)
    ) {
      return { tool: call.name, args, result: await this.callMcp(ctx, mcp.server, mcp.tool, args) };
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
      const commit = committer(call.name, args);
      return { tool: call.name, args, result: await tool.run({ ...ctx, commit }, parsed.data) };
    } catch (err) {
      const message = toolErrorMessage(err);
      if (message === undefined) {
        throw err;
      }
      return { tool: call.name, args, result: { error: message } };
    }
  }

  /** MCP calls are not recorded as effects: when an item runs again they run again (at least once). */
  private async callMcp(ctx: ToolCallContext, server: string, tool: string, args: unknown): Promise<unknown> {
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      return { error: 'invalid arguments: expected a JSON object' };
    }
    try {
      return await this.mcp.call(ctx.agent, server, tool, args as Record<string, unknown>, ctx.signal);
    } catch (err) {
      const message = toolErrorMessage(err);
      if (message === undefined) {
        throw err;
      }
      return { error: message };
    }
  }

  private recordCall(tx: Tx, ctx: ToolCallContext, outcome: ToolOutcome): Promise<unknown> {
    return this.history.record(tx, ctx.agent.sessionId, 'async.tool.called', {
      agentId: ctx.agent.agentId,
      taskId: ctx.item.taskId,
      tool: outcome.tool,
      args: outcome.args,
      result: outcome.result,
    });
  }
}

/** The call's arguments as JSON (empty means `{}`); undefined when they are not JSON at all. */
function parseArgs(text: string): unknown {
  try {
    return text.trim() === '' ? {} : (JSON.parse(text) as unknown);
  } catch {
    return undefined;
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

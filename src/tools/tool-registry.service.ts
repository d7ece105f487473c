import { Injectable } from '@nestjs/common';
import { z } from 'zod';
import { Agent } from 'src/agents/agent.types';
import { ToolCall, ToolSchema } from 'src/llm/model-provider';
import { BuiltinToolsService, toolErrorMessage } from './builtin-tools.service';
import { allowsMcpTool, splitToolName } from './mcp/mcp-config';
import { McpServersService } from './mcp/mcp-servers.service';
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
    private readonly mcp: McpServersService,
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
   * Runs one call. Malformed JSON, unknown or forbidden tools, invalid arguments and the tool's own
   * refusals come back as `{ error }` for the model to read and correct; limits, aborts and bugs are thrown.
   */
  async execute(ctx: ToolContext, call: ToolCall): Promise<ToolOutcome> {
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
      return { tool: call.name, args, result: await tool.run(ctx, parsed.data) };
    } catch (err) {
      const message = toolErrorMessage(err);
      if (message === undefined) {
        throw err;
      }
      return { tool: call.name, args, result: { error: message } };
    }
  }

  private async callMcp(ctx: ToolContext, server: string, tool: string, args: unknown): Promise<unknown> {
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
}

import { z } from 'zod';
import { eventNameSchema, idSchema } from 'src/common/names';
import { scriptSchema } from 'src/llm/scripted/script.schema';
import {
  McpServers,
  mcpServersSchema,
  toolEntrySchema,
  unknownServerEntries,
} from 'src/tools/mcp/mcp-config';

export const AGENT_STATES = ['idle', 'active', 'waiting', 'sleeping', 'stopped'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export const WORK_KINDS = ['task', 'mailbox_message', 'event', 'schedule'] as const;
export type WorkKind = (typeof WORK_KINDS)[number];

const positiveInt = (max: number) => z.number().int().min(1).max(max);

export const limitsSchema = z
  .object({
    maxStepsPerTask: positiveInt(1000).optional(),
    maxTokensPerTask: positiveInt(1e12).optional(),
    maxTokens: positiveInt(1e12).optional(),
    maxHops: positiveInt(1000).optional(),
    maxMailPerMinute: positiveInt(1_000_000).optional(),
  })
  .strict();

/** What a template file holds, and (all optional) what `async.createAgent`'s `config` may override. */
const agentFields = {
  description: z.string().max(2000),
  systemPrompt: z.string().max(100_000),
  model: z.string().min(1).max(200),
  temperature: z.number().min(0).max(2),
  maxTokens: positiveInt(1_000_000),
  tools: z.array(toolEntrySchema).max(200),
  wakeEvents: z.array(eventNameSchema).max(100),
  script: scriptSchema,
  limits: limitsSchema,
  mcpServers: mcpServersSchema,
};

export const agentConfigOverridesSchema = z.object(agentFields).partial().strict();
export type AgentConfigOverrides = z.infer<typeof agentConfigOverridesSchema>;

export const templateSchema = z
  .object({
    name: idSchema,
    description: agentFields.description,
    systemPrompt: agentFields.systemPrompt,
    tools: agentFields.tools,
    wakeEvents: agentFields.wakeEvents.default([]),
    script: agentFields.script.default([]),
    model: agentFields.model.optional(),
    temperature: agentFields.temperature.optional(),
    maxTokens: agentFields.maxTokens.optional(),
    limits: limitsSchema.optional(),
    mcpServers: agentFields.mcpServers.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    for (const entry of unknownServerEntries(t.tools, t.mcpServers)) {
      ctx.addIssue({ code: 'custom', path: ['tools'], message: `'${entry}' names no server in mcpServers` });
    }
  });
export type Template = z.infer<typeof templateSchema>;

export interface AgentLimits {
  maxStepsPerTask: number;
  maxTokensPerTask?: number;
  maxTokens?: number;
  /** A send that would carry more hops than this is refused (a tool error): loops end, agents go on. */
  maxHops: number;
  /** Unset by default: honest agents are never stopped by a rate. */
  maxMailPerMinute?: number;
}

export const DEFAULT_LIMITS: AgentLimits = { maxStepsPerTask: 16, maxHops: 16 };

/** An agent's effective configuration: its template with `config` laid over it. Stored with the agent. */
export interface AgentConfig {
  description: string;
  systemPrompt: string;
  model?: string;
  temperature?: number;
  maxTokens?: number;
  /** Built-in tool names, `<server>__<tool>` and `<server>__*`. */
  tools: string[];
  script: z.infer<typeof scriptSchema>;
  limits: AgentLimits;
  /** MCP servers by name; their `env` and `headers` never leave the server (not pushed, not in the history). */
  mcpServers?: McpServers;
}

export interface Agent {
  sessionId: string;
  agentId: string;
  template: string;
  config: AgentConfig;
  state: AgentState;
  stopReason: string | null;
  /** The agent whose reply this one awaits (send_mail_with_switch): an edge of the waits-for graph. */
  waitingOn: string | null;
  wakeEvents: string[];
  sleepingUntil: string | null;
  errorCount: number;
  lastError: string | null;
  lastActiveAt: string | null;
  tokensUsed: number;
  createdAt: string;
}

/** `async.getAgentStates`' per-agent snapshot; the seed's snake_case names are kept on purpose. */
export interface AgentStateSnapshot {
  state: AgentState;
  current_task: WorkKind | null;
  queue_size: number;
  sleeping_until: string | null;
  wake_events: string[];
  error_count: number;
  last_error: string | null;
  last_active_at: string | null;
  template: string;
  tokens_used: number;
}

import { z } from 'zod';
import {
  agentConfigOverridesSchema,
  agentFields,
  limitsSchema,
  type McpServers,
  unknownServerEntries,
} from '@mailroom/client/protocol';
import { idSchema } from 'src/common/names';
import { scriptSchema } from 'src/llm/scripted/script.schema';

// The states, kinds and the config a client may send are the protocol's (the client package).
export { AGENT_STATES, WORK_KINDS } from '@mailroom/client/protocol';
export type { AgentState, WorkKind } from '@mailroom/client/protocol';
import type { AgentState } from '@mailroom/client/protocol';
export { agentConfigOverridesSchema, limitsSchema };
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

/** `async.getAgentStates`' per-agent snapshot is the protocol's. */
export type { AgentStateSnapshot } from '@mailroom/client/protocol';

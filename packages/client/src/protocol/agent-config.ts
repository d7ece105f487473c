import { z } from 'zod';
import { mcpServersSchema, toolEntrySchema } from './mcp';
import { eventNameSchema } from './names';
import { scriptSchema } from './script';

const positiveInt = (max: number) => z.number().int().min(1).max(max);

/** `config.limits` of `async.createAgent` (and of a template). */
export const limitsSchema = z
  .object({
    maxStepsPerTask: positiveInt(1000).optional(),
    maxTokensPerTask: positiveInt(1e12).optional(),
    maxTokens: positiveInt(1e12).optional(),
    maxHops: positiveInt(1000).optional(),
    maxMailPerMinute: positiveInt(1_000_000).optional(),
  })
  .strict();

/** The fields a template file holds; `async.createAgent`'s `config` may override each of them. */
export const agentFields = {
  description: z.string().max(2000),
  systemPrompt: z.string().max(100_000),
  model: z.string().min(1).max(200),
  temperature: z.number().min(0).max(2),
  maxTokens: positiveInt(1_000_000),
  /** Built-in tool names, `<server>__<tool>` and `<server>__*`. */
  tools: z.array(toolEntrySchema).max(200),
  wakeEvents: z.array(eventNameSchema).max(100),
  script: scriptSchema,
  limits: limitsSchema,
  mcpServers: mcpServersSchema,
};

export const agentConfigOverridesSchema = z.object(agentFields).partial().strict();
export type AgentConfigOverrides = z.input<typeof agentConfigOverridesSchema>;

import { z } from 'zod';
import { Agent } from 'src/agents/agent.types';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { SleepRequest } from 'src/events/events.service';
import { ToolName } from './tool-names';

/** What a tool knows about its caller. */
export interface ToolContext {
  agent: Agent;
  item: WorkItem;
  signal: AbortSignal;
  /** `sleep` takes effect when the current step ends; the runtime applies what is deferred here. */
  deferSleep: (request: SleepRequest) => void;
}

export interface ToolDefinition<S extends z.ZodType = z.ZodType> {
  name: ToolName;
  description: string;
  schema: S;
  run(ctx: ToolContext, args: z.infer<S>): Promise<unknown>;
}

/** A failure the model is told about (as `{ "error": … }`); the agent carries on. */
export class ToolError extends Error {}

/** A limit that ends the task and stops the agent (`limit_exceeded`). */
export class AgentLimitError extends Error {}

export const MAX_SWITCH_DEPTH = 5;

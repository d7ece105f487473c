import { z } from 'zod';
import { Agent } from 'src/agents/agent.types';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { SleepRequest } from 'src/events/events.service';
import { Tx } from 'src/database/database.service';
import { ToolName } from './tool-names';

/** What the runtime tells the registry about a call: its caller and where it stands in the item. */
export interface ToolCallContext {
  agent: Agent;
  item: WorkItem;
  signal: AbortSignal;
  /** `sleep` takes effect when the current step ends; the runtime applies what is deferred here. */
  deferSleep: (request: SleepRequest) => void;
  /** The model step (1, 2, …) and the call's place among that step's calls. */
  step: number;
  index: number;
}

/** What a tool knows about its caller. */
export interface ToolContext extends ToolCallContext {
  /**
   * Runs the call's effect in a transaction of the caller's session that also records the call: its
   * result (handed back, not redone, when the item runs again) and the `async.tool.called` push.
   * What `fn` returns is the tool's result.
   */
  commit: <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>;
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

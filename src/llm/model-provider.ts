import type { Usage, WorkKind } from '@mailroom/client/protocol';
import { Script } from './scripted/script.schema';

export interface ToolCall {
  id: string;
  name: string;
  /** The arguments as the model wrote them: a JSON string, possibly malformed. */
  arguments: string;
}

export type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string | null; toolCalls?: ToolCall[] }
  | { role: 'tool'; toolCallId: string; name: string; content: string };

export interface ToolSchema {
  name: string;
  description: string;
  /** JSON Schema of the arguments, derived from the same schema that validates them. */
  parameters: Record<string, unknown>;
}

/** What the agent is working on; the scripted model matches its rules against it. */
export interface WorkContext {
  agentId: string;
  kind: WorkKind;
  /** Task prompt, mail body or event name. */
  prompt: string;
  from?: string;
  subject?: string;
  body?: string;
  messageId?: string;
  event?: string;
  data?: unknown;
}

export interface ModelRequest {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  messages: ChatMessage[];
  tools: ToolSchema[];
  signal: AbortSignal;
  work: WorkContext;
  /** For the scripted provider only. */
  script?: Script;
}

export type ModelChunk =
  { type: 'text'; delta: string } | { type: 'tool_call'; call: ToolCall } | { type: 'usage'; usage: Usage };

/** A model: messages and tool schemas in; streamed text, tool calls and usage out. */
export interface ModelProvider {
  readonly name: string;
  /** The model name reported when neither template nor config names one. */
  readonly defaultModel: string;
  stream(request: ModelRequest): AsyncIterable<ModelChunk>;
}

export const MODEL_PROVIDER = Symbol('MODEL_PROVIDER');

/**
 * A model call that could not be completed. `unavailable`: the provider kept failing in ways worth
 * retrying (429, 5xx, network, timeout) and the retries ran out; `model_error`: it refused the call.
 */
export class ModelCallError extends Error {
  constructor(
    readonly code: 'unavailable' | 'model_error',
    message: string,
  ) {
    super(message);
    this.name = 'ModelCallError';
  }
}

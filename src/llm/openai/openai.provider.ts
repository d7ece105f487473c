import OpenAI from 'openai';
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
} from 'openai/resources/chat/completions';
import { Clock, delay, TimerHandle } from 'src/common/clock';
import {
  ChatMessage,
  ModelCallError,
  ModelChunk,
  ModelProvider,
  ModelRequest,
  ToolCall,
} from '../model-provider';
import { backoffMs, classify } from './retry-policy';

export interface OpenAiProviderOptions {
  apiKey: string | undefined;
  baseUrl: string | undefined;
  model: string;
  timeoutMs: number;
  retry: { maxRetries: number; baseMs: number; maxMs: number };
}

/**
 * Any OpenAI-compatible Chat Completions endpoint (OpenAI, OpenRouter, Ollama, vLLM, LM Studio)
 * through the official client, streaming. Retries and timeouts are ours, on the injected clock:
 * the client's own retry loop is off so backoff is testable. A call keeps its concurrency slot while it
 * backs off: a rate-limited provider should see fewer calls, not the same number from other agents.
 */
export class OpenAiProvider implements ModelProvider {
  readonly name = 'openai';
  readonly defaultModel: string;
  private readonly client: OpenAI;

  constructor(
    private readonly options: OpenAiProviderOptions,
    private readonly clock: Clock,
  ) {
    this.defaultModel = options.model;
    this.client = new OpenAI({
      // Local servers (Ollama, vLLM) accept any key; the client insists on one.
      apiKey: options.apiKey ?? 'not-needed',
      baseURL: options.baseUrl ?? 'https://api.openai.com/v1',
      maxRetries: 0,
      timeout: 24 * 3600 * 1000, // ours is the idle timeout below
    });
  }

  async *stream(request: ModelRequest): AsyncIterable<ModelChunk> {
    const { maxRetries } = this.options.retry;
    for (let attempt = 0; ; attempt++) {
      let yielded = false;
      try {
        for await (const chunk of this.attempt(request)) {
          yielded = true;
          yield chunk;
        }
        return;
      } catch (err) {
        request.signal.throwIfAborted();
        const verdict = classify(err, this.clock.now());
        if (!verdict.retryable) {
          throw new ModelCallError('model_error', `model call failed: ${verdict.message}`);
        }
        if (yielded) {
          // Text already went out as deltas; a retry would repeat it.
          throw new ModelCallError('unavailable', `model stream broke off: ${verdict.message}`);
        }
        if (attempt >= maxRetries) {
          throw new ModelCallError(
            'unavailable',
            `model call failed after ${attempt + 1} attempt${attempt ? 's' : ''}: ${verdict.message}`,
          );
        }
        await delay(this.clock, backoffMs(attempt, this.options.retry, verdict.retryAfterMs), request.signal);
      }
    }
  }

  /** One HTTP call, streamed. Tool calls arrive in pieces and are emitted whole at the end. */
  private async *attempt(request: ModelRequest): AsyncIterable<ModelChunk> {
    // A signal aborted already (the agent was stopped while it waited for a slot) fires no 'abort' event.
    request.signal.throwIfAborted();
    const controller = new AbortController();
    const onAbort = () => controller.abort(request.signal.reason);
    request.signal.addEventListener('abort', onAbort, { once: true });
    let timer: TimerHandle | undefined;
    let timedOut = false;
    const arm = () => {
      timer?.cancel();
      timer = this.clock.setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, this.options.timeoutMs);
    };
    try {
      arm();
      const stream = await this.client.chat.completions.create(this.params(request), {
        signal: controller.signal,
      });
      const calls = new Map<number, ToolCall>();
      let usage: ModelChunk | undefined;
      let finished = false;
      for await (const chunk of stream) {
        arm();
        const choice = chunk.choices[0];
        finished ||= Boolean(choice?.finish_reason);
        const delta = choice?.delta;
        if (delta?.content) {
          yield { type: 'text', delta: delta.content };
        }
        for (const piece of delta?.tool_calls ?? []) {
          const call = calls.get(piece.index) ?? { id: '', name: '', arguments: '' };
          call.id = piece.id ?? call.id;
          call.name += piece.function?.name ?? '';
          call.arguments += piece.function?.arguments ?? '';
          calls.set(piece.index, call);
        }
        usage = chunk.usage ? toUsage(chunk) : usage;
      }
      // An aborted stream ends quietly, as if complete; so does one cut short without [DONE].
      if (controller.signal.aborted) {
        throw new OpenAI.APIUserAbortError();
      }
      if (!finished) {
        throw new OpenAI.APIConnectionError({ message: 'the stream ended before the answer was complete' });
      }
      for (const [index, call] of [...calls].sort(([a], [b]) => a - b)) {
        yield { type: 'tool_call', call: { ...call, id: call.id || `call_${index}` } };
      }
      yield usage ?? { type: 'usage', usage: estimate(request.messages) };
    } catch (err) {
      if (timedOut && !request.signal.aborted) {
        throw new OpenAI.APIConnectionTimeoutError({ message: `no answer for ${this.options.timeoutMs} ms` });
      }
      throw err;
    } finally {
      timer?.cancel();
      request.signal.removeEventListener('abort', onAbort);
    }
  }

  private params(request: ModelRequest): ChatCompletionCreateParamsStreaming {
    return {
      model: request.model ?? this.defaultModel,
      messages: request.messages.map(toOpenAi),
      ...(request.tools.length
        ? {
            tools: request.tools.map((t) => ({
              type: 'function' as const,
              function: { name: t.name, description: t.description, parameters: t.parameters },
            })),
          }
        : {}),
      ...(request.temperature !== undefined ? { temperature: request.temperature } : {}),
      ...(request.maxTokens !== undefined ? { max_tokens: request.maxTokens } : {}),
      stream: true,
      stream_options: { include_usage: true },
    };
  }
}

function toOpenAi(m: ChatMessage): ChatCompletionMessageParam {
  switch (m.role) {
    case 'system':
    case 'user':
      return { role: m.role, content: m.content };
    case 'assistant':
      return {
        role: 'assistant',
        // Chat Completions requires the content of an assistant message without tool calls.
        content: m.content ?? (m.toolCalls?.length ? null : ''),
        ...(m.toolCalls?.length
          ? {
              tool_calls: m.toolCalls.map((c) => ({
                id: c.id,
                type: 'function' as const,
                function: { name: c.name, arguments: c.arguments },
              })),
            }
          : {}),
      };
    case 'tool':
      return { role: 'tool', tool_call_id: m.toolCallId, content: m.content };
  }
}

function toUsage(chunk: ChatCompletionChunk): ModelChunk {
  return {
    type: 'usage',
    usage: {
      promptTokens: chunk.usage?.prompt_tokens ?? 0,
      completionTokens: chunk.usage?.completion_tokens ?? 0,
    },
  };
}

/** Servers that do not report usage (some local ones) still count against budgets, roughly. */
function estimate(messages: ChatMessage[]) {
  const chars = messages.reduce((n, m) => n + (m.content?.length ?? 0), 0);
  return { promptTokens: Math.ceil(chars / 4), completionTokens: 0 };
}

import { Inject, Injectable } from '@nestjs/common';
import { SpanKind } from '@opentelemetry/api';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { Semaphore } from 'src/common/mutex';
import { Metrics } from 'src/telemetry/metrics';
import { stopwatch } from 'src/telemetry/stopwatch';
import { inSpan } from 'src/telemetry/tracing';
import { MODEL_PROVIDER, ModelChunk, ModelProvider, ModelRequest } from './model-provider';

/** The agents' way to a model: one provider, and a global cap on calls in flight (`LLM_CONCURRENCY`). */
@Injectable()
export class LlmService {
  private readonly limiter: Semaphore;

  constructor(
    @Inject(MODEL_PROVIDER) private readonly provider: ModelProvider,
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly metrics: Metrics,
  ) {
    this.limiter = new Semaphore(config.llmConcurrency);
  }

  get providerName(): string {
    return this.provider.name;
  }

  get defaultModel(): string {
    return this.provider.defaultModel;
  }

  /**
   * Runs one model call to the end and hands each chunk to `onChunk` as it arrives. Each call is a
   * span named as the GenAI semantic conventions say (`chat <model>`), timed and its tokens counted.
   */
  complete(request: ModelRequest, onChunk: (chunk: ModelChunk) => Promise<void> | void): Promise<void> {
    const model = request.model ?? this.provider.defaultModel;
    const labels = { provider: this.provider.name, model };
    const elapsed = stopwatch();
    const usage = { input: 0, output: 0 };
    const attributes = {
      'gen_ai.operation.name': 'chat',
      'gen_ai.system': this.provider.name,
      'gen_ai.provider.name': this.provider.name,
      'gen_ai.request.model': model,
      ...(request.temperature === undefined ? {} : { 'gen_ai.request.temperature': request.temperature }),
      ...(request.maxTokens === undefined ? {} : { 'gen_ai.request.max_tokens': request.maxTokens }),
    };
    return inSpan(`chat ${model}`, { kind: SpanKind.CLIENT, attributes }, async (span) => {
      let outcome = 'error';
      try {
        // A call waiting for a slot gives it up when its agent is stopped.
        await this.limiter.run(async () => {
          for await (const chunk of this.provider.stream(request)) {
            request.signal.throwIfAborted();
            if (chunk.type === 'usage') {
              usage.input += chunk.usage.promptTokens;
              usage.output += chunk.usage.completionTokens;
            }
            await onChunk(chunk);
          }
        }, request.signal);
        outcome = 'ok';
      } finally {
        span.setAttributes({
          'gen_ai.usage.input_tokens': usage.input,
          'gen_ai.usage.output_tokens': usage.output,
        });
        this.metrics.modelCallDuration.observe({ ...labels, outcome }, elapsed());
        this.metrics.modelTokens.inc({ ...labels, type: 'input' }, usage.input);
        this.metrics.modelTokens.inc({ ...labels, type: 'output' }, usage.output);
      }
    });
  }
}

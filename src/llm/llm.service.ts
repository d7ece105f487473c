import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { Semaphore } from 'src/common/mutex';
import { MODEL_PROVIDER, ModelChunk, ModelProvider, ModelRequest } from './model-provider';

/** The agents' way to a model: one provider, and a global cap on calls in flight (`LLM_CONCURRENCY`). */
@Injectable()
export class LlmService {
  private readonly limiter: Semaphore;

  constructor(
    @Inject(MODEL_PROVIDER) private readonly provider: ModelProvider,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.limiter = new Semaphore(config.llmConcurrency);
  }

  get providerName(): string {
    return this.provider.name;
  }

  get defaultModel(): string {
    return this.provider.defaultModel;
  }

  /** Runs one model call to the end and hands each chunk to `onChunk` as it arrives. */
  complete(request: ModelRequest, onChunk: (chunk: ModelChunk) => Promise<void> | void): Promise<void> {
    // A call waiting for a slot gives it up when its agent is stopped.
    return this.limiter.run(async () => {
      for await (const chunk of this.provider.stream(request)) {
        request.signal.throwIfAborted();
        await onChunk(chunk);
      }
    }, request.signal);
  }
}

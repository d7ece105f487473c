import { Module } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock } from 'src/common/clock';
import { LlmService } from './llm.service';
import { MODEL_PROVIDER, ModelProvider } from './model-provider';
import { OpenAiProvider } from './openai/openai.provider';
import { ScriptedProvider } from './scripted/scripted.provider';

@Module({
  providers: [
    {
      provide: MODEL_PROVIDER,
      inject: [APP_CONFIG, CLOCK],
      useFactory: (config: AppConfig, clock: Clock): ModelProvider => {
        if (config.modelProvider === 'openai') {
          return new OpenAiProvider(
            {
              apiKey: config.openai.apiKey,
              baseUrl: config.openai.baseUrl,
              model: config.openai.model,
              timeoutMs: config.llmTimeoutMs,
              retry: config.llmRetry,
            },
            clock,
          );
        }
        return new ScriptedProvider(clock);
      },
    },
    LlmService,
  ],
  exports: [LlmService],
})
export class LlmModule {}

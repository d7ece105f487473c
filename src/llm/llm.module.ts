import { Module } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock } from 'src/common/clock';
import { LlmService } from './llm.service';
import { MODEL_PROVIDER, ModelProvider } from './model-provider';
import { ScriptedProvider } from './scripted/scripted.provider';

@Module({
  providers: [
    {
      provide: MODEL_PROVIDER,
      inject: [APP_CONFIG, CLOCK],
      useFactory: (config: AppConfig, clock: Clock): ModelProvider => {
        if (config.modelProvider === 'openai') {
          // The OpenAI-compatible provider is the next milestone; failing here beats silently going offline.
          throw new Error(
            'MODEL_PROVIDER=openai is not available in this build yet; use MODEL_PROVIDER=scripted',
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

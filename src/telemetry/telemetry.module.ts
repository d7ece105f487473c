import { Global, Module } from '@nestjs/common';
import { Metrics } from './metrics';
import { TracingService } from './tracing.service';

/** Metrics and tracing for every module: the instruments and the tracing SDK, with no dependencies of their own. */
@Global()
@Module({ providers: [Metrics, TracingService], exports: [Metrics] })
export class TelemetryModule {}

import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { context, propagation, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';

/**
 * Starts the tracing SDK when OTEL_EXPORTER_OTLP_ENDPOINT is set: a tracer provider with the
 * AsyncLocalStorage context manager and the W3C propagator, batching spans to `<endpoint>/v1/traces`.
 * Unset, nothing is started and the API stays a no-op. Shut down with the app (pending spans are flushed).
 */
@Injectable()
export class TracingService implements OnApplicationShutdown {
  private readonly logger = new Logger(TracingService.name);
  private readonly provider?: NodeTracerProvider;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const { endpoint, serviceName } = config.otel;
    if (!endpoint) {
      return;
    }
    const url = `${endpoint.replace(/\/+$/, '')}/v1/traces`;
    this.provider = new NodeTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }))],
    });
    this.provider.register();
    this.logger.log(`Tracing: spans exported over OTLP to ${url}`);
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.provider) {
      return;
    }
    await this.provider
      .shutdown()
      .catch((err: unknown) => this.logger.warn(`Span export failed: ${String(err)}`));
    // So that an app started later in this process can register its own provider.
    trace.disable();
    context.disable();
    propagation.disable();
  }
}

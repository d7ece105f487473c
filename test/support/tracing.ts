import { context, propagation, trace } from '@opentelemetry/api';
import {
  InMemorySpanExporter,
  ReadableSpan,
  SimpleSpanProcessor,
  Span,
  SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

/** Resolves waiters as spans end, so a test waits for a span instead of sleeping. */
class EndedSpans implements SpanProcessor {
  private waiters: Array<{ match: (s: ReadableSpan) => boolean; resolve: (s: ReadableSpan) => void }> = [];

  constructor(private readonly exporter: InMemorySpanExporter) {}

  onStart(_span: Span): void {}

  onEnd(span: ReadableSpan): void {
    this.waiters = this.waiters.filter((w) => {
      if (w.match(span)) {
        w.resolve(span);
        return false;
      }
      return true;
    });
  }

  waitFor(match: (s: ReadableSpan) => boolean, timeoutMs = 20_000): Promise<ReadableSpan> {
    const seen = this.exporter.getFinishedSpans().find(match);
    if (seen) {
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      // A guard against a hung test, not a timing assertion.
      const timer = setTimeout(() => reject(new Error('timed out waiting for a span')), timeoutMs);
      this.waiters.push({
        match,
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      });
    });
  }

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A real tracer provider (AsyncLocalStorage context, W3C propagation) that keeps every ended span
 * in an InMemorySpanExporter, registered for this test file like an OTLP one would be.
 */
export function recordSpans() {
  const exporter = new InMemorySpanExporter();
  const ended = new EndedSpans(exporter);
  // The exporter first, so a span is in it by the time a waiter hears of it.
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter), ended] });
  provider.register();
  return {
    exporter,
    waitForSpan: (match: (s: ReadableSpan) => boolean) => ended.waitFor(match),
    stop: async () => {
      await provider.shutdown();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

export const spanId = (s: ReadableSpan) => s.spanContext().spanId;
export const traceId = (s: ReadableSpan) => s.spanContext().traceId;
export const parentId = (s: ReadableSpan) => s.parentSpanContext?.spanId;

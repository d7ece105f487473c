import {
  Attributes,
  context,
  Context,
  propagation,
  ROOT_CONTEXT,
  Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';

/**
 * Spans through the OpenTelemetry API only. Until a tracer provider is registered (TracingService
 * with an OTLP endpoint, or a test's in-memory exporter) every call here is the API's no-op: no SDK,
 * no context manager, nothing recorded.
 */
const tracer = () => trace.getTracer('mailroom');

export interface SpanOptions {
  attributes?: Attributes;
  kind?: SpanKind;
  /** The parent; by default the active context. */
  parent?: Context;
}

/** Runs `fn` in a new span that is the active one inside it (spans started there are its children). */
export function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span) => Promise<T>): Promise<T> {
  const { parent = context.active(), ...rest } = options;
  return tracer().startActiveSpan(name, rest, parent, (span) => ended(span, () => fn(span)));
}

/**
 * Runs `fn` inside a leaf span under the active one: what `fn` does keeps the caller's context, so
 * (say) mail queued in a transaction names the tool call that sent it, not the transaction. Outside
 * a trace (a loop claiming its next item, a timer) there is no span: a trace per claim would bury the work.
 */
export function inChildSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>): Promise<T> {
  const parent = context.active();
  if (!trace.getSpan(parent)) {
    return fn();
  }
  return ended(tracer().startSpan(name, { attributes }, parent), fn);
}

/**
 * A leaf span under the active one, for work done on the caller's behalf by someone else's
 * operation (a write committed by a batch another write opened), to be ended by the caller;
 * undefined outside a trace, as with {@link inChildSpan}.
 */
export function startChildSpan(name: string, attributes: Attributes): Span | undefined {
  const parent = context.active();
  return trace.getSpan(parent) ? tracer().startSpan(name, { attributes }, parent) : undefined;
}

/** Runs `fn` outside every span: an agent's loop must not inherit the context of whoever signalled it. */
export function detached<T>(fn: () => Promise<T>): Promise<T> {
  return context.with(ROOT_CONTEXT, fn);
}

/** The W3C `traceparent` of the active span, to carry it across the mailbox; undefined when not tracing. */
export function activeTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** The context a `traceparent` names, or the root when there is none. */
export function contextOf(traceparent: string | undefined): Context {
  return traceparent ? propagation.extract(ROOT_CONTEXT, { traceparent }) : ROOT_CONTEXT;
}

export function markFailed(span: Span, message: string): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

async function ended<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error) {
      span.recordException(err);
    }
    markFailed(span, err instanceof Error ? err.message : String(err));
    throw err;
  } finally {
    span.end();
  }
}

/** What a work item's span needs to know of it. */
export interface TracedItem {
  taskId: string;
  sessionId: string;
  agentId: string;
  kind: string;
  payload: { traceparent?: string; from?: string };
}

/**
 * Runs an agent's work on one item in an `invoke_agent <agentId>` span. An item queued by another
 * agent's tool call (mail, a broadcast event) carries that call's trace context, and its span is
 * that call's child: a workflow reads as one trace across the mailbox.
 */
export function inWorkItemSpan<T>(item: TracedItem, fn: () => Promise<T>): Promise<T> {
  const attributes: Attributes = {
    'gen_ai.operation.name': 'invoke_agent',
    'gen_ai.agent.name': item.agentId,
    'mailroom.session.id': item.sessionId,
    'mailroom.task.id': item.taskId,
    'mailroom.task.kind': item.kind,
    ...(item.payload.from ? { 'mailroom.mail.from': item.payload.from } : {}),
  };
  return inSpan(
    `invoke_agent ${item.agentId}`,
    { kind: SpanKind.CONSUMER, attributes, parent: contextOf(item.payload.traceparent) },
    async (span) => {
      if (!span.isRecording()) {
        return fn();
      }
      openItems.set(item.taskId, span);
      try {
        return await fn();
      } finally {
        openItems.delete(item.taskId);
      }
    },
  );
}

/** The spans of the items in hand, by task id: a failure is known from the history, not from `fn`. */
const openItems = new Map<string, Span>();

/** Marks the span of an item still in hand as failed (its `async.task.failed` was recorded). */
export function markWorkItemFailed(taskId: string, code: string): void {
  const span = openItems.get(taskId);
  if (span) {
    markFailed(span, code);
  }
}

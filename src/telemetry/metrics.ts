import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// Seconds. A model call or a task takes seconds to minutes; a transaction or a tool call milliseconds.
const LONG_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const SHORT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5];

/**
 * Every Mailroom metric, in one registry per app (tests run several apps in one process, and a
 * global registry would mix them). Counters and histograms are fed by the places that see the
 * thing happen (history records, the model, tool and transaction wrappers); gauges are read at
 * scrape time from whoever knows the number (see {@link sample}).
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  readonly agents = this.gauge('mailroom_agents', 'Agents by state (all sessions)', ['state']);
  readonly queueDepth = this.gauge('mailroom_queue_depth', 'Queued work items (all agents)');
  readonly ownedAgents = this.gauge(
    'mailroom_owned_agents',
    'Agents (not stopped) of the sessions this node runs',
  );
  readonly agentLoops = this.gauge(
    'mailroom_agent_loops',
    'Agents with a loop in memory on this node (idle and sleeping agents hold none)',
  );
  readonly connectedClients = this.gauge('mailroom_connected_clients', 'Connected push clients', [
    'transport',
  ]);

  readonly tasksStarted = this.counter('mailroom_tasks_started_total', 'Work items claimed', ['kind']);
  readonly tasksCompleted = this.counter('mailroom_tasks_completed_total', 'Work items completed', ['kind']);
  readonly tasksFailed = this.counter('mailroom_tasks_failed_total', 'Work items failed', ['kind', 'code']);
  readonly taskDuration = this.histogram(
    'mailroom_task_duration_seconds',
    'From claim to completion or failure',
    ['kind', 'outcome'],
    LONG_BUCKETS,
  );
  readonly modelCallDuration = this.histogram(
    'mailroom_model_call_duration_seconds',
    'One model call, from asking for a slot to its last chunk',
    ['provider', 'model', 'outcome'],
    LONG_BUCKETS,
  );
  readonly modelTokens = this.counter('mailroom_model_tokens_total', 'Tokens the models reported', [
    'provider',
    'model',
    'type',
  ]);
  readonly toolCallDuration = this.histogram(
    'mailroom_tool_call_duration_seconds',
    'One tool call; outcome error: the model was told of an error',
    ['tool', 'outcome'],
    SHORT_BUCKETS,
  );
  readonly wakeLatency = this.histogram(
    'mailroom_wake_latency_seconds',
    'From waking a sleeping agent for arriving work (event or mail) to it starting that work',
    ['reason'],
    SHORT_BUCKETS,
  );
  readonly dbTransactionDuration = this.histogram(
    'mailroom_db_transaction_duration_seconds',
    'One database transaction, waiting for the embedded lock included',
    ['outcome'],
    SHORT_BUCKETS,
  );

  private readonly samplers: Array<() => void> = [];

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Sets `gauge` from `read()` at every scrape: the owner of a number hands over how to read it. */
  sample(gauge: Gauge<string>, read: () => number, labels: Record<string, string> = {}): void {
    this.samplers.push(() => gauge.set(labels, read()));
  }

  /** The exposition text; the scrape-time samples are read first. */
  async text(): Promise<string> {
    for (const sample of this.samplers) {
      sample();
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private counter<L extends string>(name: string, help: string, labelNames: L[] = []) {
    return new Counter<L>({ name, help, labelNames, registers: [this.registry] });
  }

  private gauge<L extends string>(name: string, help: string, labelNames: L[] = []) {
    return new Gauge<L>({ name, help, labelNames, registers: [this.registry] });
  }

  private histogram<L extends string>(name: string, help: string, labelNames: L[], buckets: number[]) {
    return new Histogram<L>({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}

import { Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { AgentRuntimeService } from 'src/agents/runtime/agent-runtime.service';
import { AGENT_STATES } from 'src/agents/agent.types';
import { DatabaseService } from 'src/database/database.service';
import { NotificationBus } from 'src/sessions/notification-bus';
import { Metrics } from 'src/telemetry/metrics';
import { markWorkItemFailed } from 'src/telemetry/tracing';
import { WorkObservation, WorkTimeline } from 'src/sessions/work-timeline';
import { MetricsRepository } from './metrics.repository';

/**
 * Feeds the task metrics from the committed history (the NotificationBus) and reads the gauges the
 * database knows (agents by state, queue depth) at each scrape. A failed item's span is marked from
 * here too: the worker records a failure rather than throwing it.
 */
@Injectable()
export class MetricsService implements OnModuleInit, OnModuleDestroy {
  private subscription?: Subscription;
  private readonly timeline = new WorkTimeline();

  constructor(
    private readonly metrics: Metrics,
    private readonly bus: NotificationBus,
    private readonly db: DatabaseService,
    private readonly repository: MetricsRepository,
    private readonly runtime: AgentRuntimeService,
  ) {
    metrics.sample(metrics.agentLoops, () => runtime.agentLoops);
  }

  onModuleInit(): void {
    this.subscription = this.bus.records$.subscribe((record) => {
      for (const o of this.timeline.observe(record)) {
        this.count(o);
      }
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  /** The exposition text. With the database away, its gauges keep their last values and the rest is served. */
  async scrape(): Promise<string> {
    try {
      const { byState, queued } = await this.db.read(async (tx) => ({
        byState: await this.repository.agentsByState(tx),
        queued: await this.repository.queueDepth(tx),
      }));
      this.metrics.ownedAgents.set(await this.runtime.countOwnedAgents());
      for (const state of AGENT_STATES) {
        this.metrics.agents.set({ state }, byState.get(state) ?? 0);
      }
      this.metrics.queueDepth.set(queued);
    } catch {
      // Health says the database is down; metrics still answer.
    }
    return this.metrics.text();
  }

  get contentType(): string {
    return this.metrics.contentType;
  }

  private count(o: WorkObservation): void {
    const m = this.metrics;
    switch (o.type) {
      case 'taskStarted':
        m.tasksStarted.inc({ kind: o.kind });
        return;
      case 'taskEnded':
        if (o.outcome === 'completed') {
          m.tasksCompleted.inc({ kind: o.kind });
        } else {
          m.tasksFailed.inc({ kind: o.kind, code: o.code ?? 'unknown' });
          markWorkItemFailed(o.taskId, o.code ?? 'unknown');
        }
        if (o.durationMs !== undefined) {
          m.taskDuration.observe({ kind: o.kind, outcome: o.outcome }, o.durationMs / 1000);
        }
        return;
      case 'wokeToWork':
        m.wakeLatency.observe({ reason: o.reason }, o.latencyMs / 1000);
        return;
      case 'agentCreated':
        return;
    }
  }
}

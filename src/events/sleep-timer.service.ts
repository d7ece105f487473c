import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock, TimerHandle } from 'src/common/clock';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { SessionOwner } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { OwnerContext } from 'src/cluster/owner-context';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { Agent } from 'src/agents/agent.types';
import { HistoryService } from 'src/sessions/history.service';

/**
 * One timer per sleep deadline (no polling loop), armed on the node that owns the session. The
 * deadline itself is in the database, so the node that takes a session over arms its timers
 * again, and a timer that fires late (or twice) is harmless: firing only wakes an agent that is
 * still asleep with a deadline that has passed.
 */
@Injectable()
export class SleepTimerService implements SessionOwner, OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(SleepTimerService.name);
  private readonly timers = new Map<string, { sessionId: string; timer: TimerHandle }>();
  private subscription?: Subscription;
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly agents: AgentRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly history: HistoryService,
    private readonly leases: LeaseService,
    private readonly owner: OwnerContext,
    private readonly hints: ClusterHints,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.leases.register(this);
    // A deadline set through another node: the owner arms it.
    this.subscription = this.hints.remote$.subscribe((h) => {
      if (h.timers && this.leases.isServing(h.sessionId)) {
        void this.serve([h.sessionId]).catch((err: unknown) =>
          this.logger.warn(`Re-arming the timers of ${h.sessionId} failed: ${String(err)}`),
        );
      }
    });
  }

  onModuleDestroy(): void {
    this.closed = true;
    this.subscription?.unsubscribe();
    for (const t of this.timers.values()) {
      t.timer.cancel();
    }
    this.timers.clear();
  }

  async serve(sessionIds: string[]): Promise<void> {
    const sleepers = await this.db.read((tx) => this.agents.listSleepingWithDeadline(tx, sessionIds));
    for (const a of sleepers) {
      this.arm(a.sessionId, a.agentId, a.sleepingUntil);
    }
  }

  release(sessionIds: string[]): Promise<void> {
    const gone = new Set(sessionIds);
    for (const [key, t] of this.timers) {
      if (gone.has(t.sessionId)) {
        t.timer.cancel();
        this.timers.delete(key);
      }
    }
    return Promise.resolve();
  }

  /** Arms (or clears) the agent's timer once `tx` commits, on the node that owns its session. */
  armAfterCommit(tx: Tx, agent: Pick<Agent, 'sessionId' | 'agentId' | 'sleepingUntil'>): void {
    this.hints.add(tx, agent.sessionId, { timers: true });
    this.db.afterCommit(tx, () => this.arm(agent.sessionId, agent.agentId, agent.sleepingUntil));
  }

  /** Sets (or replaces, or with `null` clears) the agent's wake-up timer, if this node owns its session. */
  arm(sessionId: string, agentId: string, until: string | null): void {
    const key = `${sessionId}\u0000${agentId}`;
    this.timers.get(key)?.timer.cancel();
    this.timers.delete(key);
    if (until === null || this.closed || !this.leases.isServing(sessionId)) {
      return;
    }
    const timer = this.clock.setTimeout(
      () => {
        this.timers.delete(key);
        this.fire(sessionId, agentId).catch((err: unknown) => {
          this.logger.warn(`Wake timer for ${agentId} failed (${String(err)}); retrying`);
          this.armRetry(sessionId, agentId, until);
        });
      },
      Date.parse(until) - this.clock.now(),
    );
    this.timers.set(key, { sessionId, timer });
  }

  private armRetry(sessionId: string, agentId: string, until: string): void {
    if (this.closed) {
      return;
    }
    const retryAt = new Date(this.clock.now() + this.config.pollIntervalMs).toISOString();
    this.arm(sessionId, agentId, retryAt > until ? retryAt : until);
  }

  private async fire(sessionId: string, agentId: string): Promise<void> {
    if (!this.leases.isServing(sessionId)) {
      return; // the session moved to another node, which armed its own timer
    }
    await this.owner.run(sessionId, () =>
      this.history.inSession(sessionId, async (tx) => {
        const agent = await this.agents.find(tx, sessionId, agentId);
        if (
          agent?.state === 'sleeping' &&
          agent.sleepingUntil &&
          Date.parse(agent.sleepingUntil) <= this.clock.now()
        ) {
          await this.lifecycle.wake(tx, agent, 'timer');
        }
      }),
    );
  }
}

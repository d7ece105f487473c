import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock, TimerHandle } from 'src/common/clock';
import { DatabaseService } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { HistoryService } from 'src/sessions/history.service';

/**
 * One timer per sleep deadline (no polling loop). The deadline itself is in the database, so a
 * restarted process re-arms every timer at boot, and a timer that fires late (or twice) is harmless:
 * firing only wakes an agent that is still asleep with a deadline that has passed.
 */
@Injectable()
export class SleepTimerService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(SleepTimerService.name);
  private readonly timers = new Map<string, TimerHandle>();
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly agents: AgentRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly history: HistoryService,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const sleepers = await this.db.read((tx) => this.agents.listSleepingWithDeadline(tx));
    for (const a of sleepers) {
      this.arm(a.sessionId, a.agentId, a.sleepingUntil);
    }
  }

  onModuleDestroy(): void {
    this.closed = true;
    for (const t of this.timers.values()) {
      t.cancel();
    }
    this.timers.clear();
  }

  /** Sets (or replaces, or with `null` clears) the agent's wake-up timer. */
  arm(sessionId: string, agentId: string, until: string | null): void {
    const key = `${sessionId}\u0000${agentId}`;
    this.timers.get(key)?.cancel();
    this.timers.delete(key);
    if (until === null || this.closed) {
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
    this.timers.set(key, timer);
  }

  private armRetry(sessionId: string, agentId: string, until: string): void {
    if (this.closed) {
      return;
    }
    const retryAt = new Date(this.clock.now() + this.config.pollIntervalMs).toISOString();
    this.arm(sessionId, agentId, retryAt > until ? retryAt : until);
  }

  private async fire(sessionId: string, agentId: string): Promise<void> {
    await this.history.inSession(sessionId, async (tx) => {
      const agent = await this.agents.find(tx, sessionId, agentId);
      if (
        agent?.state === 'sleeping' &&
        agent.sleepingUntil &&
        Date.parse(agent.sleepingUntil) <= this.clock.now()
      ) {
        await this.lifecycle.wake(tx, agent, 'timer');
      }
    });
  }
}

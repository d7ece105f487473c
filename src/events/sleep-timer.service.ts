import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock, TimerHandle } from 'src/common/clock';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { SessionOwner } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { AgentWrites, DueWake } from 'src/agents/agent-writes.repository';
import { WokenAgent } from 'src/agents/wake-statement';
import { Agent } from 'src/agents/agent.types';
import { HistoryService } from 'src/sessions/history.service';
import { DeadlineQueue } from './deadline-queue';

/** A sleeper's deadline as the wheel holds it. */
interface Sleeper {
  sessionId: string;
  agentId: string;
  until: string;
}

/**
 * The sleep deadlines of the sessions this node owns, in memory, nearest first, with ONE clock
 * timer armed for the nearest (no polling loop, no timer per sleeper). When it fires, every due
 * deadline is taken and the due sleepers of each session wake in one transaction of that session.
 * The deadline itself is in the database, so the node that takes a session over arms its
 * deadlines again, and a deadline that fires late (or twice) is harmless: firing only wakes an
 * agent that is still asleep with a deadline that has passed.
 */
@Injectable()
export class SleepTimerService implements SessionOwner, OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(SleepTimerService.name);
  private readonly deadlines = new DeadlineQueue<Sleeper>();
  /** The one clock timer, armed for the nearest deadline. */
  private timer?: { at: number; handle: TimerHandle };
  /** Sessions with a wake-up transaction under way, and the sleepers that came due since. */
  private readonly waking = new Map<string, Sleeper[]>();
  private subscription?: Subscription;
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly agents: AgentRepository,
    private readonly writes: AgentWrites,
    private readonly lifecycle: AgentLifecycleService,
    private readonly history: HistoryService,
    private readonly leases: LeaseService,
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
    this.timer?.handle.cancel();
    this.timer = undefined;
    this.deadlines.clear();
    this.waking.clear();
  }

  async serve(sessionIds: string[]): Promise<void> {
    const sleepers = await this.db.read((tx) => this.agents.listSleepingWithDeadline(tx, sessionIds));
    for (const a of sleepers) {
      this.arm(a.sessionId, a.agentId, a.sleepingUntil);
    }
  }

  release(sessionIds: string[]): Promise<void> {
    const gone = new Set(sessionIds);
    this.deadlines.deleteWhere((s) => gone.has(s.sessionId));
    this.rearm();
    return Promise.resolve();
  }

  /** Arms (or clears) the agent's timer once `tx` commits, on the node that owns its session. */
  armAfterCommit(tx: Tx, agent: Pick<Agent, 'sessionId' | 'agentId' | 'sleepingUntil'>): void {
    this.hints.add(tx, agent.sessionId, { timers: true });
    this.db.afterCommit(tx, () => this.arm(agent.sessionId, agent.agentId, agent.sleepingUntil));
  }

  /** Sets (or replaces, or with `null` clears) the agent's wake-up deadline, if this node owns its session. */
  arm(sessionId: string, agentId: string, until: string | null): void {
    const key = `${sessionId}\u0000${agentId}`;
    if (until === null || this.closed || !this.leases.isServing(sessionId)) {
      this.deadlines.delete(key);
    } else {
      this.deadlines.set(key, Date.parse(until), { sessionId, agentId, until });
    }
    this.rearm();
  }

  /** Keeps the one clock timer on the nearest deadline (none when there is none). */
  private rearm(): void {
    const next = this.closed ? undefined : this.deadlines.next();
    if (this.timer && this.timer.at === next) {
      return;
    }
    this.timer?.handle.cancel();
    this.timer = undefined;
    if (next !== undefined) {
      this.timer = { at: next, handle: this.clock.setTimeout(() => this.onTimer(), next - this.clock.now()) };
    }
  }

  private onTimer(): void {
    this.timer = undefined;
    // A clock timer may fire a little before its time by the clock's reading: nothing is due then,
    // and the timer is armed again for what is left.
    const due = this.deadlines.takeDue(this.clock.now());
    this.rearm();
    const bySession = new Map<string, Sleeper[]>();
    for (const { value } of due) {
      const list = bySession.get(value.sessionId);
      if (list) {
        list.push(value);
      } else {
        bySession.set(value.sessionId, [value]);
      }
    }
    for (const [sessionId, sleepers] of bySession) {
      this.wakeDue(sessionId, sleepers);
    }
  }

  /**
   * One wake-up transaction at a time per session: sleepers that come due while one is under way
   * wait for it and then wake together in the next, so a burst of deadlines costs a few
   * transactions instead of one per firing queued on the session's lock.
   */
  private wakeDue(sessionId: string, sleepers: Sleeper[]): void {
    const waiting = this.waking.get(sessionId);
    if (waiting) {
      waiting.push(...sleepers);
      return;
    }
    this.waking.set(sessionId, []);
    void this.fire(sessionId, sleepers)
      .catch((err: unknown) => {
        this.logger.warn(
          `Wake timer for ${sleepers.map((s) => s.agentId).join(', ')} failed (${String(err)}); retrying`,
        );
        for (const s of sleepers) {
          this.armRetry(s);
        }
      })
      .finally(() => {
        const next = this.waking.get(sessionId) ?? [];
        this.waking.delete(sessionId);
        if (next.length > 0 && !this.closed) {
          this.wakeDue(sessionId, next);
        }
      });
  }

  private armRetry(s: Sleeper): void {
    // A deadline set since (a new sleep, or its clearing) wins over the retry.
    if (this.closed || this.deadlines.has(`${s.sessionId}\u0000${s.agentId}`)) {
      return;
    }
    const retryAt = new Date(this.clock.now() + this.config.pollIntervalMs).toISOString();
    this.arm(s.sessionId, s.agentId, retryAt > s.until ? retryAt : s.until);
  }

  private async fire(sessionId: string, sleepers: Sleeper[]): Promise<void> {
    if (!this.leases.isServing(sessionId)) {
      return; // the session moved to another node, which armed its own timers
    }
    const agentIds = sleepers.map((s) => s.agentId);
    // Only those still asleep with a deadline that has passed (the database's word, not the wheel's).
    const dueBy = this.lifecycle.now();
    // One statement with the other sessions' firings in the batch, sent with the batch's lock.
    await this.history.inSessionMerged(
      sessionId,
      (tx) => this.lifecycle.wakeAll(tx, sessionId, agentIds, 'timer', { dueBy }),
      {
        kind: 'wakeDue',
        agentId: agentIds[0],
        agentIds,
        args: { sessionId, agentIds, dueBy },
        statement: (args: DueWake[]) => this.writes.wakeDueManyStatement(args),
        then: (tx, woken: WokenAgent[]) => this.lifecycle.recordWoken(tx, sessionId, woken, 'timer'),
      },
      { owner: true },
    );
  }
}

import { Inject, Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { SessionOwner } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { CLOCK, Clock, TimerHandle } from 'src/common/clock';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { MailboxService } from 'src/mailbox/mailbox.service';
import { HistoryService } from 'src/sessions/history.service';
import { CronSchedule, isTimeZone } from './cron';
import { Schedule, ScheduleRepository } from './schedule.repository';

export interface ScheduleRequest {
  sessionId: string;
  agentId: string;
  cron: string;
  prompt?: string;
  event?: string;
  timezone: string;
}

/**
 * Cron schedules: each firing becomes a `schedule` work item for the agent (waking it if it
 * sleeps). Schedules live in the database with their next run; one clock timer per schedule fires
 * it on the node that owns the session, and the unique firing record makes each run happen once
 * across every node. The node that takes a session over arms its schedules again; runs missed
 * while nobody owned it collapse into one firing.
 */
@Injectable()
export class ScheduleService implements SessionOwner, OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(ScheduleService.name);
  private readonly timers = new Map<string, { sessionId: string; timer: TimerHandle }>();
  private subscription?: Subscription;
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly history: HistoryService,
    private readonly schedules: ScheduleRepository,
    private readonly agents: AgentRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly mailbox: MailboxService,
    private readonly leases: LeaseService,
    private readonly hints: ClusterHints,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.leases.register(this);
    // Scheduled or unscheduled through another node: the owner arms the session's schedules again.
    this.subscription = this.hints.remote$.subscribe((h) => {
      if (h.timers && this.leases.isServing(h.sessionId)) {
        void this.release([h.sessionId])
          .then(() => this.serve([h.sessionId]))
          .catch((err: unknown) =>
            this.logger.warn(`Re-arming schedules of ${h.sessionId} failed: ${String(err)}`),
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
    for (const s of await this.db.read((tx) => this.schedules.listBySessions(tx, sessionIds))) {
      this.arm(s);
    }
  }

  release(sessionIds: string[]): Promise<void> {
    const gone = new Set(sessionIds);
    for (const [id, t] of this.timers) {
      if (gone.has(t.sessionId)) {
        this.cancel(id);
      }
    }
    return Promise.resolve();
  }

  schedule(r: ScheduleRequest): Promise<{ scheduleId: string; nextRunAt: string }> {
    if (!isTimeZone(r.timezone)) {
      throw RpcError.invalidParams([{ path: 'timezone', message: `unknown time zone '${r.timezone}'` }]);
    }
    let cron: CronSchedule;
    try {
      cron = CronSchedule.parse(r.cron, r.timezone);
      cron.nextAfter(this.clock.now()); // `0 0 30 2 *` parses but never comes due
    } catch (err) {
      // The library's messages can be long debug dumps: keep the first line, briefly.
      const reason = (err instanceof Error ? err.message : String(err)).split('\n')[0].slice(0, 200);
      throw RpcError.invalidParams([{ path: 'cron', message: `not a usable cron expression: ${reason}` }]);
    }
    if (r.prompt === undefined && r.event === undefined) {
      throw RpcError.invalidParams([
        { path: 'prompt', message: 'give a prompt or an event for each firing' },
      ]);
    }
    return this.history.inSession(r.sessionId, async (tx) => {
      await this.lifecycle.get(tx, r.sessionId, r.agentId);
      const now = this.clock.now();
      const schedule = await this.schedules.insert(tx, {
        sessionId: r.sessionId,
        agentId: r.agentId,
        cron: r.cron.trim(),
        timezone: r.timezone,
        prompt: r.prompt ?? null,
        event: r.event ?? null,
        nextRunAt: new Date(cron.nextAfter(now)).toISOString(),
        createdAt: new Date(now).toISOString(),
      });
      this.hints.add(tx, r.sessionId, { timers: true });
      this.lifecycle.afterCommit(tx, () => this.arm(schedule));
      return { scheduleId: schedule.scheduleId, nextRunAt: schedule.nextRunAt };
    });
  }

  unschedule(sessionId: string, scheduleId: string): Promise<{ scheduleId: string; removed: true }> {
    return this.history.inSession(sessionId, async (tx) => {
      if (!(await this.schedules.find(tx, sessionId, scheduleId))) {
        throw RpcError.invalidParams([
          { path: 'scheduleId', message: `no schedule '${scheduleId}' in this session` },
        ]);
      }
      await this.schedules.delete(tx, scheduleId);
      this.hints.add(tx, sessionId, { timers: true });
      this.lifecycle.afterCommit(tx, () => this.cancel(scheduleId));
      return { scheduleId, removed: true as const };
    });
  }

  list(sessionId: string): Promise<{ schedules: Schedule[] }> {
    return this.history.readSession(sessionId, async (tx) => ({
      schedules: await this.schedules.listBySession(tx, sessionId),
    }));
  }

  private arm(s: Schedule): void {
    this.cancel(s.scheduleId);
    if (this.closed || !this.leases.isServing(s.sessionId)) {
      return;
    }
    const timer = this.clock.setTimeout(
      () => {
        this.timers.delete(s.scheduleId);
        this.fire(s).catch((err: unknown) => {
          this.logger.warn(`Schedule ${s.scheduleId} did not fire (${String(err)}); retrying`);
          this.retryLater(s);
        });
      },
      Date.parse(s.nextRunAt) - this.clock.now(),
    );
    this.timers.set(s.scheduleId, { sessionId: s.sessionId, timer });
  }

  private retryLater(s: Schedule): void {
    if (!this.closed) {
      const at = new Date(this.clock.now() + this.config.pollIntervalMs).toISOString();
      this.arm({ ...s, nextRunAt: at > s.nextRunAt ? at : s.nextRunAt });
    }
  }

  private cancel(scheduleId: string): void {
    this.timers.get(scheduleId)?.timer.cancel();
    this.timers.delete(scheduleId);
  }

  /** Fires as the session's owner (fenced); the firing record keeps a run from firing twice anywhere. */
  private async fire(armed: Schedule): Promise<void> {
    if (!this.leases.isServing(armed.sessionId)) {
      return; // the session moved to another node, which armed its own timer
    }
    const next = await this.fireOwned(armed);
    if (next) {
      this.arm(next);
    }
  }

  private fireOwned(armed: Schedule): Promise<Schedule | undefined> {
    return this.history.inSession(
      armed.sessionId,
      async (tx) => {
        const s = await this.schedules.find(tx, armed.sessionId, armed.scheduleId);
        if (!s) {
          return undefined; // unscheduled meanwhile
        }
        const now = this.clock.now();
        const due = Date.parse(s.nextRunAt);
        if (due > now) {
          return s; // fired early (re-armed elsewhere): wait for the stored time
        }
        if (await this.schedules.claimFiring(tx, s.scheduleId, s.nextRunAt)) {
          await this.deliver(tx, s);
        }
        const cron = CronSchedule.parse(s.cron, s.timezone);
        const nextRunAt = new Date(cron.nextAfter(Math.max(now, due))).toISOString();
        await this.schedules.setNextRun(tx, s.scheduleId, s.nextRunAt, nextRunAt);
        return { ...s, nextRunAt };
      },
      { owner: true },
    );
  }

  /** The firing's work item; a stopped agent's firings are skipped (as broadcasts skip stopped agents). */
  private async deliver(tx: Tx, s: Schedule): Promise<void> {
    const agent = await this.agents.find(tx, s.sessionId, s.agentId);
    if (!agent || agent.state === 'stopped') {
      return;
    }
    const { item, created } = await this.mailbox.enqueue(tx, {
      sessionId: s.sessionId,
      agentId: s.agentId,
      kind: 'schedule',
      priority: 'normal',
      prompt: s.prompt ?? s.event ?? '',
      payload: { scheduleId: s.scheduleId, ...(s.event ? { event: s.event, data: {} } : {}) },
      idempotencyKey: `schedule:${s.scheduleId}:${s.nextRunAt}`,
      createdAt: new Date(this.clock.now()).toISOString(),
    });
    if (created) {
      await this.schedules.recordFiringItem(tx, s.scheduleId, s.nextRunAt, item.taskId);
    }
    await this.lifecycle.wake(tx, agent, 'schedule');
  }
}

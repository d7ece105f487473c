import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { NotificationBus } from 'src/sessions/notification-bus';
import { WorkObservation, WorkTimeline } from 'src/sessions/work-timeline';

/**
 * What the agents do, one log line per fact: an agent created, a task finished or failed (with
 * its duration); task starts and wake-ups at debug. Ids, kinds, codes and counts only: a prompt,
 * a mail body or a result is content, and never logged.
 */
@Injectable()
export class ActivityLogService implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Activity');
  private readonly timeline = new WorkTimeline();
  private subscription?: Subscription;

  constructor(private readonly bus: NotificationBus) {}

  onModuleInit(): void {
    this.subscription = this.bus.records$.subscribe((record) => {
      for (const o of this.timeline.observe(record)) {
        this.write(o);
      }
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  private write(o: WorkObservation): void {
    switch (o.type) {
      case 'agentCreated':
        this.logger.log({ msg: `Agent ${o.agentId} created (${o.state})`, ...o });
        return;
      case 'taskStarted':
        this.logger.debug({ msg: `Task ${o.taskId} of ${o.agentId} started (${o.kind})`, ...o });
        return;
      case 'taskEnded': {
        const took = o.durationMs === undefined ? '' : ` in ${o.durationMs} ms`;
        const what = o.outcome === 'completed' ? 'completed' : `failed (${o.code})`;
        this.logger.log({ msg: `Task ${o.taskId} of ${o.agentId} (${o.kind}) ${what}${took}`, ...o });
        return;
      }
      case 'wokeToWork':
        this.logger.debug({
          msg: `Agent ${o.agentId} woke for ${o.reason}, at work after ${o.latencyMs} ms`,
          ...o,
        });
        return;
    }
  }
}

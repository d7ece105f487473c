import { Inject, Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { CLOCK, Clock, TimerHandle } from 'src/common/clock';
import { NotificationBus } from 'src/sessions/notification-bus';

/** Streamed text of a task is pushed at most this often (the first piece at once). */
export const OUTPUT_INTERVAL_MS = 50;

interface Stream {
  sessionId: string;
  agentId: string;
  /** Everything streamed so far: `getTask`'s `output` while the task runs. */
  text: string;
  pending: string;
  index: number;
  lastPushAt: number | undefined;
  timer: TimerHandle | undefined;
}

/**
 * The text a running task's model is producing. It is pushed as `async.task.output` as it comes
 * (the first piece at once, then at most one push per task every {@link OUTPUT_INTERVAL_MS}) and
 * kept in memory for `getTask`, but never written: the durable record is the task's final answer.
 */
@Injectable()
export class TaskOutputs implements OnModuleInit, OnModuleDestroy {
  private readonly streams = new Map<string, Stream>();
  /** The text so far of tasks running on other nodes, as their pushes arrive here. */
  private readonly remote = new Map<string, string>();
  private subscriptions: Subscription[] = [];

  constructor(
    private readonly bus: NotificationBus,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Follows the other nodes' streamed text, so `getTask` shows `output` whichever node answers. */
  onModuleInit(): void {
    this.subscriptions = [
      this.bus.ephemeral$.subscribe(({ type, payload }) => {
        const taskId = payload.taskId;
        if (type === 'async.task.output' && typeof taskId === 'string' && !this.streams.has(taskId)) {
          const delta = typeof payload.delta === 'string' ? payload.delta : '';
          this.remote.set(taskId, (this.remote.get(taskId) ?? '') + delta);
        }
      }),
      this.bus.records$.subscribe(({ type, payload }) => {
        if (type === 'async.task.completed' || type === 'async.task.failed') {
          this.remote.delete(String(payload.taskId));
        }
      }),
    ];
  }

  onModuleDestroy(): void {
    this.subscriptions.forEach((s) => s.unsubscribe());
  }

  add(task: { sessionId: string; agentId: string; taskId: string }, delta: string): void {
    if (!delta) {
      return;
    }
    let s = this.streams.get(task.taskId);
    if (!s) {
      s = { ...task, text: '', pending: '', index: 0, lastPushAt: undefined, timer: undefined };
      this.streams.set(task.taskId, s);
    }
    s.text += delta;
    s.pending += delta;
    if (s.timer) {
      return; // a push is already due
    }
    const since = s.lastPushAt === undefined ? Infinity : this.clock.now() - s.lastPushAt;
    if (since >= OUTPUT_INTERVAL_MS) {
      this.push(task.taskId, s);
    } else {
      s.timer = this.clock.setTimeout(() => {
        s.timer = undefined;
        this.push(task.taskId, s);
      }, OUTPUT_INTERVAL_MS - since);
    }
  }

  /**
   * Pushes what is pending now: the model's answer (or its turn) has ended, and what it said must
   * reach the client before whatever comes next (a tool call, the task's completion).
   */
  flush(taskId: string): void {
    const s = this.streams.get(taskId);
    if (s) {
      s.timer?.cancel();
      s.timer = undefined;
      this.push(taskId, s);
    }
  }

  /** The text so far of a running task (streaming here, or on another node); undefined when none came. */
  textOf(taskId: string): string | undefined {
    return this.streams.get(taskId)?.text ?? this.remote.get(taskId);
  }

  /** The task ended (or was put back): what is pending is dropped with the stream. */
  end(taskId: string): void {
    this.streams.get(taskId)?.timer?.cancel();
    this.streams.delete(taskId);
    this.remote.delete(taskId);
  }

  private push(taskId: string, s: Stream): void {
    if (!s.pending) {
      return;
    }
    const delta = s.pending;
    s.pending = '';
    s.lastPushAt = this.clock.now();
    this.bus.publishEphemeral({
      sessionId: s.sessionId,
      at: new Date(s.lastPushAt).toISOString(),
      type: 'async.task.output',
      payload: { agentId: s.agentId, taskId, delta, index: s.index++ },
    });
  }
}

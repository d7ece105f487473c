import { Logger } from '@nestjs/common';
import { defer, exhaustMap, Subject, Subscription } from 'rxjs';

/**
 * One step of an agent's work: claim and run one item. Resolves false when there was nothing to
 * take, or when the item's end showed the queue empty (work queued after that signals the loop);
 * `'next'` when the item's end already claimed the agent's next item: the loop calls it again in
 * any case, even when closing (the item is then abandoned at once, back to the queue).
 */
export type RunOne = (signal: AbortSignal, onClaim: (taskId: string) => void) => Promise<boolean | 'next'>;

/**
 * An agent's own loop: a stream of wake-up signals drained by `exhaustMap`, so the agent works on
 * one item at a time while every agent's loop runs in parallel. A signal that arrives mid-drain
 * marks the loop dirty and is honoured by the drain in progress; none is lost.
 */
export class AgentLoop {
  private readonly wake$ = new Subject<void>();
  private readonly subscription: Subscription;
  private dirty = false;
  private running = false;
  private pendingAbort?: { taskId?: string };
  private closed = false;
  private current?: { taskId: string; controller: AbortController };
  private draining: Promise<void> = Promise.resolve();

  constructor(
    readonly key: string,
    private readonly runOne: RunOne,
    private readonly logger: Logger,
    /** Called when a drain ends with nothing left to do: the owner may let go of the loop. */
    private readonly onSettled: (loop: AgentLoop) => void = () => undefined,
  ) {
    this.subscription = this.wake$
      .pipe(exhaustMap(() => defer(() => (this.draining = this.drain()))))
      .subscribe();
  }

  signal(): void {
    if (!this.closed) {
      this.dirty = true;
      this.wake$.next();
    }
  }

  /** Abandons the item in hand (all of them, or only `taskId`) at its next safe point. */
  abort(taskId?: string): void {
    if (this.current) {
      if (taskId === undefined || this.current.taskId === taskId) {
        this.current.controller.abort();
      }
    } else if (this.running) {
      // Mid-claim: the item is not known yet; abandon it as soon as it is (if it is the one meant).
      this.pendingAbort = { taskId };
    }
  }

  /** True from the start of a claim to the end of its item. */
  get busy(): boolean {
    return this.running;
  }

  /**
   * Stops taking work, abandons the item in hand and waits for the loop to settle. With `graceMs`,
   * the item in hand first gets that long (on the wall clock: shutdown is not simulated time) to end.
   */
  async close(graceMs = 0): Promise<void> {
    this.closed = true;
    if (graceMs > 0 && this.running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.draining,
        new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
    }
    this.abort();
    await this.draining;
    this.subscription.unsubscribe();
  }

  private claimed(taskId: string, controller: AbortController): void {
    this.current = { taskId, controller };
    const pending = this.pendingAbort;
    this.pendingAbort = undefined;
    if (this.closed || (pending && (pending.taskId === undefined || pending.taskId === taskId))) {
      controller.abort();
    }
  }

  private async drain(): Promise<void> {
    await this.drainAll();
    if (!this.closed && !this.dirty) {
      this.onSettled(this);
    }
  }

  private async drainAll(): Promise<void> {
    while (this.dirty && !this.closed) {
      this.dirty = false;
      let holding = false;
      for (;;) {
        if (this.closed && !holding) {
          return;
        }
        const controller = new AbortController();
        let worked: boolean | 'next';
        this.running = true;
        try {
          worked = await this.runOne(controller.signal, (taskId) => this.claimed(taskId, controller));
        } catch (err) {
          // The database is down or a bug: the backstop poll will signal again.
          this.logger.warn(`Loop ${this.key} paused: ${err instanceof Error ? err.message : String(err)}`);
          return;
        } finally {
          this.current = undefined;
          this.running = false;
          this.pendingAbort = undefined;
        }
        holding = worked === 'next';
        if (!worked) {
          break;
        }
      }
    }
  }
}

import { Clock, TimerHandle } from './clock';

interface Timer {
  due: number;
  order: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. Tests hand it to the app and call {@link advance}; due
 * timers fire in deadline order. Lives in `src/` so the app can be built with it for tests and benchmarks.
 */
export class FakeClock implements Clock {
  private current: number;
  private timers: Timer[] = [];
  private order = 0;

  constructor(start = Date.parse('2026-01-01T00:00:00.000Z')) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: Timer = { due: this.current + Math.max(0, ms), order: this.order++, fn, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => (timer.cancelled = true) };
  }

  /** Timers not yet fired or cancelled. */
  pending(): number {
    return this.timers.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer that comes due on the way, in order. */
  advance(ms: number): void {
    const target = this.current + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      const next = this.timers
        .filter((t) => t.due <= target)
        .sort((a, b) => a.due - b.due || a.order - b.order)[0];
      if (!next) {
        break;
      }
      this.current = Math.max(this.current, next.due);
      next.cancelled = true;
      next.fn();
    }
    this.current = target;
  }
}

/**
 * Time as a dependency. Everything that waits (sleep deadlines, send-and-switch timeouts, scripted
 * delays, the backstop poll) asks the clock, so tests drive time instead of sleeping.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

export const CLOCK = Symbol('CLOCK');

// setTimeout's delay is a signed 32-bit integer; longer waits are chained.
const MAX_TIMER_MS = 2_147_483_647;

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    let handle: NodeJS.Timeout;
    const due = Date.now() + Math.max(0, ms);
    const arm = () => {
      const left = due - Date.now();
      handle = setTimeout(left > MAX_TIMER_MS ? arm : fn, Math.min(Math.max(0, left), MAX_TIMER_MS));
      handle.unref?.();
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  }
}

/** Resolves after `ms` on the given clock, or rejects with an AbortError when `signal` aborts first. */
export function delay(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError());
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(abortError());
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortError(): Error {
  const err = new Error('aborted');
  err.name = 'AbortError';
  return err;
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

import { AsyncLocalStorage } from 'node:async_hooks';
import { Injectable } from '@nestjs/common';

/**
 * Marks work done as the owner of a session (an agent's step, a timer, a schedule firing, a
 * takeover), so that every transaction it opens on that session is fenced by the lease's epoch
 * (HistoryService.inSession asks {@link current}). Requests made for clients are not owner work:
 * any node may write them under the session row lock.
 */
@Injectable()
export class OwnerContext {
  private readonly storage = new AsyncLocalStorage<string>();

  run<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    return this.storage.run(sessionId, fn);
  }

  /** Runs `fn` outside any owner's work (for background work started from inside it). */
  outside<T>(fn: () => T): T {
    return this.storage.exit(fn);
  }

  /** The session whose owner's work is running here, if any. */
  current(): string | undefined {
    return this.storage.getStore();
  }
}

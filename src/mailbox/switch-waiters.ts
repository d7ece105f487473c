import { Injectable } from '@nestjs/common';

export interface SwitchReply {
  from: string;
  body: string;
  messageId: string;
}

export type SwitchOutcome = { reply: SwitchReply } | { error: string };

/**
 * Send-and-switch callers waiting in this process, by the id of the mail they wait on. Kept here,
 * below agents and tools, so that whoever ends the target's item (a reply, a failure, a
 * cancellation) can settle the wait.
 */
@Injectable()
export class SwitchWaiters {
  private readonly waiters = new Map<string, (outcome: SwitchOutcome) => void>();

  /** Starts waiting on `messageId`; the promise settles with the first outcome given. */
  wait(messageId: string): Promise<SwitchOutcome> {
    return new Promise((resolve) => this.waiters.set(messageId, resolve));
  }

  isAwaited(messageId: string): boolean {
    return this.waiters.has(messageId);
  }

  settle(messageId: string, outcome: SwitchOutcome): void {
    const resolve = this.waiters.get(messageId);
    this.waiters.delete(messageId);
    resolve?.(outcome);
  }

  forget(messageId: string): void {
    this.waiters.delete(messageId);
  }
}

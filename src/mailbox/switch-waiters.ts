import { Injectable, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { DatabaseService, Tx } from 'src/database/database.service';

export interface SwitchReply {
  from: string;
  body: string;
  messageId: string;
}

export type SwitchOutcome = { reply: SwitchReply } | { error: string };

/**
 * Send-and-switch callers waiting in this process, by the id of the mail they wait on. Kept here,
 * below agents and tools, so that whoever ends the target's item (a reply, a failure, a
 * cancellation) can settle the wait. A caller waits on the node that owns its session (the
 * target's too: same session), so only a client's cancellation on another node needs the hint.
 */
@Injectable()
export class SwitchWaiters implements OnModuleInit, OnModuleDestroy {
  private readonly waiters = new Map<string, (outcome: SwitchOutcome) => void>();
  private subscription?: Subscription;

  constructor(
    private readonly db: DatabaseService,
    private readonly hints: ClusterHints,
  ) {}

  onModuleInit(): void {
    this.subscription = this.hints.remote$.subscribe((h) => {
      for (const s of h.settle ?? []) {
        this.settle(s.messageId, { error: s.error });
      }
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }

  /** Ends the wait on `messageId` with `error` once `tx` commits, on whichever node it waits. */
  failAfterCommit(tx: Tx, sessionId: string, messageId: string, error: string): void {
    this.hints.add(tx, sessionId, { settle: [{ messageId, error }] });
    this.db.afterCommit(tx, () => this.settle(messageId, { error }));
  }

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

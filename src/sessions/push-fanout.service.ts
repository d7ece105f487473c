import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { Subscription } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { DatabaseService } from 'src/database/database.service';
import { HistoryRepository } from './history.repository';
import { NotificationBus } from './notification-bus';
import { HistoryRecord } from './session.types';

const PAGE = 500;

/**
 * Hands committed history records to the NotificationBus in `seq` order, with no gap and no
 * duplicate, whichever node committed them. Records committed here arrive at once
 * ({@link local}); for records committed elsewhere a hint names the session and its `seq` range
 * and the rows are read from the history. A cursor per session (the last `seq` pushed) puts the two
 * in order: a local record that finds a gap before it first reads the missing rows. Commits of
 * one session happen in `seq` order (the session row lock), so the rows before a committed one
 * are always there to read.
 */
@Injectable()
export class PushFanout implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger(PushFanout.name);
  private readonly cursors = new Map<string, number>();
  /** Per session, the catch-up in progress; later records wait behind it. */
  private readonly chains = new Map<string, Promise<void>>();
  private subscriptions: Subscription[] = [];

  constructor(
    private readonly db: DatabaseService,
    private readonly history: HistoryRepository,
    private readonly bus: NotificationBus,
    private readonly hints: ClusterHints,
  ) {}

  onModuleInit(): void {
    this.subscriptions = [
      this.hints.remote$.subscribe((h) => {
        if (h.seq) {
          this.remote(h.sessionId, h.seq[0], h.seq[1]);
        }
      }),
      // Streamed text, which has no history row: straight across, both ways.
      this.hints.ephemeral$.subscribe((push) => this.bus.deliverEphemeral(push)),
      this.bus.outgoing$.subscribe((push) => {
        this.hints
          .sendEphemeral(push)
          .catch((err: unknown) =>
            this.logger.debug(`Ephemeral push not sent to other nodes: ${String(err)}`),
          );
      }),
      // Hints may have been missed while the LISTEN connection was down: catch up every session seen.
      this.hints.reconnected$.subscribe(() => {
        for (const sessionId of this.cursors.keys()) {
          this.remote(sessionId, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
        }
      }),
    ];
  }

  onModuleDestroy(): void {
    this.subscriptions.forEach((s) => s.unsubscribe());
  }

  /** Records of the session up to `seq`, committed here, whose {@link local} comes a turn later: see NotificationBus.expect. */
  expect(sessionId: string, seq: number): void {
    this.bus.expect(sessionId, seq);
  }

  /** A record this node committed (called after commit, in commit order). */
  local(record: HistoryRecord): void {
    const { sessionId, seq } = record;
    const cursor = this.cursors.get(sessionId);
    if (!this.chains.has(sessionId) && (cursor === undefined || seq === cursor + 1)) {
      this.push(record); // the fast path: no catching up to do
      return;
    }
    this.inOrder(sessionId, async () => {
      const at = this.cursors.get(sessionId);
      if (at !== undefined && seq <= at) {
        return;
      }
      if (at !== undefined && seq > at + 1) {
        await this.catchUp(sessionId, at, seq - 1);
      }
      if (seq > (this.cursors.get(sessionId) ?? 0)) {
        this.push(record);
      }
    });
  }

  /** Another node committed `first..last` of the session. */
  remote(sessionId: string, first: number, last: number): void {
    this.inOrder(sessionId, async () => {
      const at = this.cursors.get(sessionId) ?? first - 1;
      if (last > at) {
        await this.catchUp(sessionId, at, last);
      }
    });
  }

  /** Pushes the committed records after `after` up to `upTo`. */
  private async catchUp(sessionId: string, after: number, upTo: number): Promise<void> {
    let from = after;
    while (from < upTo) {
      const page = await this.db.read((tx) =>
        this.history.page(tx, sessionId, from, Math.min(PAGE, upTo - from)),
      );
      for (const record of page) {
        if (record.seq > (this.cursors.get(sessionId) ?? from)) {
          this.push(record);
        }
      }
      if (page.length < Math.min(PAGE, upTo - from)) {
        return; // the end of what is committed
      }
      from = page[page.length - 1].seq;
    }
  }

  private push(record: HistoryRecord): void {
    this.cursors.set(record.sessionId, record.seq);
    this.bus.publish(record);
  }

  private inOrder(sessionId: string, step: () => Promise<void>): void {
    const previous = this.chains.get(sessionId) ?? Promise.resolve();
    const next = previous
      .then(step)
      .catch((err: unknown) =>
        // The next record or hint of the session catches up from the cursor.
        this.logger.warn(`Pushes of ${sessionId} paused: ${String(err)}`),
      )
      .finally(() => {
        if (this.chains.get(sessionId) === next) {
          this.chains.delete(sessionId);
        }
      });
    this.chains.set(sessionId, next);
  }
}

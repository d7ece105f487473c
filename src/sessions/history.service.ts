import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, Clock } from 'src/common/clock';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { HistoryRepository } from './history.repository';
import { NotificationBus } from './notification-bus';
import { SessionRepository } from './session.repository';
import { HistoryRecord, NotificationType, Session } from './session.types';

/**
 * Writes a session's changes together with the history records that describe them. Every write
 * to a session goes through {@link inSession}: it locks the session row first, which gives one
 * lock order (no deadlocks) and a commit order that matches the history's `seq`.
 */
@Injectable()
export class HistoryService {
  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly history: HistoryRepository,
    private readonly bus: NotificationBus,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Runs `fn` in a transaction holding the session's lock; `session_not_found` when it does not exist. */
  inSession<T>(sessionId: string, fn: (tx: Tx, session: Session) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      const session = await this.sessions.lock(tx, sessionId);
      if (!session) {
        throw RpcError.sessionNotFound(sessionId);
      }
      return fn(tx, session);
    });
  }

  /** Records a change in the open transaction; it is pushed to subscribers once the transaction commits. */
  async record(
    tx: Tx,
    sessionId: string,
    type: NotificationType,
    payload: Record<string, unknown>,
  ): Promise<HistoryRecord> {
    const at = new Date(this.clock.now()).toISOString();
    const record = await this.history.append(tx, sessionId, type, payload, at);
    this.db.afterCommit(tx, () => this.bus.publish(record));
    return record;
  }

  /** Runs reads of an existing session (no lock); `session_not_found` when it does not exist. */
  readSession<T>(sessionId: string, fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.db.read(async (tx) => {
      if (!(await this.sessions.find(tx, sessionId))) {
        throw RpcError.sessionNotFound(sessionId);
      }
      return fn(tx);
    });
  }

  page(sessionId: string, after: number, limit: number): Promise<HistoryRecord[]> {
    return this.readSession(sessionId, (tx) => this.history.page(tx, sessionId, after, limit));
  }
}

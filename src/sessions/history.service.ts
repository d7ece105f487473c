import { Inject, Injectable } from '@nestjs/common';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { LeaseService } from 'src/cluster/lease.service';
import { OwnerContext } from 'src/cluster/owner-context';
import { CLOCK, Clock } from 'src/common/clock';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { json } from 'src/database/sql';
import { HistoryRepository } from './history.repository';
import { PushFanout } from './push-fanout.service';
import { SessionRepository } from './session.repository';
import { HistoryRecord, NotificationType, Session } from './session.types';

/**
 * Writes a session's changes together with the history records that describe them. Every write
 * to a session goes through {@link inSession}: it locks the session row first, which gives one
 * lock order (no deadlocks) and a commit order that matches the history's `seq`. A transaction
 * made as the session's owner (see OwnerContext) ends with the lease fence; every session
 * transaction ends with the one NOTIFY that tells the other nodes what it changed.
 */
/** The records a session transaction has made so far, with the last `seq` it took. */
interface HistoryBatch {
  sessionId: string;
  seq: number;
  records: HistoryRecord[];
}

@Injectable()
export class HistoryService {
  private readonly batches = new WeakMap<Tx, HistoryBatch>();

  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly history: HistoryRepository,
    private readonly fanout: PushFanout,
    private readonly hints: ClusterHints,
    private readonly leases: LeaseService,
    private readonly owner: OwnerContext,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Runs `fn` in a transaction holding the session's lock; `session_not_found` when it does not exist. */
  inSession<T>(sessionId: string, fn: (tx: Tx, session: Session) => Promise<T>): Promise<T> {
    return this.db.transaction(async (tx) => {
      const locked = await this.sessions.lock(tx, sessionId);
      if (!locked) {
        throw RpcError.sessionNotFound(sessionId);
      }
      const batch: HistoryBatch = { sessionId, seq: locked.historySeq, records: [] };
      this.batches.set(tx, batch);
      const result = await fn(tx, locked.session);
      if (batch.records.length > 0) {
        await this.history.appendAll(tx, sessionId, batch.records);
      }
      this.batches.delete(tx);
      if (this.owner.current() === sessionId) {
        await this.leases.fence(tx, sessionId); // last, so a takeover waits for this commit or refuses it
      }
      await this.hints.flush(tx);
      return result;
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
    const batch = this.batches.get(tx);
    let record: HistoryRecord;
    if (batch?.sessionId === sessionId) {
      // Under the session's lock the next seq is known: the record is written with the others when
      // the transaction's work is done. Its payload is what the database will give back (JSON).
      record = {
        sessionId,
        seq: ++batch.seq,
        at,
        type,
        payload: JSON.parse(json(payload)) as Record<string, unknown>,
      };
      batch.records.push(record);
    } else {
      record = await this.history.append(tx, sessionId, type, payload, at);
    }
    this.hints.add(tx, sessionId, { seq: [record.seq, record.seq] });
    this.db.afterCommit(tx, () => this.fanout.local(record));
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

import { Inject, Injectable } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { CLUSTER_CHANNEL } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { OwnerContext } from 'src/cluster/owner-context';
import { CLOCK, Clock } from 'src/common/clock';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { json } from 'src/database/sql';
import { GroupCommit, PendingUnit } from './group-commit';
import { HistoryRepository } from './history.repository';
import { PushFanout } from './push-fanout.service';
import { SessionRepository } from './session.repository';
import { HistoryRecord, NotificationType, Session } from './session.types';

/** The records a session transaction has made so far, with the last `seq` it took. */
interface HistoryBatch {
  sessionId: string;
  seq: number;
  records: HistoryRecord[];
}

/** One caller's writes to a session, waiting for the batch that commits them. */
interface SessionUnit extends PendingUnit {
  run: (tx: Tx, session: Session) => Promise<unknown>;
  /** The caller's async context (its owner work, its trace): the write runs in it, whoever's batch holds it. */
  context: AsyncResource;
  /** Made as the session's owner: its batch ends with the lease fence. */
  fenced: boolean;
  /** Set when the write may share a statement with others of its kind; dropped after a merged statement failed. */
  merge?: MergeableWrite;
}

/**
 * A write that can share one statement with writes of the same `kind` to other agents of its
 * session (the steps every item takes: queueing, claiming, completing). In a batch, such writes to
 * distinct agents run as one multi-row statement (`runMany`), then each write's `then` in turn.
 */
export interface MergeableWrite<A = unknown, R = unknown, T = unknown> {
  kind: string;
  agentId: string;
  args: A;
  /** One statement for the writes of a segment, in their order; one row per write. */
  runMany(tx: Tx, args: A[]): Promise<R[]>;
  /** The rest of the write, given its row: history records, hooks; its value settles the caller. */
  then(tx: Tx, row: R, session: Session): Promise<T>;
}

/** A multi-row statement failed: the batch is run again write by write, so each fails alone. */
class MergedFailed extends Error {
  constructor(override readonly cause: unknown) {
    super('a merged statement of the batch failed');
  }
}

/** A unit's own failure inside a batch, with its place in the batch. */
class UnitFailed extends Error {
  constructor(
    readonly index: number,
    override readonly cause: unknown,
  ) {
    super('a write of the batch failed');
  }
}

/** The lease fence refused the batch: the node no longer owns the session. */
class FenceRefused extends Error {
  constructor(override readonly cause: unknown) {
    super('the lease fence refused the batch');
  }
}

/**
 * Writes a session's changes together with the history records that describe them. Every write
 * to a session goes through {@link inSession}, and this node commits a session's writes in
 * batches (group commit, see GroupCommit): the writes that arrive while a batch commits go
 * together in the next one, each run in turn in one transaction, in arrival order, each seeing
 * the ones before it, as if one after another under the lock. The transaction locks the session
 * row first, which gives one lock order (no deadlocks) and a commit order that matches the
 * history's `seq`; it writes the batch's history records in one statement, ends with the lease
 * fence when any write in it is the owner's, and with the one NOTIFY that tells the other nodes
 * what it changed. A caller's promise settles only after the commit that holds its writes.
 *
 * A write that fails fails alone: the batch is rolled back, the writes before it are committed
 * again without it, it gets its own error, and the writes after it go on in a batch of their own
 * (a write's function may therefore run more than once; it only writes through `tx` and registers
 * after-commit hooks, which run only for the attempt that commits). A write must never wait for
 * another write to the same session (it would wait for its own batch).
 */
@Injectable()
export class HistoryService {
  private readonly batches = new WeakMap<Tx, HistoryBatch>();
  private readonly writes: GroupCommit<string, SessionUnit>;

  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly history: HistoryRepository,
    private readonly fanout: PushFanout,
    private readonly hints: ClusterHints,
    private readonly leases: LeaseService,
    private readonly owner: OwnerContext,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.writes = new GroupCommit(
      (sessionId, units) => this.commitBatch(sessionId, units),
      config.commit,
      (sessionId) => `session '${sessionId}'`,
    );
  }

  /**
   * Runs `fn` in a transaction holding the session's lock (shared with other writes to the session
   * that arrive meanwhile); settles once that transaction has committed. `session_not_found` when
   * the session does not exist.
   */
  inSession<T>(sessionId: string, fn: (tx: Tx, session: Session) => Promise<T>): Promise<T> {
    return this.submit(sessionId, fn);
  }

  /**
   * {@link inSession} for a write that may share one statement with writes of the same kind to
   * other agents in its batch. `fn` is the same write on its own (used when the batch has to be run
   * write by write); `merge.then`'s value is what the caller gets either way. Writes to different
   * agents of a batch may then commit in a different order than they arrived; the writes of one
   * agent, and writes that cannot merge, keep their order.
   */
  inSessionMerged<A, R, T>(
    sessionId: string,
    fn: (tx: Tx, session: Session) => Promise<T>,
    merge: MergeableWrite<A, R, T>,
  ): Promise<T> {
    return this.submit(sessionId, fn, merge);
  }

  private submit<T>(
    sessionId: string,
    fn: (tx: Tx, session: Session) => Promise<T>,
    merge?: MergeableWrite,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.writes.submit(sessionId, {
        run: fn,
        merge,
        context: new AsyncResource('mailroom.session-write'),
        fenced: this.owner.current() === sessionId,
        resolve,
        reject,
      }),
    );
  }

  /** Writes of this session waiting for a batch (the one committing excluded). */
  pendingWrites(sessionId: string): number {
    return this.writes.pending(sessionId);
  }

  private async commitBatch(sessionId: string, units: SessionUnit[]): Promise<void> {
    let results: unknown[];
    try {
      // The transaction (and its span) in the context of the write that opens the batch.
      results = await units[0].context.runInAsyncScope(() => this.transactBatch(sessionId, units));
    } catch (err) {
      await this.recover(sessionId, units, err);
      return;
    }
    units.forEach((unit, i) => unit.resolve(results[i]));
  }

  private transactBatch(sessionId: string, units: SessionUnit[]): Promise<unknown[]> {
    return this.db.transaction(async (tx) => {
      const locked = await this.sessions.lock(tx, sessionId);
      if (!locked) {
        throw RpcError.sessionNotFound(sessionId);
      }
      const batch: HistoryBatch = { sessionId, seq: locked.historySeq, records: [] };
      this.batches.set(tx, batch);
      const out = await this.runUnits(tx, units, locked.session);
      this.batches.delete(tx);
      // The records, the fence (last, so a takeover waits for this commit or refuses it) and the
      // NOTIFY, in one statement.
      const fenced = units.some((u) => u.fenced);
      const fence = fenced ? this.leases.fenceOf(sessionId) : undefined;
      if (fenced && !fence) {
        throw new FenceRefused(this.leases.fenceRefused(sessionId));
      }
      const payload = this.hints.take(tx);
      const notice = payload === undefined ? undefined : { channel: CLUSTER_CHANNEL, payload };
      if (batch.records.length > 0 || fence || notice) {
        if (!(await this.history.close(tx, sessionId, batch.records, fence, notice))) {
          throw new FenceRefused(this.leases.fenceRefused(sessionId));
        }
      }
      if (fence) {
        this.leases.fenceHeld(sessionId);
      }
      return out;
    });
  }

  /**
   * Runs a batch's writes in order, except that a mergeable write takes along the later writes of
   * its kind to other agents (up to the next write that cannot merge, and never past an earlier
   * write of the same agent), in one statement. Returns each write's value at its index.
   */
  private async runUnits(tx: Tx, units: SessionUnit[], session: Session): Promise<unknown[]> {
    const out: unknown[] = new Array(units.length);
    const done = new Set<number>();
    for (const [index, unit] of units.entries()) {
      if (done.has(index)) {
        continue;
      }
      const merge = unit.merge;
      if (!merge) {
        try {
          out[index] = await unit.context.runInAsyncScope(() => unit.run(tx, session));
        } catch (err) {
          throw new UnitFailed(index, err);
        }
        done.add(index);
        continue;
      }
      const segment = [index];
      const passed = new Set([merge.agentId]);
      for (let j = index + 1; j < units.length; j++) {
        const other = units[j].merge;
        if (done.has(j)) {
          continue;
        }
        if (!other) {
          break; // a write that cannot merge is a barrier
        }
        if (other.kind === merge.kind && !passed.has(other.agentId)) {
          segment.push(j);
        }
        passed.add(other.agentId);
      }
      let rows: unknown[];
      try {
        const args = segment.map((j) => units[j].merge!.args);
        rows = await unit.context.runInAsyncScope(() => merge.runMany(tx, args));
      } catch (err) {
        throw new MergedFailed(err);
      }
      for (const [k, j] of segment.entries()) {
        const write = units[j];
        try {
          out[j] = await write.context.runInAsyncScope(() => write.merge!.then(tx, rows[k], session));
        } catch (err) {
          throw new UnitFailed(j, err);
        }
        done.add(j);
      }
    }
    return out;
  }

  /** After a batch rolled back: each write gets the outcome it would have had alone, in order. */
  private async recover(sessionId: string, units: SessionUnit[], err: unknown): Promise<void> {
    if (err instanceof FenceRefused) {
      // Only the owner's writes are refused; a client's writes need no lease.
      units.filter((u) => u.fenced).forEach((u) => u.reject(err.cause));
      const others = units.filter((u) => !u.fenced);
      if (others.length > 0) {
        await this.commitBatch(sessionId, others);
      }
      return;
    }
    if (err instanceof MergedFailed || (err instanceof UnitFailed && units.some((u) => u.merge))) {
      if (err.cause instanceof RpcError && err.cause.reason === 'unavailable') {
        units.forEach((u) => u.reject(err.cause));
        return;
      }
      // Writes that shared statements ran out of arrival order: run the batch again write by write.
      units.forEach((u) => (u.merge = undefined));
      await this.commitBatch(sessionId, units);
      return;
    }
    if (!(err instanceof UnitFailed)) {
      units.forEach((u) => u.reject(err)); // the lock or the commit failed: nothing committed
      return;
    }
    const { index, cause } = err;
    if (units.length === 1 || (cause instanceof RpcError && cause.reason === 'unavailable')) {
      units.forEach((u) => u.reject(cause)); // the database went away: every write of the batch with it
      return;
    }
    if (index > 0) {
      await this.commitBatch(sessionId, units.slice(0, index));
    }
    // It ran after exactly the writes just committed again, so its error is the one it would get alone.
    units[index].reject(cause);
    if (index + 1 < units.length) {
      await this.commitBatch(sessionId, units.slice(index + 1));
    }
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

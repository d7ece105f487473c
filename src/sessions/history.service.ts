import { Inject, Injectable } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { CLUSTER_CHANNEL } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { CLOCK, Clock } from 'src/common/clock';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { json, run, Statement } from 'src/database/sql';
import { startChildSpan } from 'src/telemetry/tracing';
import { GroupCommit, PendingUnit } from './group-commit';
import { HistoryRepository, SessionClosing } from './history.repository';
import { PushFanout } from './push-fanout.service';
import { SessionRepository } from './session.repository';
import { HistoryRecord, NotificationType, Session } from './session.types';

/** The records a session transaction has made so far, with the last `seq` it took. */
interface HistoryBatch {
  sessionId: string;
  /** The session row as the batch locked it. */
  session: Session;
  seq: number;
  records: HistoryRecord[];
  /** A write took work as the session's owner (a hand-off): the batch ends with the fence, as for owner writes. */
  fence: boolean;
  /** Records made from now on reach subscribers a turn after the commit, after the replies (see pushAfterReplies). */
  later: boolean;
}

/** One caller's writes to a session, waiting for the batch that commits them. */
interface SessionUnit extends PendingUnit {
  sessionId: string;
  run: (tx: Tx, session: Session) => Promise<unknown>;
  /** The caller's async context (its trace): the write runs in it, whoever's batch holds it. */
  context: AsyncResource;
  /** Made as the session's owner ({@link SessionWriteOptions.owner}): its batch ends with the lease fence. */
  fenced: boolean;
  /** Set when the write may share a statement with others of its kind; dropped after a merged statement failed. */
  merge?: MergeableWrite;
}

/** How a write to a session is made. */
export interface SessionWriteOptions {
  /**
   * The session owner's work (an agent's step, a timer's or a schedule's firing, a takeover): the
   * write commits only while this node's lease on the session holds, so that a node that lost the
   * session cannot write to it any more (its batch ends with the lease fence). A client's request
   * (the default) needs no lease: any node may write it under the session row lock.
   */
  owner?: boolean;
}

/**
 * A write that can share one statement with writes of the same `kind` to other agents, of its
 * session or of the other sessions in its batch (the steps every item takes: queueing, claiming,
 * completing; creating agents, putting them to sleep). In a batch, such writes to distinct agents run
 * as one multi-row statement, which a batch on a Postgres server may send together with its lock,
 * then each write's `then` in turn. The args may be of several sessions (each arg says its own):
 * writes of one kind must build interchangeable statements, since the batch uses the first write's
 * for all.
 */
export interface MergeableWrite<A = unknown, R = unknown, T = unknown> {
  kind: string;
  agentId: string;
  /** A write to several agents of its session (a timer's firing): all of them, with `agentId` one of them. */
  agentIds?: string[];
  args: A;
  /** One statement for the writes of a segment, in their order; one row per write. */
  statement(args: A[]): Statement<R[]>;
  /** The rest of the write, given its row: history records, hooks; its value settles the caller. */
  then(tx: Tx, row: R, session: Session): Promise<T>;
}

/** One round of a batch: the writes that run alone (in session order), then one segment per kind. */
interface Round {
  alone: number[];
  segments: number[][];
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

/** The lease fence refused the batch's writes to some sessions: the node no longer owns them. */
class FenceRefused extends Error {
  constructor(
    /** Each refused session, with the error its owner writes get. */
    readonly refused: Map<string, unknown>,
  ) {
    super('the lease fence refused the batch');
  }
}

/** A write asked for a fence in doubt (see HistoryService.requireFence): it alone fails, with `error`. */
class FenceInDoubt extends Error {
  constructor(readonly error: unknown) {
    super('the lease fence is in doubt');
  }
}

/** Sessions of the batch that do not exist. */
class SessionsMissing extends Error {
  constructor(readonly sessionIds: Set<string>) {
    super('sessions of the batch do not exist');
  }
}

/**
 * Writes a session's changes together with the history records that describe them. Every write
 * to a session goes through {@link inSession}, and this node commits writes in batches (group
 * commit, see GroupCommit). Sessions are spread over a few lanes (COMMIT_LANES, one on PGlite); a
 * lane has one batch in flight, and the writes that arrive meanwhile go together in its next one:
 * one transaction that locks the batch's session rows first (in id order: one lock order, no
 * deadlocks; the commit order of a session matches its history's `seq`), runs each session's writes
 * in arrival order, each seeing the ones before it, as if one after another under the lock, and ends
 * each session with one statement that writes its history records, checks the lease fence when any
 * of its writes is the owner's, and sends the one NOTIFY that tells the other nodes what changed. A
 * caller's promise settles only after the commit that holds its writes.
 *
 * A write that fails fails alone: the batch is rolled back and committed again without it, and it
 * gets its own error (a write's function may therefore run more than once; it only writes through
 * `tx` and registers after-commit hooks, which run only for the attempt that commits). A write must
 * never wait for another write to a session of its lane (it would wait for its own batch).
 */
@Injectable()
export class HistoryService {
  /** Per open batch transaction, each session's records so far. */
  private readonly batches = new WeakMap<Tx, Map<string, HistoryBatch>>();
  private readonly writes: GroupCommit<number, SessionUnit>;
  private readonly lanes: number;

  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly history: HistoryRepository,
    private readonly fanout: PushFanout,
    private readonly hints: ClusterHints,
    private readonly leases: LeaseService,
    @Inject(CLOCK) private readonly clock: Clock,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.lanes = db.embedded ? 1 : config.commit.lanes;
    this.writes = new GroupCommit(
      (_lane, units) => this.commitBatch(units),
      config.commit,
      (lane) => `this server's write lane ${lane}`,
    );
  }

  /**
   * Runs `fn` in a transaction holding the session's lock (shared with other writes to the session
   * that arrive meanwhile); settles once that transaction has committed. `session_not_found` when
   * the session does not exist.
   */
  inSession<T>(
    sessionId: string,
    fn: (tx: Tx, session: Session) => Promise<T>,
    options: SessionWriteOptions = {},
  ): Promise<T> {
    return this.submit(sessionId, fn, options);
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
    options: SessionWriteOptions = {},
  ): Promise<T> {
    return this.submit(sessionId, fn, options, merge);
  }

  private submit<T>(
    sessionId: string,
    fn: (tx: Tx, session: Session) => Promise<T>,
    options: SessionWriteOptions,
    merge?: MergeableWrite,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.writes.submit(this.laneOf(sessionId), {
        sessionId,
        run: fn,
        merge,
        context: new AsyncResource('mailroom.session-write'),
        fenced: options.owner === true,
        resolve,
        reject,
      }),
    );
  }

  /** Writes of this session's lane waiting for a batch (the one committing excluded). */
  pendingWrites(sessionId: string): number {
    return this.writes.pending(this.laneOf(sessionId));
  }

  private laneOf(sessionId: string): number {
    if (this.lanes === 1) {
      return 0;
    }
    let h = 2166136261; // FNV-1a
    for (let i = 0; i < sessionId.length; i++) {
      h = Math.imul(h ^ sessionId.charCodeAt(i), 16777619);
    }
    return (h >>> 0) % this.lanes;
  }

  private async commitBatch(units: SessionUnit[]): Promise<void> {
    let results: unknown[];
    // The transaction (and its span) runs in the context of the write that opens the batch; every
    // other write in a trace gets a span of its own for it, so its trace shows the commit it waited on.
    const joined = units
      .slice(1)
      .map((u) =>
        u.context.runInAsyncScope(() =>
          startChildSpan('db.transaction', { 'mailroom.db.batch.writes': units.length }),
        ),
      );
    try {
      results = await units[0].context.runInAsyncScope(() => this.transactBatch(units));
    } catch (err) {
      joined.forEach((span) => span?.end());
      await this.recover(units, err);
      return;
    }
    joined.forEach((span) => span?.end());
    units.forEach((unit, i) => unit.resolve(results[i]));
  }

  private async transactBatch(units: SessionUnit[]): Promise<unknown[]> {
    const bySession = new Map<string, number[]>();
    units.forEach((u, i) => {
      const indices = bySession.get(u.sessionId);
      if (indices) {
        indices.push(i);
      } else {
        bySession.set(u.sessionId, [i]);
      }
    });
    const perSession = [...bySession.values()];
    // The first round's merged statements need nothing but the lock: they go with it (and, on a
    // Postgres server, BEGIN too: one round trip); COMMIT goes with the closing statement.
    const first = this.planRound(units, perSession, new Set());
    const sent = first?.segments ?? [];
    const statements = sent.map((segment) => this.statementOf(units, segment));
    let opened = false;
    try {
      return await this.db.transactionFused(
        [this.sessions.lockAllStatement([...bySession.keys()]), ...statements],
        async (tx, [locked, ...rows]) => {
          opened = true;
          const missing = new Set([...bySession.keys()].filter((id) => !locked.has(id)));
          if (missing.size > 0) {
            throw new SessionsMissing(missing);
          }
          const batches = new Map<string, HistoryBatch>();
          for (const [sessionId, { historySeq, session }] of locked) {
            batches.set(sessionId, {
              sessionId,
              session,
              seq: historySeq,
              records: [],
              fence: false,
              later: false,
            });
          }
          this.batches.set(tx, batches);
          const out: unknown[] = new Array(units.length);
          const sessionOf = (i: number) => locked.get(units[i].sessionId)!.session;
          const prefetched = new Map(sent.map((segment, k) => [segment, rows[k]]));
          await this.runUnits(tx, units, perSession, sessionOf, out, first, prefetched);
          this.batches.delete(tx);
          await this.closeSessions(tx, bySession, batches, units);
          return out;
        },
      );
    } catch (err) {
      // The lock or a merged statement sent with it failed: run the batch again write by write.
      throw !opened && sent.length > 0 ? new MergedFailed(err) : err;
    }
  }

  private statementOf(units: SessionUnit[], segment: number[]): Statement<unknown[]> {
    return units[segment[0]].merge!.statement(segment.map((j) => units[j].merge!.args));
  }

  /**
   * The batch ends with one statement for all its sessions: their records, the fences of sessions
   * with owner writes (last, so a takeover waits for this commit or refuses it) and their NOTIFYs.
   */
  private async closeSessions(
    tx: Tx,
    bySession: Map<string, number[]>,
    batches: Map<string, HistoryBatch>,
    units: SessionUnit[],
  ): Promise<void> {
    const closings: SessionClosing[] = [];
    const refused = new Map<string, unknown>();
    const fenced: string[] = [];
    for (const [sessionId, indices] of bySession) {
      const owned = indices.some((i) => units[i].fenced) || batches.get(sessionId)!.fence;
      const fence = owned ? this.leases.fenceOf(sessionId) : undefined;
      if (owned && !fence) {
        refused.set(sessionId, this.leases.fenceRefused(sessionId));
        continue;
      }
      const notice = this.hints.take(tx, sessionId);
      const { records } = batches.get(sessionId)!;
      if (records.length > 0 || fence || notice !== undefined) {
        closings.push({ sessionId, records, fence, notice });
      }
      if (fence) {
        fenced.push(sessionId);
      }
    }
    if (refused.size === 0 && closings.length > 0) {
      for (const sessionId of await this.history.close(tx, closings, CLUSTER_CHANNEL)) {
        refused.set(sessionId, this.leases.fenceRefused(sessionId));
      }
    }
    if (refused.size > 0) {
      throw new FenceRefused(refused);
    }
    fenced.forEach((sessionId) => this.leases.fenceHeld(sessionId));
  }

  /**
   * Runs the batch's writes, each session's (`perSession`: indices in arrival order) in its order,
   * in rounds (see {@link planRound}): in each, the writes that cannot merge, one by one, then each
   * kind's segment as one statement (its rows `prefetched` when it went with the lock). Puts each
   * value at its index.
   */
  private async runUnits(
    tx: Tx,
    units: SessionUnit[],
    perSession: number[][],
    sessionOf: (index: number) => Session,
    out: unknown[],
    first: Round | undefined,
    prefetched: Map<number[], unknown[]>,
  ): Promise<void> {
    const done = new Set<number>();
    for (let round = first; round; round = this.planRound(units, perSession, done)) {
      for (const index of round.alone) {
        const unit = units[index];
        try {
          out[index] = await unit.context.runInAsyncScope(() => unit.run(tx, sessionOf(index)));
        } catch (err) {
          throw new UnitFailed(index, err);
        }
        done.add(index);
      }
      for (const segment of round.segments) {
        await this.runSegment(tx, units, segment, sessionOf, out, prefetched.get(segment));
        segment.forEach((j) => done.add(j));
      }
    }
  }

  /**
   * The next round of a batch, once the writes in `done` have run: every session takes its next
   * step, either a write that cannot merge (`alone`) or a segment of mergeable writes of one kind
   * (from its next write up to the next write that cannot merge, never past an earlier write of the
   * same agent); the segments of one kind, of every session, are one statement. Undefined when every
   * write has run.
   */
  private planRound(units: SessionUnit[], perSession: number[][], done: Set<number>): Round | undefined {
    const alone: number[] = [];
    const byKind = new Map<string, number[]>(); // in session order
    for (const indices of perSession) {
      const at = indices.findIndex((i) => !done.has(i));
      if (at === -1) {
        continue;
      }
      const merge = units[indices[at]].merge;
      if (!merge) {
        alone.push(indices[at]);
        continue;
      }
      const segment = byKind.get(merge.kind) ?? [];
      byKind.set(merge.kind, segment);
      segment.push(...this.segmentOf(units, indices.slice(at), done));
    }
    return alone.length > 0 || byKind.size > 0 ? { alone, segments: [...byKind.values()] } : undefined;
  }

  /** The writes (`rest[0]` and later ones) that merge with `rest[0]`: its kind, other agents, no barrier between. */
  private segmentOf(units: SessionUnit[], rest: number[], done: Set<number>): number[] {
    const merge = units[rest[0]].merge!;
    const segment = [rest[0]];
    const agentsOf = (m: MergeableWrite) => m.agentIds ?? [m.agentId];
    const passed = new Set(agentsOf(merge));
    for (const j of rest.slice(1)) {
      const other = units[j].merge;
      if (done.has(j)) {
        continue;
      }
      if (!other) {
        break; // a write that cannot merge is a barrier
      }
      if (other.kind === merge.kind && !agentsOf(other).some((a) => passed.has(a))) {
        segment.push(j);
      }
      agentsOf(other).forEach((a) => passed.add(a));
    }
    return segment;
  }

  private async runSegment(
    tx: Tx,
    units: SessionUnit[],
    segment: number[],
    sessionOf: (index: number) => Session,
    out: unknown[],
    prefetched: unknown[] | undefined,
  ): Promise<void> {
    const first = units[segment[0]];
    let rows = prefetched;
    if (!rows) {
      try {
        rows = await first.context.runInAsyncScope(() => run(tx, this.statementOf(units, segment)));
      } catch (err) {
        throw new MergedFailed(err);
      }
    }
    for (const [k, j] of segment.entries()) {
      const write = units[j];
      try {
        out[j] = await write.context.runInAsyncScope(() => write.merge!.then(tx, rows[k], sessionOf(j)));
      } catch (err) {
        throw new UnitFailed(j, err);
      }
    }
  }

  /** After a batch rolled back: each write gets the outcome it would have had alone. */
  private async recover(units: SessionUnit[], err: unknown): Promise<void> {
    const again = (rest: SessionUnit[]) => (rest.length > 0 ? this.commitBatch(rest) : Promise.resolve());
    if (err instanceof SessionsMissing) {
      const missing = units.filter((u) => err.sessionIds.has(u.sessionId));
      missing.forEach((u) => u.reject(RpcError.sessionNotFound(u.sessionId)));
      return again(units.filter((u) => !err.sessionIds.has(u.sessionId)));
    }
    if (err instanceof FenceRefused) {
      // Only the owner's writes to those sessions are refused; a client's writes need no lease.
      const refused = (u: SessionUnit) => u.fenced && err.refused.has(u.sessionId);
      units.filter(refused).forEach((u) => u.reject(err.refused.get(u.sessionId)));
      return again(units.filter((u) => !refused(u)));
    }
    if (err instanceof UnitFailed && err.cause instanceof FenceInDoubt) {
      // Its own failure, though `unavailable`: the database answered; the others commit.
      units[err.index].reject(err.cause.error);
      return again(units.filter((_, i) => i !== err.index));
    }
    const cause = err instanceof MergedFailed || err instanceof UnitFailed ? err.cause : err;
    if (!(err instanceof MergedFailed || err instanceof UnitFailed) || isUnavailable(cause)) {
      // The lock or the commit failed, or the database went away: nothing committed, for any of them.
      units.forEach((u) => u.reject(cause));
      return;
    }
    if (units.some((u) => u.merge)) {
      // Writes that shared statements ran out of arrival order: run the batch again write by write.
      units.forEach((u) => (u.merge = undefined));
      return again(units);
    }
    const failed = units[(err as UnitFailed).index];
    // It ran after the writes that will commit now, so its error is the one it would get alone.
    failed.reject(cause);
    return again(units.filter((u) => u !== failed));
  }

  /** The session's part of the batch behind `tx`; undefined outside such a batch. */
  private batchOf(tx: Tx, sessionId: string): HistoryBatch | undefined {
    return this.batches.get(tx)?.get(sessionId);
  }

  /** True while `tx` is a batch of writes that holds the session's lock (see {@link inSession}). */
  inBatch(tx: Tx, sessionId: string): boolean {
    return this.batchOf(tx, sessionId) !== undefined;
  }

  /** The session row as the batch behind `tx` locked it; undefined outside such a batch. */
  lockedSession(tx: Tx, sessionId: string): Session | undefined {
    return this.batchOf(tx, sessionId)?.session;
  }

  /**
   * Makes the batch behind `tx` end with the session's lease fence, as a batch with the owner's
   * writes does: for a write that did owner work on the way (a client's task handed to its agent's
   * loop). A refused fence fails the batch, which runs again; by then the fence is in doubt
   * (LeaseService.fenceInDoubt), so a write asks for it again only to fail alone (`unavailable`),
   * and the hand-off, which asks first, is not made again.
   */
  requireFence(tx: Tx, sessionId: string): void {
    const batch = this.batchOf(tx, sessionId);
    if (!batch) {
      throw new Error(`no batch of session ${sessionId} is open in this transaction`);
    }
    if (this.leases.fenceInDoubt(sessionId)) {
      throw new FenceInDoubt(this.leases.fenceRefused(sessionId));
    }
    batch.fence = true;
  }

  /**
   * The session's records made from now on in the batch behind `tx` are pushed one event-loop turn
   * after its commit (DatabaseService.afterReplies), once the replies of the batch's writes are out:
   * for records that would have been a later transaction's (a hand-off's claim), so that a client
   * still gets the reply of its call before the pushes of what the call set off, as when they were.
   */
  pushAfterReplies(tx: Tx, sessionId: string): void {
    const batch = this.batchOf(tx, sessionId);
    if (batch && !batch.later) {
      batch.later = true;
      // At commit, after the pushes of the records made before: text streamed meanwhile waits for
      // the deferred ones, up to the batch's last (NotificationBus.expect).
      this.db.afterCommit(tx, () => this.fanout.expect(sessionId, batch.seq));
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
    const batch = this.batchOf(tx, sessionId);
    let record: HistoryRecord;
    if (batch) {
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
    const push = () => this.fanout.local(record);
    if (batch?.later) {
      this.db.afterReplies(tx, push);
    } else {
      this.db.afterCommit(tx, push);
    }
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

const isUnavailable = (err: unknown) => err instanceof RpcError && err.reason === 'unavailable';

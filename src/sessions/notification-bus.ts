import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { EphemeralPush } from 'src/cluster/cluster.types';
import { HistoryRecord } from './session.types';

/**
 * Committed history records, in commit order. The agent loop and services publish here (never to
 * sockets); the gateway subscribes and turns each record into a push to the session's subscribers.
 * Pushes without a history row (streamed text) travel beside them on {@link ephemeral$}, from every
 * node (PushFanout bridges the other nodes' in).
 */
/** An ephemeral push as it is made, before the bus stamps it with its session's `seq`. */
interface EphemeralInput {
  sessionId: string;
  at: string;
  type: string;
  payload: Record<string, unknown>;
}

@Injectable()
export class NotificationBus {
  private readonly subject = new Subject<HistoryRecord>();
  private readonly ephemerals = new Subject<EphemeralPush>();
  private readonly outgoing = new Subject<EphemeralPush>();
  readonly records$: Observable<HistoryRecord> = this.subject.asObservable();
  /** Ephemeral pushes for this node's subscribers, made here or on another node. */
  readonly ephemeral$: Observable<EphemeralPush> = this.ephemerals.asObservable();
  /** Ephemeral pushes made here, for the other nodes. */
  readonly outgoing$: Observable<EphemeralPush> = this.outgoing.asObservable();
  /** The latest history `seq` seen per session: what an ephemeral push is stamped with. */
  private readonly lastSeq = new Map<string, number>();
  /** Per session, the last committed record whose push comes a turn later (see {@link expect}). */
  private readonly expected = new Map<string, number>();
  /** Per session, the ephemeral pushes made while such records were expected, in order. */
  private readonly held = new Map<string, EphemeralInput[]>();

  publish(record: HistoryRecord): void {
    const { sessionId, seq } = record;
    if (seq > (this.lastSeq.get(sessionId) ?? 0)) {
      this.lastSeq.set(sessionId, seq);
    }
    this.subject.next(record);
    const expected = this.expected.get(sessionId);
    if (expected !== undefined && seq >= expected) {
      this.expected.delete(sessionId);
      const held = this.held.get(sessionId) ?? [];
      this.held.delete(sessionId);
      held.forEach((push) => this.publishEphemeral(push));
    }
  }

  /**
   * The session's records up to `seq` have committed and are published shortly, a turn after their
   * commit (HistoryService.pushAfterReplies): ephemeral pushes made meanwhile (an agent's streamed
   * text, which its loop may produce at once) wait for them, so that they still follow the records
   * they come after.
   */
  expect(sessionId: string, seq: number): void {
    if (seq > (this.lastSeq.get(sessionId) ?? 0) && seq > (this.expected.get(sessionId) ?? 0)) {
      this.expected.set(sessionId, seq);
    }
  }

  /**
   * A push that is not in the history: to this node's subscribers at once, and to the other nodes'.
   * Its `seq` is the latest record's, so it sorts after what it follows; other nodes push it as stamped.
   */
  publishEphemeral(push: EphemeralInput): void {
    if (this.expected.has(push.sessionId)) {
      const held = this.held.get(push.sessionId);
      if (held) {
        held.push(push);
      } else {
        this.held.set(push.sessionId, [push]);
      }
      return;
    }
    const seq = this.lastSeq.get(push.sessionId) ?? 0;
    const stamped: EphemeralPush = {
      sessionId: push.sessionId,
      type: push.type,
      payload: { ...push.payload, at: push.at, seq },
    };
    this.ephemerals.next(stamped);
    this.outgoing.next(stamped);
  }

  /** An ephemeral push made on another node. */
  deliverEphemeral(push: EphemeralPush): void {
    this.ephemerals.next(push);
  }
}

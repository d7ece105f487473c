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

  publish(record: HistoryRecord): void {
    this.subject.next(record);
  }

  /** A push that is not in the history: to this node's subscribers at once, and to the other nodes'. */
  publishEphemeral(push: EphemeralPush): void {
    this.ephemerals.next(push);
    this.outgoing.next(push);
  }

  /** An ephemeral push made on another node. */
  deliverEphemeral(push: EphemeralPush): void {
    this.ephemerals.next(push);
  }
}

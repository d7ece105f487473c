import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { HistoryRecord, Notification } from './session.types';

/**
 * Committed history records, in commit order, and the ephemeral pushes between them (streamed
 * text). The agent loop and services publish here (never to sockets); the gateway subscribes and
 * turns each one into a push to the session's subscribers.
 */
@Injectable()
export class NotificationBus {
  private readonly subject = new Subject<Notification>();
  readonly records$: Observable<Notification> = this.subject.asObservable();
  /** The latest history `seq` seen per session: what an ephemeral push is stamped with. */
  private readonly lastSeq = new Map<string, number>();

  publish(record: HistoryRecord): void {
    if (record.seq > (this.lastSeq.get(record.sessionId) ?? 0)) {
      this.lastSeq.set(record.sessionId, record.seq);
    }
    this.subject.next(record);
  }

  /** A push that is not in the history; its `seq` is the latest record's, so it sorts after what it follows. */
  publishEphemeral(n: Omit<Notification, 'seq' | 'ephemeral'>): void {
    this.subject.next({ ...n, seq: this.lastSeq.get(n.sessionId) ?? 0, ephemeral: true });
  }
}

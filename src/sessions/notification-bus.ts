import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { HistoryRecord } from './session.types';

/**
 * Committed history records, in commit order. The agent loop and services publish here (never to
 * sockets); the gateway subscribes and turns each record into a push to the session's subscribers.
 */
@Injectable()
export class NotificationBus {
  private readonly subject = new Subject<HistoryRecord>();
  readonly records$: Observable<HistoryRecord> = this.subject.asObservable();

  publish(record: HistoryRecord): void {
    this.subject.next(record);
  }
}

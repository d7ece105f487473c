import { Injectable } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';

export interface AgentSignal {
  sessionId: string;
  agentId: string;
  /** `work`: something may be claimable now. `abort`: stop the item in hand (the agent was stopped). */
  type: 'work' | 'abort';
  /** With `abort`: only abandon the item in hand if it is this one. */
  taskId?: string;
}

/**
 * In-process wake-ups for agent loops. A signal is only a hint: the loop always asks the
 * database what to do, and a slow poll covers a lost hint, so losing one delays and never loses work.
 */
@Injectable()
export class AgentSignals {
  private readonly subject = new Subject<AgentSignal>();
  readonly signals$: Observable<AgentSignal> = this.subject.asObservable();

  emit(signal: AgentSignal): void {
    this.subject.next(signal);
  }
}

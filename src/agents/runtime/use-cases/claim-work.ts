import { Injectable } from '@nestjs/common';
import { MailRepository } from 'src/mailbox/mail.repository';
import { HistoryService } from 'src/sessions/history.service';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { WorkStepRepository } from '../work-step.repository';
import { ClaimedWork } from './work-values';

/** Takes an idle agent's next item in protocol order and makes the agent `active`, in one statement. */
@Injectable()
export class ClaimWork {
  constructor(
    private readonly history: HistoryService,
    private readonly steps: WorkStepRepository,
    private readonly mail: MailRepository,
    private readonly lifecycle: AgentLifecycleService,
  ) {}

  /** Undefined when the agent has nothing queued or may not work now. */
  run(sessionId: string, agentId: string): Promise<ClaimedWork | undefined> {
    return this.history.inSession(sessionId, async (tx, session) => {
      const now = this.lifecycle.now();
      const claimed = await this.steps.claim(tx, sessionId, agentId, now);
      if (!claimed) {
        return undefined;
      }
      const { item } = claimed;
      await this.lifecycle.changed(tx, claimed.agent, 'idle', 'active', item.kind);
      if (item.payload.messageId) {
        await this.mail.markRead(tx, [item.payload.messageId], now);
      }
      await this.history.record(tx, sessionId, 'async.task.started', {
        agentId,
        taskId: item.taskId,
        kind: item.kind,
      });
      return { ...claimed, session: { limits: session.limits, tokensUsed: session.tokensUsed } };
    });
  }
}

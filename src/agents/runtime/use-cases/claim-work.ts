import { Injectable } from '@nestjs/common';
import { MailRepository } from 'src/mailbox/mail.repository';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { AgentRepository } from '../../agent.repository';
import { ClaimedWork } from './work-values';

/** Takes an idle agent's next item in protocol order and makes the agent `active`, in one transaction. */
@Injectable()
export class ClaimWork {
  constructor(
    private readonly history: HistoryService,
    private readonly agents: AgentRepository,
    private readonly items: WorkItemRepository,
    private readonly mail: MailRepository,
    private readonly lifecycle: AgentLifecycleService,
  ) {}

  /** Undefined when the agent has nothing queued or may not work now. */
  run(sessionId: string, agentId: string): Promise<ClaimedWork | undefined> {
    return this.history.inSession(sessionId, async (tx) => {
      const agent = await this.agents.find(tx, sessionId, agentId);
      if (agent?.state !== 'idle') {
        return undefined;
      }
      const now = this.lifecycle.now();
      const item = await this.items.claimNext(tx, sessionId, agentId, now);
      if (!item) {
        return undefined;
      }
      const active = await this.lifecycle.transition(tx, agent, 'active', item.kind, { lastActiveAt: now });
      if (item.payload.messageId) {
        await this.mail.markRead(tx, [item.payload.messageId], now);
      }
      await this.history.record(tx, sessionId, 'async.task.started', {
        agentId,
        taskId: item.taskId,
        kind: item.kind,
      });
      return { agent: active, item };
    });
  }
}

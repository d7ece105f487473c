import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { MailRepository } from 'src/mailbox/mail.repository';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { HistoryService } from 'src/sessions/history.service';
import { Session } from 'src/sessions/session.types';
import { AgentLifecycleService } from '../../agent-lifecycle.service';
import { Agent } from '../../agent.types';
import { AgentKey, WorkStepRepository } from '../work-step.repository';
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
    // Claims of several agents of the session in the same batch are one statement.
    return this.history.inSessionMerged(
      sessionId,
      async (tx, session) =>
        this.recordClaim(tx, await this.steps.claim(tx, sessionId, agentId, this.lifecycle.now()), session),
      {
        kind: 'claim',
        agentId,
        args: { sessionId, agentId },
        statement: (agents: AgentKey[]) => this.steps.claimManyStatement(agents, this.lifecycle.now()),
        then: (tx, claimed, session) => this.recordClaim(tx, claimed, session),
      },
      { owner: true },
    );
  }

  /**
   * What a claim records: the agent's change to `active`, its mail read, `task.started` (also for
   * an item claimed by the statement that completed the one before, see CompleteWork).
   */
  async recordClaim(
    tx: Tx,
    claimed: { agent: Agent; item: WorkItem } | undefined,
    session: Session,
  ): Promise<ClaimedWork | undefined> {
    if (!claimed) {
      return undefined;
    }
    const { agent, item } = claimed;
    await this.lifecycle.changed(tx, agent, 'idle', 'active', item.kind);
    if (item.payload.messageId) {
      await this.mail.markRead(tx, [item.payload.messageId], item.startedAt ?? this.lifecycle.now());
    }
    await this.history.record(tx, agent.sessionId, 'async.task.started', {
      agentId: agent.agentId,
      taskId: item.taskId,
      kind: item.kind,
    });
    return { ...claimed, session: { limits: session.limits, tokensUsed: session.tokensUsed } };
  }
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { Usage } from 'src/mailbox/mailbox.types';
import { SessionRepository } from 'src/sessions/session.repository';
import { AgentRepository } from '../../agent.repository';

/** Tokens spent count against the agent's and the session's budgets, whatever became of the item. */
@Injectable()
export class TokenCharges {
  constructor(
    private readonly agents: AgentRepository,
    private readonly sessions: SessionRepository,
  ) {}

  /** Adds `usage` to both totals and returns the new ones. */
  async charge(
    tx: Tx,
    sessionId: string,
    agentId: string,
    usage: Usage,
  ): Promise<{ agentTokens: number; sessionTokens: number }> {
    const tokens = usage.promptTokens + usage.completionTokens;
    return {
      agentTokens: await this.agents.addTokens(tx, sessionId, agentId, tokens),
      sessionTokens: await this.sessions.addTokens(tx, sessionId, tokens),
    };
  }
}

import { Agent, AgentState, DEFAULT_LIMITS } from 'src/agents/agent.types';

/** A bare agent record for medium specs that write rows without the app (no template, no tools). */
export function newAgentRow(sessionId: string, agentId: string, state: AgentState, createdAt: string): Agent {
  return {
    sessionId,
    agentId,
    template: 'assistant',
    config: { description: '', systemPrompt: '', tools: [], script: [], limits: DEFAULT_LIMITS },
    state,
    stopReason: null,
    waitingOn: null,
    wakeEvents: [],
    sleepingUntil: null,
    errorCount: 0,
    lastError: null,
    lastActiveAt: null,
    tokensUsed: 0,
    createdAt,
  };
}

import { Injectable } from '@nestjs/common';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { USER } from 'src/mailbox/mailbox.types';
import { HistoryService } from 'src/sessions/history.service';
import { SessionRepository } from 'src/sessions/session.repository';
import { AgentLifecycleService } from './agent-lifecycle.service';
import { AgentWrites } from './agent-writes.repository';
import { AgentRepository } from './agent.repository';
import { NewAgents } from './new-agents';
import { Agent, AgentConfigOverrides, AgentState, AgentStateSnapshot, Template } from './agent.types';
import { TemplatesService } from './templates.service';

/** Agent records and lifecycle as the client sees them: create, start, stop, look. */
@Injectable()
export class AgentsService {
  constructor(
    private readonly history: HistoryService,
    private readonly sessions: SessionRepository,
    private readonly agents: AgentRepository,
    private readonly writes: AgentWrites,
    private readonly lifecycle: AgentLifecycleService,
    private readonly templates: TemplatesService,
    private readonly newAgents: NewAgents,
  ) {}

  create(input: {
    sessionId: string;
    agentId: string;
    template?: string;
    autoStart: boolean;
    config?: AgentConfigOverrides;
  }): Promise<{ agentId: string; state: AgentState; template: string }> {
    if (input.agentId === USER) {
      throw RpcError.invalidParams([
        { path: 'agentId', message: `'${USER}' is reserved for the human client` },
      ]);
    }
    const template = this.templates.resolve(input.agentId, input.template);
    const { config, wakeEvents } = this.templates.effectiveConfig(template, input.config);
    const agent: Agent = {
      sessionId: input.sessionId,
      agentId: input.agentId,
      template: template.name,
      config,
      state: input.autoStart ? 'idle' : 'stopped',
      stopReason: input.autoStart ? null : 'created_stopped',
      waitingOn: null,
      wakeEvents,
      sleepingUntil: null,
      errorCount: 0,
      lastError: null,
      lastActiveAt: null,
      tokensUsed: 0,
      createdAt: this.lifecycle.now(),
    };
    // Agents created at about the same time (a client making thousands) are inserted by one statement.
    return this.history.inSessionMerged(
      input.sessionId,
      async (tx) => this.created(tx, agent, await this.agents.insert(tx, agent)),
      {
        kind: 'createAgent',
        agentId: agent.agentId,
        args: agent,
        statement: (agents: Agent[]) => this.writes.insertManyStatement(agents),
        then: (tx, inserted) => this.created(tx, agent, inserted),
      },
    );
  }

  /** What creating records, given the inserted row (undefined: the id was taken). */
  private async created(
    tx: Tx,
    wanted: Agent,
    agent: Agent | undefined,
  ): Promise<{ agentId: string; state: AgentState; template: string }> {
    if (!agent) {
      throw new RpcError(
        'conflict',
        `Agent '${wanted.agentId}' already exists in session '${wanted.sessionId}'`,
      );
    }
    await this.history.record(tx, agent.sessionId, 'async.agent.stateChanged', {
      agentId: agent.agentId,
      state: agent.state,
      previous: null,
      reason: 'created',
    });
    this.newAgents.createdAfterCommit(tx, agent);
    // No signal to its loop: a new agent has nothing queued (work can only be queued for an agent
    // that exists, and whatever queues it signals then), so a claim now would find nothing; for
    // thousands of agents created at once those futile claims were most of the cost.
    return { agentId: agent.agentId, state: agent.state, template: agent.template };
  }

  start(sessionId: string, agentId: string): Promise<{ agentId: string; state: AgentState }> {
    return this.history.inSession(sessionId, async (tx) => {
      const agent = await this.lifecycle.start(tx, await this.lifecycle.get(tx, sessionId, agentId));
      return { agentId, state: agent.state };
    });
  }

  stop(sessionId: string, agentId: string): Promise<{ agentId: string; state: 'stopped' }> {
    return this.history.inSession(sessionId, async (tx) => {
      await this.lifecycle.stop(tx, await this.lifecycle.get(tx, sessionId, agentId), 'stopped');
      return { agentId, state: 'stopped' as const };
    });
  }

  /** Stops every agent of the session; the session and its history stay readable. */
  stopSession(sessionId: string): Promise<{ sessionId: string; stopped: true }> {
    return this.history.inSession(sessionId, async (tx) => {
      for (const agent of await this.agents.listBySession(tx, sessionId)) {
        await this.lifecycle.stop(tx, agent, 'session_stopped');
      }
      await this.sessions.markStopped(tx, sessionId, this.lifecycle.now());
      return { sessionId, stopped: true as const };
    });
  }

  states(sessionId: string): Promise<{ agents: Record<string, AgentStateSnapshot> }> {
    return this.history.readSession(sessionId, async (tx) => ({
      agents: await this.agents.snapshots(tx, sessionId),
    }));
  }

  listTemplates(): Template[] {
    return this.templates.list();
  }
}

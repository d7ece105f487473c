import { Inject, Injectable } from '@nestjs/common';
import { CLOCK, Clock } from 'src/common/clock';
import { MAX_KNOWN_AGENTS, RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentSignals } from 'src/mailbox/agent-signals';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { AgentPatch, AgentRepository } from './agent.repository';
import { Agent, AgentState } from './agent.types';
import { WokenAgent } from './wake-statement';

/**
 * The agent state machine. Every change of `state` goes through {@link transition}, inside the
 * session's transaction, and is recorded as `async.agent.stateChanged`:
 *
 *   idle ⇄ active ⇄ waiting      (the loop: claim, send-and-switch, finish)
 *   any → sleeping → idle/active  (sleep; woken by timer, event, mail or wakeAgent)
 *   any → stopped → idle/active/waiting  (stopAgent / limits; startAgent resumes what the loop is doing)
 */
@Injectable()
export class AgentLifecycleService {
  constructor(
    private readonly db: DatabaseService,
    private readonly agents: AgentRepository,
    private readonly items: WorkItemRepository,
    private readonly history: HistoryService,
    private readonly signals: AgentSignals,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async transition(
    tx: Tx,
    agent: Agent,
    to: AgentState,
    reason: string,
    patch: AgentPatch = {},
  ): Promise<Agent> {
    const updated = await this.agents.update(tx, agent.sessionId, agent.agentId, { ...patch, state: to });
    await this.recordChange(tx, agent, to, reason);
    return updated;
  }

  private async recordChange(tx: Tx, agent: Agent, to: AgentState, reason: string): Promise<void> {
    if (agent.state !== to) {
      await this.history.record(tx, agent.sessionId, 'async.agent.stateChanged', {
        agentId: agent.agentId,
        state: to,
        previous: agent.state,
        reason,
      });
    }
  }

  /** {@link transition} whose updated row nobody needs: the update travels with the transaction's next statement. */
  async move(tx: Tx, agent: Agent, to: AgentState, reason: string, patch: AgentPatch = {}): Promise<void> {
    await this.agents.patch(tx, agent.sessionId, agent.agentId, { ...patch, state: to });
    await this.recordChange(tx, agent, to, reason);
  }

  /** Records a change of state already written by one of the loop's fused statements (WorkStepRepository). */
  async changed(
    tx: Tx,
    agent: Pick<Agent, 'sessionId' | 'agentId'>,
    previous: AgentState,
    to: AgentState,
    reason: string,
  ): Promise<void> {
    if (previous !== to) {
      await this.history.record(tx, agent.sessionId, 'async.agent.stateChanged', {
        agentId: agent.agentId,
        state: to,
        previous,
        reason,
      });
    }
  }

  /** The state a sleeping or stopped agent returns to: what its loop is doing right now. */
  async resumeState(tx: Tx, agent: Agent): Promise<AgentState> {
    if (agent.waitingOn) {
      return 'waiting';
    }
    return (await this.items.findRunning(tx, agent.sessionId, agent.agentId)) ? 'active' : 'idle';
  }

  /** Wakes a sleeping agent; false when it was not asleep. */
  async wake(tx: Tx, agent: Agent, reason: string): Promise<{ agent: Agent; woke: boolean }> {
    if (agent.state !== 'sleeping') {
      return { agent, woke: false };
    }
    const to = await this.resumeState(tx, agent);
    const woken = await this.transition(tx, agent, to, reason, { sleepingUntil: null });
    this.signalAfterCommit(tx, agent);
    return { agent: woken, woke: true };
  }

  /**
   * {@link wake} for many agents of one session with a fixed number of statements: those of
   * `agentIds` that sleep (and, with `dueBy`, whose deadline is at or before it) resume, each with
   * its `async.agent.stateChanged` in the order of `agentIds`. The woken ids, in that order.
   * `signalled`: the caller has just queued work for each of them and signals them itself (a
   * broadcast), so whether they have work is not asked.
   */
  async wakeAll(
    tx: Tx,
    sessionId: string,
    agentIds: string[],
    reason: string,
    { dueBy, signalled = false }: { dueBy?: string; signalled?: boolean } = {},
  ): Promise<string[]> {
    const woken = await this.agents.wakeSleeping(tx, sessionId, agentIds, dueBy, !signalled);
    return this.recordWoken(tx, sessionId, woken, reason, signalled);
  }

  /**
   * What waking records, given the agents a statement woke (in order): each one's
   * `async.agent.stateChanged`, and a signal to those with something to do (unless `signalled`).
   */
  async recordWoken(
    tx: Tx,
    sessionId: string,
    woken: WokenAgent[],
    reason: string,
    signalled = false,
  ): Promise<string[]> {
    for (const { agentId, state } of woken) {
      await this.history.record(tx, sessionId, 'async.agent.stateChanged', {
        agentId,
        state,
        previous: 'sleeping',
        reason,
      });
    }
    // An agent woken to `idle` with nothing queued has nothing to claim: signalling its loop would
    // only cost a futile claim transaction per sleeper (ten thousand timers due at once). Work
    // queued later signals it itself.
    if (!signalled) {
      this.signals.workAfterCommit(
        tx,
        sessionId,
        woken.filter((w) => w.hasWork || w.state !== 'idle').map((w) => w.agentId),
      );
    }
    return woken.map((w) => w.agentId);
  }

  async start(tx: Tx, agent: Agent, reason = 'started'): Promise<Agent> {
    if (agent.state !== 'stopped') {
      return agent;
    }
    const to = await this.resumeState(tx, agent);
    const started = await this.transition(tx, agent, to, reason, { stopReason: null, sleepingUntil: null });
    this.signalAfterCommit(tx, agent);
    return started;
  }

  /** Stops the agent; its loop abandons the item in hand (which goes back to the queue) once this commits. */
  async stop(tx: Tx, agent: Agent, reason: string): Promise<Agent> {
    if (agent.state === 'stopped') {
      return agent;
    }
    const stopped = await this.transition(tx, agent, 'stopped', reason, {
      stopReason: reason,
      sleepingUntil: null,
    });
    this.signals.emitAfterCommit(tx, { sessionId: agent.sessionId, agentId: agent.agentId, type: 'abort' });
    return stopped;
  }

  /** The agent, or `agent_not_found`. */
  async get(tx: Tx, sessionId: string, agentId: string): Promise<Agent> {
    const agent = await this.agents.find(tx, sessionId, agentId);
    if (!agent) {
      const known = await this.agents.knownIds(tx, sessionId, MAX_KNOWN_AGENTS);
      throw RpcError.agentNotFound(sessionId, agentId, known.ids, known.total);
    }
    return agent;
  }

  afterCommit(tx: Tx, fn: () => void): void {
    this.db.afterCommit(tx, fn);
  }

  now(): string {
    return new Date(this.clock.now()).toISOString();
  }

  signalAfterCommit(tx: Tx, agent: Pick<Agent, 'sessionId' | 'agentId'>): void {
    this.signals.emitAfterCommit(tx, { sessionId: agent.sessionId, agentId: agent.agentId, type: 'work' });
  }
}

import { Injectable } from '@nestjs/common';
import { RpcError } from 'src/common/rpc-error';
import { Tx } from 'src/database/database.service';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { AgentWrites, SleepRow } from 'src/agents/agent-writes.repository';
import { Agent, AgentState } from 'src/agents/agent.types';
import { MailboxService } from 'src/mailbox/mailbox.service';
import { HistoryService } from 'src/sessions/history.service';
import { SleepTimerService } from './sleep-timer.service';

export interface SleepRequest {
  durationSeconds?: number;
  /** When given, replaces the agent's wake events. */
  wakeEvents?: string[];
  /** The deadline itself, when it was promised earlier (the `sleep` tool's result); wins over durationSeconds. */
  until?: string;
}

/** What putting an agent to sleep answers. */
export interface Slept {
  agentId: string;
  state: AgentState;
  sleepingUntil: string | null;
  wakeEvents: string[];
}

const stoppedConflict = (agentId: string) =>
  new RpcError('conflict', `Agent '${agentId}' is stopped; start it before putting it to sleep`);

/** Sleep, wake and broadcast: what makes agents wait for time or for each other. */
@Injectable()
export class EventsService {
  constructor(
    private readonly history: HistoryService,
    private readonly agents: AgentRepository,
    private readonly writes: AgentWrites,
    private readonly lifecycle: AgentLifecycleService,
    private readonly mailbox: MailboxService,
    private readonly timers: SleepTimerService,
  ) {}

  sleepAgent(sessionId: string, agentId: string, request: SleepRequest): Promise<Slept> {
    // Agents put to sleep at about the same time (a client putting thousands to sleep) are one statement.
    return this.history.inSessionMerged(
      sessionId,
      async (tx) => this.sleep(tx, await this.lifecycle.get(tx, sessionId, agentId), request, 'sleep'),
      {
        kind: 'sleepAgent',
        agentId,
        args: { sessionId, agentId, request },
        statement: (args: Array<{ sessionId: string; agentId: string; request: SleepRequest }>) =>
          this.writes.sleepManyStatement(
            args.map((a) => ({
              sessionId: a.sessionId,
              agentId: a.agentId,
              until: this.deadline(a.request),
              wakeEvents: a.request.wakeEvents,
            })),
          ),
        then: (tx, row) => this.slept(tx, sessionId, agentId, row),
      },
    );
  }

  /** What putting to sleep records, given the row of AgentWrites.sleepMany: as {@link sleep} does. */
  private async slept(tx: Tx, sessionId: string, agentId: string, row: SleepRow): Promise<Slept> {
    if (row.previous === null) {
      await this.lifecycle.get(tx, sessionId, agentId); // throws agent_not_found, naming the agents it has
    }
    if (!row.slept) {
      throw stoppedConflict(agentId);
    }
    if (row.previous !== 'sleeping') {
      await this.lifecycle.changed(tx, { sessionId, agentId }, row.previous!, 'sleeping', 'sleep');
    }
    const { sleepingUntil, wakeEvents } = row.slept;
    this.afterCommitArm(tx, { sessionId, agentId, sleepingUntil });
    return { agentId, state: 'sleeping', sleepingUntil, wakeEvents };
  }

  /** Puts an agent to sleep in the caller's transaction. A step in progress finishes first (the loop claims nothing while asleep). */
  async sleep(tx: Tx, agent: Agent, request: SleepRequest, reason: string): Promise<Slept> {
    if (agent.state === 'stopped') {
      throw stoppedConflict(agent.agentId);
    }
    const slept = await this.lifecycle.transition(tx, agent, 'sleeping', reason, {
      sleepingUntil: this.deadline(request),
      wakeEvents: request.wakeEvents ?? agent.wakeEvents,
    });
    this.afterCommitArm(tx, slept);
    return {
      agentId: slept.agentId,
      state: slept.state,
      sleepingUntil: slept.sleepingUntil,
      wakeEvents: slept.wakeEvents,
    };
  }

  /** The deadline a request asks for; null: until an event. */
  private deadline(request: SleepRequest): string | null {
    return (
      request.until ??
      (request.durationSeconds === undefined
        ? null
        : new Date(Date.parse(this.lifecycle.now()) + request.durationSeconds * 1000).toISOString())
    );
  }

  wakeAgent(sessionId: string, agentId: string, reason?: string) {
    return this.history.inSession(sessionId, async (tx) => {
      const agent = await this.lifecycle.get(tx, sessionId, agentId);
      const { agent: after, woke } = await this.lifecycle.wake(tx, agent, reason ?? 'woken');
      return { agentId, state: after.state, woke };
    });
  }

  broadcastEvent(sessionId: string, event: string, data: unknown, from?: string) {
    return this.history.inSession(sessionId, (tx) => {
      // The answer first, then the pushes: a broadcast to thousands of sleepers records thousands of
      // changes of state, whose pushes would otherwise stand between the caller and its answer.
      this.history.pushAfterReplies(tx, sessionId);
      return this.broadcast(tx, sessionId, event, data, from);
    });
  }

  /**
   * Gives the event (with its data) as a work item to every running agent of the session that
   * listens to it, waking those that sleep. The sender itself is skipped, so an agent cannot wake itself in a loop.
   */
  async broadcast(
    tx: Tx,
    sessionId: string,
    event: string,
    data: unknown,
    from?: string,
    /** Hops of the items it makes: the sending agent's item's + 1; 0 from a client. */
    hops = 0,
  ): Promise<{ event: string; delivered: string[]; woke: string[] }> {
    // Set-based: a few statements whatever the number of listeners (a broadcast to thousands of sleepers).
    const listeners = await this.agents.listListeners(tx, sessionId, event, from);
    const delivered = listeners.map((a) => a.agentId);
    await this.mailbox.enqueueForEach(tx, delivered, {
      sessionId,
      kind: 'event',
      priority: 'normal',
      hops,
      prompt: event,
      payload: { event, data },
      createdAt: this.lifecycle.now(),
    });
    const sleepers = listeners.filter((a) => a.state === 'sleeping').map((a) => a.agentId);
    // Each of them has the event queued, and enqueueForEach signals them.
    const woke = await this.lifecycle.wakeAll(tx, sessionId, sleepers, `event:${event}`, { signalled: true });
    await this.history.record(tx, sessionId, 'async.event.broadcast', { event, data, woke });
    return { event, delivered, woke };
  }

  private afterCommitArm(tx: Tx, agent: Pick<Agent, 'sessionId' | 'agentId' | 'sleepingUntil'>): void {
    this.timers.armAfterCommit(tx, agent);
  }
}

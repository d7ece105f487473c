import {
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnModuleDestroy,
  OnModuleInit,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Subscription } from 'rxjs';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { SessionHint, SessionOwner } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentSignal, AgentSignals } from 'src/mailbox/agent-signals';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { HandedWork, WorkHandOff, WorkTaker } from 'src/mailbox/work-hand-off';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { detached, inWorkItemSpan } from 'src/telemetry/tracing';
import { AgentLifecycleService } from '../agent-lifecycle.service';
import { AgentRepository, AgentRow, toAgent } from '../agent.repository';
import { ClaimedWork } from './use-cases/work-values';
import { AgentLoop } from './agent-loop';
import { AgentWorker } from './agent-worker.service';

/**
 * Runs the loops of the agents of the sessions this node owns (see LeaseService). Loops are made
 * on demand from signals, or from work handed to an idle agent by the statement that queued it
 * (WorkHandOff), which its loop runs without claiming. Taking a session over first puts back the
 * work its previous owner left running, then wakes its agents that have work to claim; work another
 * live node owns is never touched. A slow poll is the backstop for a lost signal; it also lets go of
 * the loops of stopped agents, asking only about the agents that have a loop.
 */
@Injectable()
export class AgentRuntimeService
  implements SessionOwner, WorkTaker, OnModuleInit, OnApplicationBootstrap, OnModuleDestroy
{
  private readonly logger = new Logger(AgentRuntimeService.name);
  private readonly loops = new Map<string, AgentLoop>();
  /**
   * Items claimed for an agent's loop by another statement (the completion of its item before, or
   * the queueing of this one), which the loop runs next without a claim of its own. An item held
   * when the session is let go stays `running`: the session's next owner puts it back.
   */
  private readonly held = new Map<string, ClaimedWork>();
  private subscriptions: Subscription[] = [];
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly history: HistoryService,
    private readonly agents: AgentRepository,
    private readonly items: WorkItemRepository,
    private readonly lifecycle: AgentLifecycleService,
    private readonly worker: AgentWorker,
    private readonly signals: AgentSignals,
    private readonly scheduler: SchedulerRegistry,
    private readonly leases: LeaseService,
    private readonly hints: ClusterHints,
    private readonly handOff: WorkHandOff,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.leases.register(this);
    this.handOff.register(this);
  }

  onApplicationBootstrap(): void {
    this.subscriptions = [
      this.signals.signals$.subscribe((s) => this.onSignal(s)),
      this.hints.remote$.subscribe((h) => this.onHint(h)),
      this.hints.reconnected$.subscribe(() => void this.backstop()),
    ];
    // A wall-clock interval on purpose: it only re-signals, so tests never need to drive it.
    const poll = setInterval(() => void this.backstop(), this.config.pollIntervalMs);
    poll.unref();
    this.scheduler.addInterval(BACKSTOP, poll);
  }

  async onModuleDestroy(): Promise<void> {
    this.closed = true;
    if (this.scheduler.doesExist('interval', BACKSTOP)) {
      this.scheduler.deleteInterval(BACKSTOP);
    }
    this.subscriptions.forEach((s) => s.unsubscribe());
    // Items in hand may finish first (SHUTDOWN_GRACE_MS), so a rolling restart repeats nothing.
    await Promise.all([...this.loops.values()].map((l) => l.close(this.config.shutdownGraceMs)));
    this.loops.clear();
    this.held.clear(); // still running: put back when a node takes the session next
  }

  /** See WorkTaker: this node runs the session's loops, and its last fence did not fail. */
  takes(sessionId: string): boolean {
    return !this.closed && this.leases.isServing(sessionId) && !this.leases.fenceInDoubt(sessionId);
  }

  /**
   * Records the claim of an item its queueing claimed, as the claim's own transaction would, and
   * hands it to the agent's loop once it commits. The claim is owner work: the batch ends with the
   * session's fence, so a node that lost the session never starts the item. Its records are pushed,
   * and the loop starts, a turn after the commit: a client gets the reply to the call that queued
   * the item first, and then its start, its output and its end, as it did when the claim was a
   * transaction of its own.
   */
  async take(tx: Tx, { item, agentRow }: HandedWork): Promise<void> {
    const session = this.history.lockedSession(tx, item.sessionId);
    if (!session) {
      throw new Error(`work was handed off outside a batch of session ${item.sessionId}`);
    }
    this.history.requireFence(tx, item.sessionId);
    this.history.pushAfterReplies(tx, item.sessionId);
    const work = await this.worker.recordClaim(tx, { agent: toAgent(agentRow as AgentRow), item }, session);
    // After the claim's records (registered first): the start is pushed before the item's output.
    this.db.afterReplies(tx, () => {
      if (!this.closed && this.leases.isServing(item.sessionId)) {
        this.held.set(key(item.sessionId, item.agentId), work!);
        // A turn later still, once the replies of this commit are on the wire (CoalescedWrites writes
        // them in the turn after it): the step's synchronous start (its thinking, the next batch it
        // submits) would otherwise go first, and the caller's ack of sendTask would wait for it.
        setImmediate(() => {
          if (!this.closed) {
            this.loopFor(item.sessionId, item.agentId).signal();
          }
        });
      }
    });
  }

  /** The agents that have a loop in memory here now (made on a signal, let go once it has nothing to do). */
  get agentLoops(): number {
    return this.loops.size;
  }

  /** The agents (not stopped) of the sessions this node runs. */
  countOwnedAgents(): Promise<number> {
    return this.db.read((tx) => this.agents.countLive(tx, this.leases.served()));
  }

  /** The takeover: run as the new owner, fenced by the new epoch, before any loop of the session works. */
  async adopt(sessionIds: string[]): Promise<void> {
    const running = await this.db.read((tx) => this.items.listRunning(tx, sessionIds));
    const sessions = new Set(running.map((i) => i.sessionId));
    for (const a of await this.db.read((tx) => this.agents.listLive(tx, sessionIds))) {
      if (a.state === 'active' || a.state === 'waiting') {
        sessions.add(a.sessionId);
      }
    }
    for (const sessionId of sessions) {
      await this.recoverSession(sessionId, running);
    }
    if (running.length > 0) {
      this.logger.log(`Recovered ${running.length} interrupted work item(s)`);
    }
  }

  /**
   * Wakes the agents of the sessions taken up that have something to claim (idle, work queued):
   * a loop for each of thousands of agents that wait would only find nothing to do.
   */
  async serve(sessionIds: string[]): Promise<void> {
    for (const agent of await this.db.read((tx) => this.items.listClaimable(tx, sessionIds))) {
      this.loopFor(agent.sessionId, agent.agentId).signal();
    }
  }

  /** Closes the session's loops: the item in hand is abandoned (put back while the lease still holds). */
  async release(sessionIds: string[]): Promise<void> {
    const gone = new Set(sessionIds);
    const closing: Array<Promise<void>> = [];
    for (const k of this.held.keys()) {
      if (gone.has(sessionOf(k))) {
        this.held.delete(k);
      }
    }
    for (const [k, loop] of this.loops) {
      if (gone.has(sessionOf(k))) {
        this.loops.delete(k);
        closing.push(loop.close());
      }
    }
    await Promise.all(closing);
  }

  busy(sessionId: string): boolean {
    return [...this.loops].some(([k, loop]) => sessionOf(k) === sessionId && loop.busy);
  }

  private onSignal(signal: AgentSignal): void {
    if (signal.type === 'abort') {
      this.loops.get(key(signal.sessionId, signal.agentId))?.abort(signal.taskId);
    } else if (this.leases.isServing(signal.sessionId)) {
      this.loopFor(signal.sessionId, signal.agentId).signal();
    }
  }

  /** What a client did through another node, for the sessions this node runs. */
  private onHint(h: SessionHint): void {
    if (!this.leases.isServing(h.sessionId)) {
      return;
    }
    for (const a of h.abort ?? []) {
      this.onSignal({ sessionId: h.sessionId, agentId: a.agentId, type: 'abort', taskId: a.taskId });
    }
    for (const agentId of h.work ?? []) {
      this.onSignal({ sessionId: h.sessionId, agentId, type: 'work' });
    }
    if (h.allAgents) {
      void this.resync(h.sessionId).catch((err: unknown) =>
        this.logger.warn(`Looking at session ${h.sessionId} failed: ${String(err)}`),
      );
    }
  }

  /** Wakes the session's live agents and abandons the items in hand of stopped agents and ended items. */
  private async resync(sessionId: string): Promise<void> {
    const { live, running } = await this.db.read(async (tx) => ({
      live: await this.agents.listLive(tx, [sessionId]),
      running: await this.items.listRunning(tx, [sessionId]),
    }));
    const liveIds = new Set(live.map((a) => a.agentId));
    const runningBy = new Map(running.map((i) => [i.agentId, i.taskId]));
    for (const [k, loop] of this.loops) {
      const agentId = agentOf(k);
      if (sessionOf(k) === sessionId && loop.busy && (!liveIds.has(agentId) || !runningBy.has(agentId))) {
        loop.abort();
      }
    }
    for (const a of live) {
      this.onSignal({ sessionId, agentId: a.agentId, type: 'work' });
    }
  }

  private loopFor(sessionId: string, agentId: string): AgentLoop {
    const k = key(sessionId, agentId);
    let loop = this.loops.get(k);
    if (!loop) {
      loop = new AgentLoop(
        `${sessionId}/${agentId}`,
        // Detached: the loop runs in the async context of the signal that woke it, not of its sender.
        // Everything the loop writes is owner work (its use cases and tools write with `owner`):
        // fenced by this node's lease on the session.
        (signal, onClaim) =>
          detached(async () => {
            const held = this.held.get(k);
            this.held.delete(k);
            if (!this.leases.isServing(sessionId)) {
              return false; // an item held stays running: the session's next owner puts it back
            }
            const claimed = held ?? (await this.worker.claim(sessionId, agentId));
            if (!claimed) {
              return false;
            }
            onClaim(claimed.item.taskId);
            const after = await inWorkItemSpan(claimed.item, () => this.worker.process(claimed, signal));
            if (typeof after === 'object') {
              this.held.set(k, after); // claimed by the statement that completed this item
              return 'next';
            }
            // False when the agent's queue is known to be empty: no claim that would find nothing.
            return after;
          }),
        this.logger,
        (settled) => this.passivate(k, settled),
      );
      this.loops.set(k, loop);
    }
    return loop;
  }

  /**
   * Lets go of a loop whose drain found nothing more to do: an idle, sleeping or stopped agent holds
   * no loop objects (the next signal makes a new one), so a node can hold many agents that wait.
   */
  private passivate(k: string, loop: AgentLoop): void {
    if (this.loops.get(k) === loop && !loop.busy) {
      this.loops.delete(k);
      void loop.close();
    }
  }

  private async backstop(): Promise<void> {
    if (this.closed) {
      return;
    }
    try {
      await this.recoverOrphans();
      for (const { sessionId, agentId } of await this.db.read((tx) => this.items.listClaimable(tx))) {
        if (this.leases.isServing(sessionId)) {
          this.loopFor(sessionId, agentId).signal();
        }
      }
      await this.pruneLoops();
    } catch (err) {
      this.logger.debug(`Backstop poll skipped: ${String(err)}`);
    }
  }

  /** Lets go of the loops of stopped agents and of sessions this node no longer runs. */
  private async pruneLoops(): Promise<void> {
    if (this.loops.size === 0) {
      return;
    }
    // Only the agents that have a loop: the node may hold many more that wait.
    const keys = [...this.loops.keys()].map((k) => ({ sessionId: sessionOf(k), agentId: agentOf(k) }));
    const live = new Set(
      (await this.db.read((tx) => this.agents.listLiveAmong(tx, keys))).map((a) =>
        key(a.sessionId, a.agentId),
      ),
    );
    for (const [k, loop] of this.loops) {
      if ((!live.has(k) || !this.leases.isServing(sessionOf(k))) && !loop.busy) {
        this.loops.delete(k);
        void loop.close();
      }
    }
  }

  /**
   * A session's takeover: items its previous owner left `running` go back to the queue (or fail,
   * after too many tries: a poison item must not crash-loop the cluster), and agents it left active
   * or waiting become idle.
   */
  private recoverSession(sessionId: string, running: WorkItem[]): Promise<void> {
    return this.history.inSession(
      sessionId,
      async (tx) => {
        for (const item of running.filter((i) => i.sessionId === sessionId)) {
          await this.putBack(tx, item);
        }
        for (const agent of await this.agents.listBySession(tx, sessionId)) {
          if (agent.state === 'active' || agent.state === 'waiting') {
            await this.lifecycle.transition(tx, agent, 'idle', 'recovered', { waitingOn: null });
          } else if (agent.waitingOn) {
            await this.agents.update(tx, sessionId, agent.agentId, { waitingOn: null });
          }
        }
      },
      { owner: true },
    );
  }

  /** Items of this node's sessions whose loop lost the database mid-item: put back once it answers again. */
  private async recoverOrphans(): Promise<void> {
    const running = await this.db.read((tx) => this.items.listRunning(tx, this.leases.served()));
    // An item running with no busy loop here was left by a loop that lost the database (and was let go).
    const inHand = (item: WorkItem) => this.loops.get(key(item.sessionId, item.agentId))?.busy === true;
    for (const item of running) {
      if (inHand(item) || !this.leases.isServing(item.sessionId)) {
        continue;
      }
      await this.history.inSession(
        item.sessionId,
        async (tx) => {
          // Checked again under the session lock: a loop may have claimed since the list was read.
          if (inHand(item) || !(await this.putBack(tx, item))) {
            return;
          }
          const agent = await this.agents.find(tx, item.sessionId, item.agentId);
          if (agent && (agent.state === 'active' || agent.state === 'waiting')) {
            await this.lifecycle.transition(tx, agent, 'idle', 'recovered', { waitingOn: null });
          }
        },
        { owner: true },
      );
    }
  }

  /**
   * Returns an interrupted item to the queue, or fails it once it has been claimed MAX_ATTEMPTS
   * times: a poison item must not loop forever. False when it was no longer running.
   */
  private async putBack(tx: Tx, item: WorkItem): Promise<boolean> {
    if (item.attempts < this.config.maxAttempts) {
      return this.items.requeue(tx, item.taskId);
    }
    return this.worker.markFailed(tx, item, {
      code: 'interrupted',
      message: `interrupted ${item.attempts} times; giving up`,
    });
  }
}

const BACKSTOP = 'agent-runtime-backstop';

const key = (sessionId: string, agentId: string) => `${sessionId}\u0000${agentId}`;
const sessionOf = (k: string) => k.slice(0, k.indexOf('\u0000'));
const agentOf = (k: string) => k.slice(k.indexOf('\u0000') + 1);

import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { Subscription } from 'rxjs';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';
import { AgentSignal, AgentSignals } from 'src/mailbox/agent-signals';
import { WorkItem } from 'src/mailbox/mailbox.types';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryService } from 'src/sessions/history.service';
import { detached, inWorkItemSpan } from 'src/telemetry/tracing';
import { AgentLifecycleService } from '../agent-lifecycle.service';
import { AgentRepository } from '../agent.repository';
import { AgentLoop } from './agent-loop';
import { AgentWorker } from './agent-worker.service';

/**
 * Runs every agent's loop in this process. Loops are made on demand from signals; at boot the
 * runtime first puts back work that a dead process left running, then wakes every live agent. A
 * slow poll is the backstop for a lost signal.
 */
@Injectable()
export class AgentRuntimeService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(AgentRuntimeService.name);
  private readonly loops = new Map<string, AgentLoop>();
  private subscription?: Subscription;
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
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.recover();
    this.subscription = this.signals.signals$.subscribe((s) => this.onSignal(s));
    for (const agent of await this.db.read((tx) => this.agents.listLive(tx))) {
      this.loopFor(agent.sessionId, agent.agentId).signal();
    }
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
    this.subscription?.unsubscribe();
    await Promise.all([...this.loops.values()].map((l) => l.close()));
    this.loops.clear();
  }

  /** The agents this node runs a loop for now (made on a signal, let go once the agent is stopped). */
  get ownedAgents(): number {
    return this.loops.size;
  }

  private onSignal(signal: AgentSignal): void {
    if (signal.type === 'abort') {
      this.loops.get(key(signal.sessionId, signal.agentId))?.abort(signal.taskId);
    } else {
      this.loopFor(signal.sessionId, signal.agentId).signal();
    }
  }

  private loopFor(sessionId: string, agentId: string): AgentLoop {
    const k = key(sessionId, agentId);
    let loop = this.loops.get(k);
    if (!loop) {
      loop = new AgentLoop(
        `${sessionId}/${agentId}`,
        // Detached: the loop runs in the async context of the signal that woke it, not of its sender.
        (signal, onClaim) =>
          detached(async () => {
            const claimed = await this.worker.claim(sessionId, agentId);
            if (!claimed) {
              return false;
            }
            onClaim(claimed.item.taskId);
            await inWorkItemSpan(claimed.item, () =>
              this.worker.process(claimed.agent, claimed.item, signal),
            );
            return true;
          }),
        this.logger,
      );
      this.loops.set(k, loop);
    }
    return loop;
  }

  private async backstop(): Promise<void> {
    if (this.closed) {
      return;
    }
    try {
      await this.recoverOrphans();
      for (const { sessionId, agentId } of await this.db.read((tx) => this.items.listClaimable(tx))) {
        this.loopFor(sessionId, agentId).signal();
      }
      await this.pruneLoops();
    } catch (err) {
      this.logger.debug(`Backstop poll skipped: ${String(err)}`);
    }
  }

  /** Lets go of the loops of stopped agents (a signal makes a new one when they start again). */
  private async pruneLoops(): Promise<void> {
    const live = new Set(
      (await this.db.read((tx) => this.agents.listLive(tx))).map((a) => key(a.sessionId, a.agentId)),
    );
    for (const [k, loop] of this.loops) {
      if (!live.has(k) && !loop.busy) {
        this.loops.delete(k);
        void loop.close();
      }
    }
  }

  /**
   * Items a dead process left `running` go back to the queue (or fail, after too many tries: a
   * poison item must not crash-loop the server), and agents it left active or waiting become idle.
   */
  private async recover(): Promise<void> {
    const running = await this.db.read((tx) => this.items.listRunning(tx));
    const sessions = new Set(running.map((i) => i.sessionId));
    for (const a of await this.db.read((tx) => this.agents.listLive(tx))) {
      if (a.state === 'active' || a.state === 'waiting') {
        sessions.add(a.sessionId);
      }
    }
    for (const sessionId of sessions) {
      await this.history.inSession(sessionId, async (tx) => {
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
      });
    }
    if (running.length > 0) {
      this.logger.log(`Recovered ${running.length} interrupted work item(s)`);
    }
  }

  /** Items whose loop lost the database mid-item: put back once it answers again. */
  private async recoverOrphans(): Promise<void> {
    const running = await this.db.read((tx) => this.items.listRunning(tx));
    for (const item of running) {
      const loop = this.loops.get(key(item.sessionId, item.agentId));
      if (!loop || loop.busy) {
        continue;
      }
      await this.history.inSession(item.sessionId, async (tx) => {
        // Checked again under the session lock: the loop may have claimed since the list was read.
        if (loop.busy || !(await this.putBack(tx, item))) {
          return;
        }
        const agent = await this.agents.find(tx, item.sessionId, item.agentId);
        if (agent && (agent.state === 'active' || agent.state === 'waiting')) {
          await this.lifecycle.transition(tx, agent, 'idle', 'recovered', { waitingOn: null });
        }
      });
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

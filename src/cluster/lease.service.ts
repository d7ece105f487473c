import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  Logger,
  OnApplicationBootstrap,
  OnModuleDestroy,
} from '@nestjs/common';
import { Subscription } from 'rxjs';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService, Tx } from 'src/database/database.service';
import { ClusterHints } from './cluster-hints.service';
import { SessionOwner } from './cluster.types';
import { Lease, LeaseRepository } from './lease.repository';
import { NodeIdentity } from './node-identity';

type Holding = { epoch: number; state: 'adopting' | 'owned' | 'releasing' };

/**
 * Which sessions this node owns. Every third of the TTL it beats its heart, renews its leases,
 * notices the ones it lost, and moves toward its fair share (sessions / live nodes): it claims
 * free or expired leases when under it, and hands idle sessions back when over it. A lease taken
 * over is adopted (the registered {@link SessionOwner}s run the session's recovery) before the node
 * serves it. On shutdown every lease is handed back at once, so another node takes it within a moment.
 *
 * Embedded (PGlite) there is one process: its leases never expire and it owns every session.
 */
@Injectable()
export class LeaseService implements OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(LeaseService.name);
  private readonly held = new Map<string, Holding>();
  private readonly owners: SessionOwner[] = [];
  private readonly refused = new Set<string>();
  /** null: leases that never expire (embedded). */
  private readonly ttl: number | null;
  private interval?: NodeJS.Timeout;
  private subscriptions: Subscription[] = [];
  private ticking?: Promise<void>;
  private again = false;
  /** Shutting down: no new sessions taken up, but the held ones are still renewed while loops finish. */
  private stopping = false;
  private closed = false;

  constructor(
    private readonly db: DatabaseService,
    private readonly repo: LeaseRepository,
    private readonly hints: ClusterHints,
    private readonly node: NodeIdentity,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.ttl = db.embedded ? null : config.leaseTtlMs;
  }

  /** Registers per-session state to build on takeover and tear down on release; call from onModuleInit. */
  register(owner: SessionOwner): void {
    this.owners.push(owner);
  }

  get nodeId(): string {
    return this.node.id;
  }

  /** True when this node owns the session and has finished taking it over: its loops may work. */
  isServing(sessionId: string): boolean {
    return this.held.get(sessionId)?.state === 'owned';
  }

  served(): string[] {
    return [...this.held].filter(([, h]) => h.state === 'owned').map(([id]) => id);
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.db.embedded) {
      await this.db.transaction((tx) => this.repo.forgetOtherNodes(tx, this.node.id));
    }
    this.subscriptions = [
      this.hints.leases$.subscribe(() => void this.requestTick()),
      this.hints.reconnected$.subscribe(() => void this.requestTick()),
    ];
    await this.requestTick();
    this.interval = setInterval(() => void this.requestTick(), Math.floor(this.config.leaseTtlMs / 3));
    this.interval.unref();
    this.logger.log(`Node ${this.node.id} owns ${this.held.size} session(s)`);
  }

  onModuleDestroy(): void {
    this.stopping = true;
    this.subscriptions.forEach((s) => s.unsubscribe());
  }

  /** After every loop has put its work back: hands every lease back and leaves the cluster. */
  async beforeApplicationShutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.interval);
    await this.ticking;
    try {
      await this.letGo([...this.held.keys()], 'shutdown');
      const released = await this.db.transaction(async (tx) => {
        const n = await this.repo.releaseAll(tx, this.node.id);
        await this.repo.removeNode(tx, this.node.id);
        await this.hints.notifyLeases(tx);
        return n;
      });
      if (released > 0) {
        this.logger.log(`Handed back ${released} session lease(s)`);
      }
    } catch (err) {
      this.logger.warn(`Could not hand the leases back (${String(err)}); they expire on their own`);
    }
    this.held.clear();
  }

  /**
   * The fence of a transaction made as the session's owner: this node and its epoch for the
   * session, which the transaction's last statement checks (HistoryRepository.close, as
   * LeaseRepository.holds does), so that nothing commits unless this node still holds the lease at
   * its epoch. Undefined when it holds no lease on the session: the write is refused.
   */
  fenceOf(sessionId: string): { nodeId: string; epoch: number } | undefined {
    const holding = this.held.get(sessionId);
    return holding && { nodeId: this.node.id, epoch: holding.epoch };
  }

  /**
   * True after a folded fence of the session failed, until one passes: its writes should do no owner
   * work on the way (a hand-off), since the batch that runs them again would be refused again.
   */
  fenceInDoubt(sessionId: string): boolean {
    return this.refused.has(sessionId);
  }

  /** A folded fence passed. */
  fenceHeld(sessionId: string): void {
    this.refused.delete(sessionId);
  }

  /** A folded fence failed: the error to throw (nothing commits). */
  fenceRefused(sessionId: string): RpcError {
    const holding = this.held.get(sessionId);
    if (!this.refused.has(sessionId)) {
      this.refused.add(sessionId);
      this.logger.warn(
        `Refused a write for session ${sessionId}: this node no longer holds its lease${holding ? ` (epoch ${holding.epoch})` : ''}`,
      );
    }
    // A tick now tells a lost lease from one that only ran out.
    void this.requestTick();
    return new RpcError('unavailable', `This node no longer owns session '${sessionId}'; retry`);
  }

  /** Gives a session created in `tx` to the live node with the fewest sessions. */
  async assign(tx: Tx, sessionId: string): Promise<void> {
    const got = await this.repo.assign(tx, sessionId, this.ttl, this.config.leaseTtlMs, this.node.id);
    if (!got) {
      return;
    }
    if (got.owner === this.node.id) {
      // A new session has nothing to recover: served at once.
      this.db.afterCommit(tx, () => {
        if (!this.stopping && !this.held.has(sessionId)) {
          this.held.set(sessionId, { epoch: got.epoch, state: 'owned' });
          this.logger.debug(`lease ${sessionId} epoch ${got.epoch} began (new session)`);
        }
      });
    } else {
      await this.hints.notifyLeases(tx, got.owner);
    }
  }

  /** Runs a tick now (or right after the one in progress). */
  requestTick(): Promise<void> {
    if (this.closed) {
      return Promise.resolve();
    }
    if (this.ticking) {
      this.again = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      try {
        do {
          this.again = false;
          await this.tick().catch((err: unknown) => this.logger.warn(`Lease tick failed: ${String(err)}`));
        } while (this.again && !this.closed);
      } finally {
        this.ticking = undefined;
      }
    })();
    return this.ticking;
  }

  private async tick(): Promise<void> {
    const before = new Map(this.held);
    // On a connection of its own: a pool busy with this node's session work must not let the lease lapse.
    const renewed = await this.db.transactionAside(async (tx) => {
      await this.repo.heartbeat(tx, this.node.id);
      if (!this.db.embedded) {
        await this.repo.forgetNodes(tx, this.config.leaseTtlMs * 10);
      }
      return this.repo.renew(tx, this.node.id, this.ttl);
    });
    const epochs = new Map(renewed.map((l) => [l.sessionId, l.epoch]));
    const lost = [...before].filter(([id, h]) => epochs.get(id) !== h.epoch && this.held.get(id) === h);
    if (lost.length > 0) {
      this.logger.warn(
        `Lost the lease of ${lost.length} session(s) to another node (${lost
          .slice(0, 5)
          .map(([id]) => id)
          .join(', ')}${lost.length > 5 ? ', …' : ''}): closing their loops`,
      );
      await this.letGo(
        lost.map(([id]) => id),
        'lost',
      );
    }
    const unknown = renewed.filter((l) => !this.held.has(l.sessionId)).map((l) => l.sessionId);
    if (unknown.length > 0 && !this.stopping) {
      await this.adopt(await this.db.transaction((tx) => this.repo.takeUp(tx, this.node.id, unknown)));
    }
    if (this.stopping) {
      return;
    }
    const census = await this.db.read((tx) => this.repo.census(tx, this.config.leaseTtlMs));
    this.hints.noteCensus(census.nodes);
    const nodes = this.db.embedded ? 1 : Math.max(1, census.nodes);
    const share = Math.ceil(census.sessions / nodes);
    const mine = this.held.size;
    if (mine < share) {
      const claimed = await this.db.transaction((tx) =>
        this.repo.claim(tx, this.node.id, this.ttl, share - mine, this.db.embedded),
      );
      if (claimed.length > 0) {
        this.logger.log(`Took over ${claimed.length} session(s)`);
      }
      await this.adopt(claimed);
    } else if (mine > share && nodes > 1) {
      await this.shed(mine - share);
    }
  }

  /** Hands back up to `n` sessions that have no work in hand here (busy ones wait for a later tick). */
  private async shed(n: number): Promise<void> {
    const idle = this.served()
      .filter((id) => !this.owners.some((o) => o.busy?.(id)))
      .slice(0, n);
    if (idle.length === 0) {
      return;
    }
    const leases = this.leases(idle);
    await this.letGo(idle, 'handed back');
    await this.db.transaction(async (tx) => {
      await this.repo.release(tx, this.node.id, leases);
      await this.hints.notifyLeases(tx);
    });
    this.logger.log(`Handed ${idle.length} session(s) back for a newer node's fair share`);
  }

  private async adopt(leases: Lease[]): Promise<void> {
    if (leases.length === 0 || this.stopping) {
      return;
    }
    const ids = leases.map((l) => l.sessionId);
    for (const l of leases) {
      this.held.set(l.sessionId, { epoch: l.epoch, state: 'adopting' });
    }
    try {
      for (const owner of this.owners) {
        await owner.adopt?.(ids);
      }
    } catch (err) {
      this.logger.warn(`Taking over ${ids.length} session(s) failed (${String(err)}); handing them back`);
      ids.forEach((id) => this.held.delete(id));
      await this.db.transaction((tx) => this.repo.release(tx, this.node.id, leases)).catch(() => undefined); // they expire on their own
      return;
    }
    for (const l of leases) {
      const h = this.held.get(l.sessionId);
      if (h?.state === 'adopting' && h.epoch === l.epoch) {
        h.state = 'owned';
        this.logger.debug(`lease ${l.sessionId} epoch ${l.epoch} began`);
      }
    }
    for (const owner of this.owners) {
      await owner
        .serve?.(ids)
        .catch((err: unknown) => this.logger.warn(`Serving sessions failed: ${String(err)}`));
    }
  }

  /** Stops serving the sessions and lets every owner tear down their state; the lease rows are the caller's. */
  private async letGo(ids: string[], why: 'shutdown' | 'lost' | 'handed back'): Promise<void> {
    if (ids.length === 0) {
      return;
    }
    for (const id of ids) {
      const h = this.held.get(id);
      if (h) {
        h.state = 'releasing';
      }
    }
    for (const owner of this.owners) {
      await owner
        .release?.(ids)
        .catch((err: unknown) => this.logger.warn(`Releasing sessions failed: ${String(err)}`));
    }
    for (const id of ids) {
      // One line per ownership interval's end (LOG_LEVEL=debug): what a fault test checks for overlaps.
      this.logger.debug(`lease ${id} epoch ${this.held.get(id)?.epoch} ended (${why})`);
      this.held.delete(id);
    }
  }

  private leases(ids: string[]): Lease[] {
    return ids.flatMap((id) => {
      const h = this.held.get(id);
      return h ? [{ sessionId: id, epoch: h.epoch }] : [];
    });
  }
}

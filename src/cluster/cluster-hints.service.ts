import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { Observable, Subject } from 'rxjs';
import { APP_CONFIG } from 'src/config/config.module';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';
import { query } from 'src/database/sql';
import { ClusterListener } from './cluster-listener';
import { chunkText } from './chunk-text';
import {
  CLUSTER_CHANNEL,
  ClusterMessage,
  EphemeralPush,
  MAX_NOTIFY_BYTES,
  SessionHint,
} from './cluster.types';
import { NodeIdentity } from './node-identity';

/**
 * Cross-node hints over LISTEN/NOTIFY. A session transaction gathers what it changed
 * ({@link add}) and sends it as one NOTIFY just before it commits ({@link flush}); Postgres delivers
 * it on commit, never on rollback. Hints are ids only and may be lost (a dropped LISTEN
 * connection): every receiver treats them as "look now", and the backstop poll looks anyway.
 * On the embedded database there is one node: nothing is sent, in-process delivery is all.
 */
@Injectable()
export class ClusterHints implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(ClusterHints.name);
  /** Per transaction, a hint per session it changed (a batch of writes may span sessions). */
  private readonly pending = new WeakMap<Tx, Map<string, SessionHint>>();
  /** The agents already in a pending hint's `work`: a broadcast adds thousands, each once. */
  private readonly working = new WeakMap<SessionHint, Set<string>>();
  private readonly sessions = new Subject<SessionHint>();
  private readonly leases = new Subject<{ to?: string }>();
  private readonly reconnects = new Subject<void>();
  private readonly pushes = new Subject<EphemeralPush>();
  private listener?: ClusterListener;
  /** Hints from the other nodes about sessions (this node's own changes are delivered in-process). */
  readonly remote$: Observable<SessionHint> = this.sessions.asObservable();
  /** Another node handed leases back or gave this node one. */
  readonly leases$: Observable<{ to?: string }> = this.leases.asObservable();
  /** The LISTEN connection came back after a drop: hints may have been missed. */
  readonly reconnected$: Observable<void> = this.reconnects.asObservable();
  /** Ephemeral pushes made on the other nodes, for this node's subscribers. */
  readonly ephemeral$: Observable<EphemeralPush> = this.pushes.asObservable();
  readonly enabled: boolean;
  /** Whether another node may be listening; assumed until a census says this node is alone. */
  private othersLive = true;

  constructor(
    private readonly db: DatabaseService,
    private readonly node: NodeIdentity,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {
    this.enabled = !db.embedded;
  }

  async onModuleInit(): Promise<void> {
    if (this.enabled && this.config.databaseUrl) {
      this.listener = new ClusterListener(
        this.config.databaseUrl,
        CLUSTER_CHANNEL,
        (payload) => this.receive(payload),
        () => this.reconnects.next(),
      );
      await this.listener.start();
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.listener?.close();
  }

  /** Notes a change of `sessionId` made in `tx`, for the other nodes. */
  add(tx: Tx, sessionId: string, change: Omit<SessionHint, 'sessionId'>): void {
    if (!this.enabled) {
      return;
    }
    let hints = this.pending.get(tx);
    if (!hints) {
      hints = new Map();
      this.pending.set(tx, hints);
    }
    let hint = hints.get(sessionId);
    if (!hint) {
      hint = { sessionId };
      hints.set(sessionId, hint);
    }
    if (change.seq) {
      hint.seq = hint.seq
        ? [Math.min(hint.seq[0], change.seq[0]), Math.max(hint.seq[1], change.seq[1])]
        : change.seq;
    }
    if (change.work?.length) {
      const work = (hint.work ??= []);
      let seen = this.working.get(hint);
      if (!seen) {
        seen = new Set(work);
        this.working.set(hint, seen);
      }
      for (const agentId of change.work) {
        if (!seen.has(agentId)) {
          seen.add(agentId);
          work.push(agentId);
        }
      }
    }
    hint.allAgents ||= change.allAgents;
    hint.timers ||= change.timers;
    if (change.abort) {
      (hint.abort ??= []).push(...change.abort);
    }
    if (change.settle) {
      (hint.settle ??= []).push(...change.settle);
    }
  }

  /** Sends what `tx` gathered, one NOTIFY per session, inside `tx` (so it is delivered only if `tx` commits). */
  async flush(tx: Tx): Promise<void> {
    for (const sessionId of [...(this.pending.get(tx)?.keys() ?? [])]) {
      await query(tx, `SELECT pg_notify($1, $2)`, [CLUSTER_CHANNEL, this.take(tx, sessionId)]);
    }
  }

  /**
   * What {@link flush} would send, for a caller that folds the NOTIFY into a statement of its own
   * (on {@link CLUSTER_CHANNEL}); undefined when `tx` gathered nothing for the session. The hint is taken.
   */
  take(tx: Tx, sessionId: string): string | undefined {
    const hint = this.pending.get(tx)?.get(sessionId);
    if (!hint) {
      return undefined;
    }
    this.pending.get(tx)!.delete(sessionId);
    return this.payloadOf({ t: 'session', o: this.node.id, ...hint });
  }

  /**
   * The lease census's count of live nodes (this one included). While this node is alone its
   * ephemeral pushes are not sent: a NOTIFY outside a transaction is a commit of its own, and
   * nobody would hear it. A node that joins is heard from by its first hint, or counted by the
   * next census (a lease tick), whichever comes first; streamed text is at most once anyway.
   */
  noteCensus(liveNodes: number): void {
    this.othersLive = liveNodes > 1;
  }

  /** Tells the other nodes that leases changed hands (to `to`, or handed back for anyone). */
  async notifyLeases(tx: Tx, to?: string): Promise<void> {
    if (this.enabled) {
      await this.notify(tx, { t: 'leases', o: this.node.id, ...(to ? { to } : {}) });
    }
  }

  /**
   * Sends a push that has no history row (e.g. `async.task.output`) to the other nodes, at once and
   * outside any transaction. A `delta` too long for one NOTIFY goes as several consecutive pushes.
   */
  async sendEphemeral(push: EphemeralPush): Promise<void> {
    if (!this.enabled || !this.othersLive) {
      return;
    }
    const { delta, ...rest } = push.payload;
    const envelope = { t: 'push' as const, o: this.node.id, sessionId: push.sessionId, type: push.type };
    const pieces =
      typeof delta === 'string'
        ? chunkText(
            delta,
            MAX_NOTIFY_BYTES -
              Buffer.byteLength(JSON.stringify({ ...envelope, payload: { ...rest, delta: '' } })),
          ).map((d) => ({ ...rest, delta: d }))
        : [push.payload];
    await this.db.read(async (tx) => {
      for (const payload of pieces) {
        await query(tx, `SELECT pg_notify($1, $2)`, [
          CLUSTER_CHANNEL,
          JSON.stringify({ ...envelope, payload }),
        ]);
      }
    });
  }

  private async notify(tx: Tx, message: ClusterMessage): Promise<void> {
    await query(tx, `SELECT pg_notify($1, $2)`, [CLUSTER_CHANNEL, this.payloadOf(message)]);
  }

  private payloadOf(message: ClusterMessage): string {
    const payload = JSON.stringify(message);
    if (Buffer.byteLength(payload) > MAX_NOTIFY_BYTES && message.t === 'session') {
      // Too big to list: the owner looks at the whole session (its live agents, stops, cancellations).
      const { o, sessionId, seq, timers } = message;
      return JSON.stringify({ t: 'session', o, sessionId, seq, timers, allAgents: true });
    }
    return payload;
  }

  private receive(payload: string): void {
    let message: ClusterMessage;
    try {
      message = JSON.parse(payload) as ClusterMessage;
    } catch {
      this.logger.warn(`Unreadable cluster hint: ${payload.slice(0, 80)}`);
      return;
    }
    if (message.o === this.node.id) {
      return; // delivered in-process already
    }
    this.othersLive = true;
    if (message.t === 'session') {
      const { t: _t, o: _o, ...hint } = message;
      this.sessions.next(hint);
    } else if (message.t === 'push') {
      this.pushes.next({ sessionId: message.sessionId, type: message.type, payload: message.payload });
    } else if (message.t === 'leases' && (message.to === undefined || message.to === this.node.id)) {
      this.leases.next({ to: message.to });
    }
  }
}

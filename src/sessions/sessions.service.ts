import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { LeaseService } from 'src/cluster/lease.service';
import { CLOCK, Clock } from 'src/common/clock';
import { RpcError } from 'src/common/rpc-error';
import { DatabaseService } from 'src/database/database.service';
import { SessionRepository } from './session.repository';
import { Session } from './session.types';

@Injectable()
export class SessionsService {
  constructor(
    private readonly db: DatabaseService,
    private readonly sessions: SessionRepository,
    private readonly leases: LeaseService,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /**
   * Creates the session, owned by `owner`, or returns the existing one unchanged (starting twice
   * is a no-op). Another owner's session id is taken: `conflict`.
   */
  async start(
    input: { sessionId?: string; metadata?: Record<string, unknown>; limits?: { maxTokens?: number } },
    owner: string = OPEN_OWNER,
  ): Promise<Session> {
    const sessionId = input.sessionId ?? `session-${randomUUID()}`;
    const { session } = await this.db.transaction(async (tx) => {
      const upserted = await this.sessions.upsert(tx, {
        sessionId,
        owner,
        metadata: input.metadata ?? {},
        limits: input.limits ?? {},
        at: new Date(this.clock.now()).toISOString(),
      });
      if (upserted.created) {
        await this.leases.assign(tx, sessionId); // the live node with the fewest sessions runs it
      }
      return upserted;
    });
    if (!isVisible(session, owner)) {
      throw new RpcError('conflict', `Session id '${sessionId}' is taken`);
    }
    return session;
  }

  /** `session_not_found` unless the session exists and `principal` may see it. */
  async assertVisible(sessionId: string, principal: string): Promise<void> {
    const session = await this.db.read((tx) => this.sessions.find(tx, sessionId));
    if (!session || !isVisible(session, principal)) {
      throw RpcError.sessionNotFound(sessionId);
    }
  }

  async get(sessionId: string): Promise<Session> {
    const session = await this.db.read((tx) => this.sessions.find(tx, sessionId));
    if (!session) {
      throw RpcError.sessionNotFound(sessionId);
    }
    return session;
  }

  /** Every session with its agent count and the tokens its agents have spent. */
  list(
    visibleTo?: string,
  ): Promise<Array<{ sessionId: string; createdAt: string; agentCount: number; tokensUsed: number }>> {
    return this.db.read((tx) => this.sessions.list(tx, visibleTo === OPEN_OWNER ? undefined : visibleTo));
  }
}

/** The owner of sessions started while the server had no tokens: every caller may see them. */
export const OPEN_OWNER = 'open';

function isVisible(session: Session, principal: string): boolean {
  return (
    principal === OPEN_OWNER ||
    session.owner === null ||
    session.owner === OPEN_OWNER ||
    session.owner === principal
  );
}

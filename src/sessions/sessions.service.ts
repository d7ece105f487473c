import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
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
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /** Creates the session, or returns the existing one unchanged (starting twice is a no-op). */
  async start(input: {
    sessionId?: string;
    metadata?: Record<string, unknown>;
    limits?: { maxTokens?: number };
  }): Promise<Session> {
    const sessionId = input.sessionId ?? `session-${randomUUID()}`;
    const { session } = await this.db.transaction((tx) =>
      this.sessions.upsert(tx, {
        sessionId,
        metadata: input.metadata ?? {},
        limits: input.limits ?? {},
        at: new Date(this.clock.now()).toISOString(),
      }),
    );
    return session;
  }

  async get(sessionId: string): Promise<Session> {
    const session = await this.db.read((tx) => this.sessions.find(tx, sessionId));
    if (!session) {
      throw RpcError.sessionNotFound(sessionId);
    }
    return session;
  }

  /** Every session with its agent count and the tokens its agents have spent. */
  list(): Promise<Array<{ sessionId: string; createdAt: string; agentCount: number; tokensUsed: number }>> {
    return this.db.read((tx) => this.sessions.list(tx));
  }
}

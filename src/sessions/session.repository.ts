import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { iso, json, num, query, queryOne, Statement } from 'src/database/sql';
import { Session } from './session.types';

interface SessionRow {
  id: string;
  owner: string | null;
  metadata: Record<string, unknown>;
  limits: { maxTokens?: number };
  tokens_used: number | string;
  created_at: Date | string;
  stopped_at: Date | string | null;
}

/** A session row locked by {@link SessionRepository.lockAll}, with its history's last `seq`. */
export interface LockedSession {
  session: Session;
  historySeq: number;
}

const toSession = (r: SessionRow): Session => ({
  sessionId: r.id,
  owner: r.owner,
  createdAt: iso(r.created_at)!,
  metadata: r.metadata,
  limits: r.limits,
  tokensUsed: num(r.tokens_used),
  stoppedAt: iso(r.stopped_at),
});

@Injectable()
export class SessionRepository {
  /** Inserts the session unless it exists; returns the row either way and whether it was created. */
  async upsert(
    tx: Tx,
    s: {
      sessionId: string;
      owner?: string;
      metadata: Record<string, unknown>;
      limits: { maxTokens?: number };
      at: string;
    },
  ): Promise<{ session: Session; created: boolean }> {
    const inserted = await queryOne<SessionRow>(
      tx,
      `INSERT INTO session (id, owner, metadata, limits, created_at)
       VALUES ($1, $2, $3::jsonb, $4::jsonb, $5::timestamptz)
       ON CONFLICT (id) DO NOTHING RETURNING *`,
      [s.sessionId, s.owner ?? 'open', json(s.metadata), json(s.limits), s.at],
    );
    if (inserted) {
      return { session: toSession(inserted), created: true };
    }
    return { session: (await this.find(tx, s.sessionId))!, created: false };
  }

  async find(tx: Tx, sessionId: string): Promise<Session | undefined> {
    const row = await queryOne<SessionRow>(tx, `SELECT * FROM session WHERE id = $1`, [sessionId]);
    return row && toSession(row);
  }

  /**
   * Locks the rows of these sessions for the transaction, in id order (the one lock order of every
   * node, so two batches never deadlock); each with its history's last `seq`. Missing ones are absent.
   */
  async lockAll(tx: Tx, sessionIds: string[]): Promise<Map<string, LockedSession>> {
    const statement = this.lockAllStatement(sessionIds);
    return statement.result(await query(tx, statement.text, statement.params));
  }

  /** {@link lockAll} as a statement, for a transaction that opens with it (DatabaseService.transactionFused). */
  lockAllStatement(sessionIds: string[]): Statement<Map<string, LockedSession>> {
    return {
      text: `SELECT * FROM session WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`,
      params: [sessionIds],
      result: (rows) =>
        new Map(
          (rows as Array<SessionRow & { history_seq: number | string }>).map((r) => [
            r.id,
            { session: toSession(r), historySeq: num(r.history_seq) },
          ]),
        ),
    };
  }

  /** Every session `visibleTo` may see (all of them when undefined). */
  async list(
    tx: Tx,
    visibleTo?: string,
  ): Promise<Array<{ sessionId: string; createdAt: string; agentCount: number; tokensUsed: number }>> {
    const rows = await query<{
      id: string;
      created_at: Date;
      agent_count: number | string;
      tokens_used: number | string;
    }>(
      tx,
      `SELECT s.id, s.created_at, s.tokens_used,
              (SELECT count(*) FROM agent a WHERE a.session_id = s.id)::int AS agent_count
       FROM session s
       WHERE $1::text IS NULL OR s.owner IS NULL OR s.owner = 'open' OR s.owner = $1
       ORDER BY s.created_at, s.id`,
      [visibleTo ?? null],
    );
    return rows.map((r) => ({
      sessionId: r.id,
      createdAt: iso(r.created_at)!,
      agentCount: num(r.agent_count),
      tokensUsed: num(r.tokens_used),
    }));
  }

  async markStopped(tx: Tx, sessionId: string, at: string): Promise<void> {
    await query(tx, `UPDATE session SET stopped_at = $2::timestamptz WHERE id = $1`, [sessionId, at]);
  }

  async addTokens(tx: Tx, sessionId: string, tokens: number): Promise<number> {
    const row = await queryOne<{ tokens_used: number | string }>(
      tx,
      `UPDATE session SET tokens_used = tokens_used + $2 WHERE id = $1 RETURNING tokens_used`,
      [sessionId, tokens],
    );
    return num(row?.tokens_used);
  }
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { elementsOf, iso, json, query, queryAndCommit, queryOne } from 'src/database/sql';
import { HistoryRecord, NotificationType } from './session.types';

interface HistoryRow {
  session_id: string;
  seq: number;
  at: Date | string;
  type: NotificationType;
  payload: Record<string, unknown>;
}

const toRecord = (r: HistoryRow): HistoryRecord => ({
  sessionId: r.session_id,
  seq: Number(r.seq),
  at: iso(r.at)!,
  type: r.type,
  payload: r.payload,
});

/** A session's part of a batch's closing statement (see {@link HistoryRepository.close}). */
export interface SessionClosing {
  sessionId: string;
  records: HistoryRecord[];
  /** The owner's lease, when the batch holds owner writes to the session. */
  fence?: { nodeId: string; epoch: number };
  /** The NOTIFY payload telling other nodes what changed. */
  notice?: string;
}

/** The sessions a closing statement's refusal names (see the fence-refusal migration), if it is one. */
function fenceRefusal(err: unknown): string[] | undefined {
  const e = err as { code?: unknown; detail?: unknown; driverError?: { code?: unknown; detail?: unknown } };
  const { code, detail } = e.driverError ?? e;
  return code === 'MRF01' && typeof detail === 'string' ? (JSON.parse(detail) as string[]) : undefined;
}

@Injectable()
export class HistoryRepository {
  /**
   * Takes the session's next sequence number and writes the record. The counter lives on the
   * session row, so a rolled-back transaction gives its number back: the log has no gaps.
   */
  async append(
    tx: Tx,
    sessionId: string,
    type: NotificationType,
    payload: Record<string, unknown>,
    at: string,
  ): Promise<HistoryRecord> {
    const next = await queryOne<{ history_seq: number }>(
      tx,
      `UPDATE session SET history_seq = history_seq + 1 WHERE id = $1 RETURNING history_seq`,
      [sessionId],
    );
    if (!next) {
      throw new Error(`append to the history of a missing session '${sessionId}'`);
    }
    const row = await queryOne<HistoryRow>(
      tx,
      `INSERT INTO history (session_id, seq, at, type, payload) VALUES ($1, $2, $3::timestamptz, $4, $5::jsonb) RETURNING *`,
      [sessionId, next.history_seq, at, type, json(payload)],
    );
    return toRecord(row!);
  }

  /**
   * The last statement of a batch (see HistoryService), for each of its sessions: writes the
   * session's records (their `seq`s taken under the session's lock) with the counter they leave,
   * checks the lease fence of an owner's writes (`session_lease` held by `fence`'s node at its epoch
   * and not run out, share-locked until commit, so a takeover waits for this commit;
   * LeaseRepository.holds is the same check) and sends its NOTIFY on `channel`, all in one round
   * trip; in a fused transaction the `COMMIT` goes with it (see sql.ts `queryAndCommit`): nothing may
   * follow it. When a fence does not hold, the statement fails (so no `COMMIT` runs) and this returns
   * the refused sessions: the transaction has failed and must roll back.
   */
  async close(tx: Tx, closings: SessionClosing[], channel: string): Promise<string[]> {
    const { text, params } = this.closeStatement(closings, channel);
    try {
      await queryAndCommit(tx, text, params);
    } catch (err) {
      const refused = fenceRefusal(err);
      if (refused) {
        return refused;
      }
      throw err;
    }
    return [];
  }

  /** The text and parameters of {@link close}'s statement. */
  closeStatement(closings: SessionClosing[], channel: string): { text: string; params: unknown[] } {
    const input = closings.map(({ sessionId, records, fence, notice }) => ({
      session_id: sessionId,
      seq: records.length > 0 ? records[records.length - 1].seq : null,
      records: records.map(({ seq, at, type, payload }) => ({ seq, at, type, payload })),
      node: fence?.nodeId ?? null,
      epoch: fence?.epoch ?? null,
      notice: notice ?? null,
    }));
    return {
      text: `WITH closing AS (
         SELECT x.e->>'session_id' AS session_id, (x.e->>'seq')::int AS seq, x.e->'records' AS records,
           x.e->>'node' AS node, (x.e->>'epoch')::bigint AS epoch, x.e->>'notice' AS notice
         FROM ${elementsOf('$1::jsonb', closings.length)} AS x(e)),
       fence AS (
         SELECT l.session_id FROM session_lease l JOIN closing c ON l.session_id = c.session_id
         WHERE c.node IS NOT NULL AND l.owner_node = c.node AND l.epoch = c.epoch
           AND l.expires_at > clock_timestamp()
         FOR SHARE OF l),
       counter AS (
         UPDATE session s SET history_seq = c.seq FROM closing c WHERE s.id = c.session_id AND c.seq IS NOT NULL),
       written AS (
         INSERT INTO history (session_id, seq, at, type, payload)
         SELECT c.session_id, (r->>'seq')::int, (r->>'at')::timestamptz, r->>'type', r->'payload'
         FROM closing c CROSS JOIN LATERAL jsonb_array_elements(c.records) AS r),
       refused AS (
         SELECT array_agg(c.session_id) AS ids FROM closing c
         WHERE c.node IS NOT NULL AND c.session_id NOT IN (SELECT session_id FROM fence))
       SELECT CASE WHEN r.ids IS NOT NULL THEN mailroom_fence_refused(r.ids) END AS refused,
         (SELECT count(pg_notify($2, c.notice)::text) FROM closing c WHERE c.notice IS NOT NULL) AS notified
       FROM refused r`,
      params: [json(input), channel],
    };
  }

  async page(tx: Tx, sessionId: string, after: number, limit: number): Promise<HistoryRecord[]> {
    const rows = await query<HistoryRow>(
      tx,
      `SELECT * FROM history WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [sessionId, after, limit],
    );
    return rows.map(toRecord);
  }
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { iso, json, query, queryOne } from 'src/database/sql';
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
   * The last statement of a session's batch (see HistoryService): writes its records (their `seq`s
   * taken under the session's lock) with the counter they leave, checks the lease fence of an owner's writes (`session_lease` held by `fence`'s
   * node at its epoch and not run out, share-locked until commit, so a takeover waits for this
   * commit; LeaseRepository.holds is the same check) and sends the batch's NOTIFY, all in one round
   * trip. False when the fence does not hold: the caller must roll back.
   */
  async close(
    tx: Tx,
    sessionId: string,
    records: HistoryRecord[],
    fence: { nodeId: string; epoch: number } | undefined,
    notice: { channel: string; payload: string } | undefined,
  ): Promise<boolean> {
    const row = await queryOne<{ held: boolean }>(
      tx,
      `WITH fence AS (
         SELECT 1 FROM session_lease
         WHERE $4::text IS NOT NULL AND session_id = $1 AND owner_node = $4 AND epoch = $5
           AND expires_at > clock_timestamp()
         FOR SHARE),
       counter AS (UPDATE session SET history_seq = $2 WHERE id = $1 AND $2::int IS NOT NULL),
       written AS (
         INSERT INTO history (session_id, seq, at, type, payload)
         SELECT $1, (r->>'seq')::int, (r->>'at')::timestamptz, r->>'type', r->'payload'
         FROM jsonb_array_elements($3::jsonb) AS r)
       SELECT ($4::text IS NULL OR EXISTS (SELECT 1 FROM fence)) AS held,
         CASE WHEN $6::text IS NOT NULL THEN pg_notify($6, $7) END AS notified`,
      [
        sessionId,
        records.length > 0 ? records[records.length - 1].seq : null,
        json(records.map(({ seq, at, type, payload }) => ({ seq, at, type, payload }))),
        fence?.nodeId ?? null,
        fence?.epoch ?? null,
        notice?.channel ?? null,
        notice?.payload ?? null,
      ],
    );
    return Boolean(row?.held);
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

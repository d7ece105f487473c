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
   * Writes records whose `seq`s the caller took under the session's lock (see HistoryService), in one
   * statement with the counter they leave: a transaction's records cost one round trip, not two each.
   */
  async appendAll(tx: Tx, sessionId: string, records: HistoryRecord[]): Promise<void> {
    const last = records[records.length - 1].seq;
    await query(
      tx,
      `WITH counter AS (UPDATE session SET history_seq = $2 WHERE id = $1)
       INSERT INTO history (session_id, seq, at, type, payload)
       SELECT $1, (r->>'seq')::int, (r->>'at')::timestamptz, r->>'type', r->'payload'
       FROM jsonb_array_elements($3::jsonb) AS r`,
      [sessionId, last, json(records.map(({ seq, at, type, payload }) => ({ seq, at, type, payload })))],
    );
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

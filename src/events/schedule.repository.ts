import { Injectable } from '@nestjs/common';
import { isUuid } from 'src/common/names';
import { Tx } from 'src/database/database.service';
import { iso, query, queryOne } from 'src/database/sql';
import type { Schedule } from '@mailroom/client/protocol';

export type { Schedule } from '@mailroom/client/protocol';

interface ScheduleRow {
  id: string;
  session_id: string;
  agent_id: string;
  cron: string;
  timezone: string;
  prompt: string | null;
  event: string | null;
  next_run_at: Date | string;
  created_at: Date | string;
}

const toSchedule = (r: ScheduleRow): Schedule => ({
  scheduleId: r.id,
  sessionId: r.session_id,
  agentId: r.agent_id,
  cron: r.cron,
  timezone: r.timezone,
  prompt: r.prompt,
  event: r.event,
  nextRunAt: iso(r.next_run_at)!,
  createdAt: iso(r.created_at)!,
});

@Injectable()
export class ScheduleRepository {
  async insert(tx: Tx, s: Omit<Schedule, 'scheduleId'>): Promise<Schedule> {
    const row = await queryOne<ScheduleRow>(
      tx,
      `INSERT INTO schedule (session_id, agent_id, cron, timezone, prompt, event, next_run_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $8::timestamptz) RETURNING *`,
      [s.sessionId, s.agentId, s.cron, s.timezone, s.prompt, s.event, s.nextRunAt, s.createdAt],
    );
    return toSchedule(row!);
  }

  async find(tx: Tx, sessionId: string, scheduleId: string): Promise<Schedule | undefined> {
    if (!isUuid(scheduleId)) {
      return undefined;
    }
    const row = await queryOne<ScheduleRow>(
      tx,
      `SELECT * FROM schedule WHERE session_id = $1 AND id = $2::uuid`,
      [sessionId, scheduleId],
    );
    return row && toSchedule(row);
  }

  async listBySession(tx: Tx, sessionId: string): Promise<Schedule[]> {
    const rows = await query<ScheduleRow>(
      tx,
      `SELECT * FROM schedule WHERE session_id = $1 ORDER BY created_at, id`,
      [sessionId],
    );
    return rows.map(toSchedule);
  }

  async listBySessions(tx: Tx, sessionIds: string[]): Promise<Schedule[]> {
    const rows = await query<ScheduleRow>(tx, `SELECT * FROM schedule WHERE session_id = ANY($1::text[])`, [
      sessionIds,
    ]);
    return rows.map(toSchedule);
  }

  async delete(tx: Tx, scheduleId: string): Promise<void> {
    await query(tx, `DELETE FROM schedule WHERE id = $1`, [scheduleId]);
  }

  /** Claims the firing at `runAt`; false when it was already fired (by another timer or node). */
  async claimFiring(tx: Tx, scheduleId: string, runAt: string): Promise<boolean> {
    const rows = await query<{ schedule_id: string }>(
      tx,
      `INSERT INTO schedule_firing (schedule_id, run_at) VALUES ($1, $2::timestamptz)
       ON CONFLICT DO NOTHING RETURNING schedule_id`,
      [scheduleId, runAt],
    );
    return rows.length > 0;
  }

  async recordFiringItem(tx: Tx, scheduleId: string, runAt: string, workItemId: string): Promise<void> {
    await query(
      tx,
      `UPDATE schedule_firing SET work_item_id = $3 WHERE schedule_id = $1 AND run_at = $2::timestamptz`,
      [scheduleId, runAt, workItemId],
    );
  }

  /** Moves the schedule on, and forgets firing records before the last one: only it can still be raced for. */
  async setNextRun(tx: Tx, scheduleId: string, firedAt: string, nextRunAt: string): Promise<void> {
    await query(tx, `UPDATE schedule SET next_run_at = $2::timestamptz WHERE id = $1`, [
      scheduleId,
      nextRunAt,
    ]);
    await query(tx, `DELETE FROM schedule_firing WHERE schedule_id = $1 AND run_at < $2::timestamptz`, [
      scheduleId,
      firedAt,
    ]);
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Cron schedules. `schedule_firing` records each firing once: the unique (schedule, run time)
 * makes a firing idempotent however many timers (or, later, nodes) race to it.
 */
export class Schedules1764151200000 implements MigrationInterface {
  name = 'Schedules1764151200000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE schedule (
        id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        session_id   text NOT NULL,
        agent_id     text NOT NULL,
        cron         text NOT NULL,
        timezone     text NOT NULL,
        prompt       text,
        event        text,
        next_run_at  timestamptz NOT NULL,
        created_at   timestamptz NOT NULL,
        FOREIGN KEY (session_id, agent_id) REFERENCES agent(session_id, id) ON DELETE CASCADE
      )`);
    await q.query(`CREATE INDEX schedule_session ON schedule (session_id, created_at)`);
    await q.query(`
      CREATE TABLE schedule_firing (
        schedule_id  uuid NOT NULL REFERENCES schedule(id) ON DELETE CASCADE,
        run_at       timestamptz NOT NULL,
        work_item_id uuid,
        PRIMARY KEY (schedule_id, run_at)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS schedule_firing`);
    await q.query(`DROP TABLE IF EXISTS schedule`);
  }
}

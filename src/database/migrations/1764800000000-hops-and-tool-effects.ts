import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Hops: how many agent-to-agent sends led to a work item or a mail (a client's task or mail is 0).
 * A send past the sender's `maxHops` is refused, which ends ping-pong loops without a rate limit.
 *
 * Tool effects: the result of each built-in tool call, written in the transaction of the call's
 * effect, keyed by (item, model step, call index). An interrupted item that runs again gets the
 * recorded result back instead of sending its mail (or broadcasting its event) a second time.
 */
export class HopsAndToolEffects1764800000000 implements MigrationInterface {
  name = 'HopsAndToolEffects1764800000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE work_item ADD COLUMN hops integer NOT NULL DEFAULT 0`);
    await q.query(`ALTER TABLE mail ADD COLUMN hops integer NOT NULL DEFAULT 0`);
    await q.query(`
      CREATE TABLE tool_effect (
        task_id     uuid NOT NULL REFERENCES work_item(id) ON DELETE CASCADE,
        step        integer NOT NULL,
        call_index  integer NOT NULL,
        tool        text NOT NULL,
        result      jsonb NOT NULL,
        PRIMARY KEY (task_id, step, call_index)
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS tool_effect`);
    await q.query(`ALTER TABLE mail DROP COLUMN IF EXISTS hops`);
    await q.query(`ALTER TABLE work_item DROP COLUMN IF EXISTS hops`);
  }
}

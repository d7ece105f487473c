import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * A batch's closing statement (HistoryRepository.close) fails, rather than answers, when a lease
 * fence does not hold: so the `COMMIT` sent in the same round trip is never run (the server skips
 * the rest of a query after an error) and the batch rolls back. The error names the refused
 * sessions (a JSON array in its detail) under its own code.
 */
export class FenceRefusal1765000000000 implements MigrationInterface {
  name = 'FenceRefusal1765000000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION mailroom_fence_refused(sessions text[]) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'the lease fence refused the batch'
          USING ERRCODE = 'MRF01', DETAIL = array_to_json(sessions)::text;
      END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION IF EXISTS mailroom_fence_refused(text[])`);
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `mailroom_few_elements(array)`: `jsonb_array_elements`, but estimated at one row. A batch
 * statement reads its input from a JSON array, which the planner takes for 100 rows whatever its
 * length; against a table of a few thousand rows that makes a scan of the whole table look cheaper
 * than a hundred key lookups, so a one-row write scanned every agent or session. Statements use it
 * for short inputs only (sql.ts `elementsOf`): for long ones the estimate of 100 keeps the hash
 * joins that suit them. PL/pgSQL, because a SQL function may be inlined into the statement (which
 * brings back the estimate of 100) and is planned again at every call when it is not; PL/pgSQL keeps
 * its plan for the connection (about 10 µs a call here, where the SQL function cost 30).
 */
export class FewElements1765200000000 implements MigrationInterface {
  name = 'FewElements1765200000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE FUNCTION mailroom_few_elements(elements jsonb) RETURNS SETOF jsonb
      LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE ROWS 1
      AS $$ BEGIN RETURN QUERY SELECT jsonb_array_elements(elements); END $$`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP FUNCTION IF EXISTS mailroom_few_elements(jsonb)`);
  }
}

import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The agents of a session that wait on another (send-and-switch): a partial index, so that checking
 * a new wait for a cycle reads the waits-for graph (a handful of rows) instead of every agent of the
 * session (AgentRepository.listWaitGraph).
 */
export class WaitingAgents1765300000000 implements MigrationInterface {
  name = 'WaitingAgents1765300000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE INDEX agent_waiting ON agent (session_id) WHERE waiting_on IS NOT NULL`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP INDEX IF EXISTS agent_waiting`);
  }
}

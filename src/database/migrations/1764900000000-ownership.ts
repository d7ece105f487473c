import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Several servers on one database: the nodes that are alive (their heartbeat) and which node owns
 * each session (its lease). Times are the database's own (`clock_timestamp()`), never a node's clock.
 * `epoch` grows with every change of owner: a write made for a session carries the owner's epoch,
 * so a node that lost the lease cannot commit (fencing).
 */
export class Ownership1764900000000 implements MigrationInterface {
  name = 'Ownership1764900000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE node (
        id          text PRIMARY KEY,
        heartbeat   timestamptz NOT NULL,
        started_at  timestamptz NOT NULL
      )`);
    await q.query(`
      CREATE TABLE session_lease (
        session_id  text PRIMARY KEY REFERENCES session(id) ON DELETE CASCADE,
        owner_node  text,
        epoch       bigint NOT NULL DEFAULT 0,
        expires_at  timestamptz NOT NULL DEFAULT '-infinity'
      )`);
    await q.query(`CREATE INDEX session_lease_owner ON session_lease (owner_node)`);
    await q.query(`CREATE INDEX session_lease_expiry ON session_lease (expires_at)`);
    // Sessions from before: unowned, so the first node to look takes them over (their recovery).
    await q.query(`INSERT INTO session_lease (session_id) SELECT id FROM session`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`DROP TABLE IF EXISTS session_lease`);
    await q.query(`DROP TABLE IF EXISTS node`);
  }
}

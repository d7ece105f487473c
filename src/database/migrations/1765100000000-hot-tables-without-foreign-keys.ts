import { MigrationInterface, QueryRunner } from 'typeorm';

/** The rows written for every task, mail and record, each with the parent row a foreign key checked. */
const HOT_KEYS = [
  {
    table: 'work_item',
    name: 'work_item_session_id_agent_id_fkey',
    key: '(session_id, agent_id)',
    parent: 'agent(session_id, id)',
  },
  {
    table: 'conversation_turn',
    name: 'conversation_turn_session_id_agent_id_fkey',
    key: '(session_id, agent_id)',
    parent: 'agent(session_id, id)',
  },
  { table: 'history', name: 'history_session_id_fkey', key: '(session_id)', parent: 'session(id)' },
  { table: 'mail', name: 'mail_session_id_fkey', key: '(session_id)', parent: 'session(id)' },
];

/**
 * Drops the foreign keys of the tables every unit of work appends to (ADR 0019). Each was a
 * trigger run per inserted row, a lookup and a `KEY SHARE` lock of the parent: about half of the
 * database's time for a broadcast to 10,000 sleepers, and a share of every task's. They guarded
 * nothing the writers do not: every row is written under its session's lock by a statement that
 * joins the parent it names (an unknown agent gets `agent_not_found`, an unknown session writes
 * nothing), and sessions and agents are never deleted, so the cascades never ran.
 */
export class HotTablesWithoutForeignKeys1765100000000 implements MigrationInterface {
  name = 'HotTablesWithoutForeignKeys1765100000000';

  async up(q: QueryRunner): Promise<void> {
    for (const k of HOT_KEYS) {
      await q.query(`ALTER TABLE ${k.table} DROP CONSTRAINT IF EXISTS ${k.name}`);
    }
  }

  async down(q: QueryRunner): Promise<void> {
    for (const k of HOT_KEYS) {
      await q.query(
        `ALTER TABLE ${k.table} ADD CONSTRAINT ${k.name} FOREIGN KEY ${k.key} REFERENCES ${k.parent} ON DELETE CASCADE`,
      );
    }
  }
}

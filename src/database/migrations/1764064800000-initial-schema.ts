import { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * The foundation schema: sessions and their history log, agents, work items (the queue), mail and
 * conversations. Every table is keyed by `session_id` first so sessions can later be sharded.
 */
export class InitialSchema1764064800000 implements MigrationInterface {
  name = 'InitialSchema1764064800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE session (
        id            text PRIMARY KEY,
        owner         text,
        metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
        limits        jsonb NOT NULL DEFAULT '{}'::jsonb,
        tokens_used   bigint NOT NULL DEFAULT 0,
        history_seq   integer NOT NULL DEFAULT 0,
        created_at    timestamptz NOT NULL,
        stopped_at    timestamptz
      )`);
    await q.query(`
      CREATE TABLE history (
        session_id  text NOT NULL REFERENCES session(id) ON DELETE CASCADE,
        seq         integer NOT NULL,
        at          timestamptz NOT NULL,
        type        text NOT NULL,
        payload     jsonb NOT NULL,
        PRIMARY KEY (session_id, seq)
      )`);
    await q.query(`
      CREATE TABLE agent (
        session_id      text NOT NULL REFERENCES session(id) ON DELETE CASCADE,
        id              text NOT NULL,
        template        text NOT NULL,
        config          jsonb NOT NULL,
        state           text NOT NULL CHECK (state IN ('idle','active','waiting','sleeping','stopped')),
        stop_reason     text,
        waiting_on      text,
        wake_events     jsonb NOT NULL DEFAULT '[]'::jsonb,
        sleeping_until  timestamptz,
        error_count     integer NOT NULL DEFAULT 0,
        last_error      text,
        last_active_at  timestamptz,
        tokens_used     bigint NOT NULL DEFAULT 0,
        created_at      timestamptz NOT NULL,
        PRIMARY KEY (session_id, id)
      )`);
    await q.query(`
      CREATE TABLE work_item (
        id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq              bigint GENERATED ALWAYS AS IDENTITY,
        session_id       text NOT NULL,
        agent_id         text NOT NULL,
        kind             text NOT NULL CHECK (kind IN ('task','mailbox_message','event','schedule')),
        priority         smallint NOT NULL DEFAULT 1,
        is_switch        boolean NOT NULL DEFAULT false,
        state            text NOT NULL CHECK (state IN ('queued','running','done','failed','cancelled')),
        attempts         integer NOT NULL DEFAULT 0,
        idempotency_key  text,
        prompt           text NOT NULL,
        payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
        result           jsonb,
        error            jsonb,
        usage            jsonb,
        created_at       timestamptz NOT NULL,
        started_at       timestamptz,
        finished_at      timestamptz,
        FOREIGN KEY (session_id, agent_id) REFERENCES agent(session_id, id) ON DELETE CASCADE
      )`);
    // The claim order: sync-switch mail first, then priority, then first in, first out.
    await q.query(`CREATE INDEX work_item_claim ON work_item (session_id, agent_id, is_switch DESC, priority DESC, seq)
                   WHERE state = 'queued'`);
    await q.query(
      `CREATE INDEX work_item_running ON work_item (session_id, agent_id) WHERE state = 'running'`,
    );
    await q.query(`CREATE UNIQUE INDEX work_item_idempotency ON work_item (session_id, agent_id, idempotency_key)
                   WHERE idempotency_key IS NOT NULL`);
    await q.query(`
      CREATE TABLE mail (
        id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        seq          bigint GENERATED ALWAYS AS IDENTITY,
        session_id   text NOT NULL REFERENCES session(id) ON DELETE CASCADE,
        from_id      text NOT NULL,
        to_id        text NOT NULL,
        subject      text NOT NULL,
        body         text NOT NULL,
        priority     text NOT NULL CHECK (priority IN ('low','normal','high','urgent')),
        status       text NOT NULL CHECK (status IN ('unread','read','replied','archived')),
        is_switch    boolean NOT NULL DEFAULT false,
        reply_to     uuid,
        thread_id    uuid NOT NULL,
        created_at   timestamptz NOT NULL,
        read_at      timestamptz
      )`);
    await q.query(`CREATE INDEX mail_session_seq ON mail (session_id, seq DESC)`);
    await q.query(`CREATE INDEX mail_to ON mail (session_id, to_id, seq DESC)`);
    await q.query(`
      CREATE TABLE conversation_turn (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id  text NOT NULL,
        agent_id    text NOT NULL,
        message     jsonb NOT NULL,
        created_at  timestamptz NOT NULL,
        FOREIGN KEY (session_id, agent_id) REFERENCES agent(session_id, id) ON DELETE CASCADE
      )`);
    await q.query(
      `CREATE INDEX conversation_turn_agent ON conversation_turn (session_id, agent_id, id DESC)`,
    );
  }

  async down(q: QueryRunner): Promise<void> {
    for (const table of ['conversation_turn', 'mail', 'work_item', 'agent', 'history', 'session']) {
      await q.query(`DROP TABLE IF EXISTS ${table}`);
    }
  }
}

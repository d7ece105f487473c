import { QueryRunner } from 'typeorm';
import { DatabaseService, sql, Tx } from 'src/database/database.service';
import { HotTablesWithoutForeignKeys1765100000000 as HotTables } from 'src/database/migrations/1765100000000-hot-tables-without-foreign-keys';
import { inRolledBack, openTestDatabase } from '../support/test-app';

const HOT_KEYS = [
  'conversation_turn_session_id_agent_id_fkey',
  'history_session_id_fkey',
  'mail_session_id_fkey',
  'work_item_session_id_agent_id_fkey',
];

describe(HotTables.name, () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  const foreignKeys = async (tx: Tx): Promise<string[]> => {
    const rows: Array<{ conname: string }> = await sql(tx).query(
      `SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY conname`,
    );
    return rows.map((r) => r.conname);
  };
  const runner = (tx: Tx) => ({ query: (text: string) => sql(tx).query(text) }) as unknown as QueryRunner;

  it('leaves the tables every unit of work appends to without foreign keys, and the cold ones with theirs', async () => {
    const keys = await db.read(foreignKeys);
    expect(keys.filter((k) => HOT_KEYS.includes(k))).toEqual([]);
    expect(keys).toEqual(
      expect.arrayContaining(['agent_session_id_fkey', 'schedule_session_id_agent_id_fkey']),
    );
  });

  it('puts the keys back when reverted and drops them again when run', async () => {
    const seen = await inRolledBack(db, async (tx) => {
      await new HotTables().down(runner(tx));
      const reverted = await foreignKeys(tx);
      await new HotTables().up(runner(tx));
      return { reverted, again: await foreignKeys(tx) };
    });
    expect(seen?.reverted).toEqual(expect.arrayContaining(HOT_KEYS));
    expect(seen?.again.filter((k) => HOT_KEYS.includes(k))).toEqual([]);
  });
});

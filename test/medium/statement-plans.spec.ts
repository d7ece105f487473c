import { AgentWrites } from 'src/agents/agent-writes.repository';
import { WorkStepRepository } from 'src/agents/runtime/work-step.repository';
import { DatabaseService, sql, Tx } from 'src/database/database.service';
import { elementsOf, FEW_ELEMENTS } from 'src/database/sql';
import { WorkItemRepository } from 'src/mailbox/work-item.repository';
import { HistoryRepository } from 'src/sessions/history.repository';
import { inRolledBack, openTestDatabase } from '../support/test-app';

const AT = '2026-01-01T00:00:00.000Z';
const TABLES = ['agent', 'session', 'work_item'];

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'CTE Name'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

const contains = (node: PlanNode, test: (n: PlanNode) => boolean): boolean =>
  test(node) || (node.Plans ?? []).some((p) => contains(p, test));

/** The CTEs the plan reads again for every row of an outer one: a correlated subplan over a CTE scan. */
function ctesReadPerRow(node: PlanNode): string[] {
  const own =
    node['Subplan Name']?.startsWith('SubPlan') && contains(node, (n) => n['Node Type'] === 'CTE Scan')
      ? [node['Subplan Name']]
      : [];
  return [...own, ...(node.Plans ?? []).flatMap(ctesReadPerRow)];
}

/**
 * The joins of CTEs the plan runs again for every row of an outer join (an inlined CTE joined to
 * others on the inner side of a nested loop): work that grows with the cube of the batch.
 */
function cteJoinsRunPerRow(node: PlanNode & { 'Actual Loops'?: number }): string[] {
  const join = ['Nested Loop', 'Hash Join', 'Merge Join'].includes(node['Node Type']);
  const own =
    join && (node['Actual Loops'] ?? 1) > 1 && contains(node, (n) => n['Node Type'] === 'CTE Scan')
      ? [`${node['Node Type']} × ${node['Actual Loops']}`]
      : [];
  return [...own, ...(node.Plans ?? []).flatMap(cteJoinsRunPerRow)];
}

/**
 * What the plan runs more often than a linear statement would for `rows` input rows: a CTE read
 * again for every row of an outer one (a nested loop over two CTEs, which the planner takes for one
 * row each: quadratic in the batch), or any node run more than once per input row.
 */
function superLinear(node: PlanNode & { 'Actual Loops'?: number }, rows: number): string[] {
  const loops = node['Actual Loops'] ?? 1;
  const own =
    (node['Node Type'] === 'CTE Scan' && loops > 1) || loops > rows
      ? [`${node['Node Type']}${node['CTE Name'] ? ` ${node['CTE Name']}` : ''} × ${loops}`]
      : [];
  return [...own, ...(node.Plans ?? []).flatMap((p) => superLinear(p, rows))];
}

/** Every table the plan reads by a scan of the whole table. */
function scannedTables(node: PlanNode): string[] {
  const own = node['Node Type'] === 'Seq Scan' && node['Relation Name'] ? [node['Relation Name']] : [];
  return [...own, ...(node.Plans ?? []).flatMap(scannedTables)];
}

/**
 * The batch statements of one write read the rows they touch by key, also from tables of a few
 * thousand rows, where taking their JSON input for the 100 rows the planner assumes made a scan
 * of the whole table look cheaper (migration 1765200000000, sql.ts `elementsOf`).
 */
describe('plans of the batch statements', () => {
  let db: DatabaseService;
  let closeDb: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close: closeDb } = await openTestDatabase());
  });

  afterAll(() => closeDb());

  /** Thousands of sessions, agents and items, analysed; all rolled back after `fn`. */
  const inMiddlingTables = <T>(fn: (tx: Tx) => Promise<T>): Promise<T> =>
    inRolledBack(db, async (tx) => {
      const m = sql(tx);
      await m.query(
        `INSERT INTO session (id, created_at) SELECT 'plans-' || g, $1 FROM generate_series(1, 3000) g`,
        [AT],
      );
      await m.query(
        `INSERT INTO agent (session_id, id, template, config, state, created_at)
         SELECT 'plans-' || (g % 3000 + 1), 'a' || g, 'assistant', '{}', 'idle', $1 FROM generate_series(1, 6000) g`,
        [AT],
      );
      await m.query(
        `INSERT INTO work_item (session_id, agent_id, kind, state, prompt, created_at)
         SELECT 'plans-' || (g % 3000 + 1), 'a' || (g % 6000 + 1), 'task', 'done', 'x', $1
         FROM generate_series(1, 8000) g`,
        [AT],
      );
      await m.query(`ANALYZE session, agent, work_item`);
      return fn(tx);
    });

  const planOf = async (
    tx: Tx,
    statement: { text: string; params: unknown[] },
    analyze = false,
  ): Promise<PlanNode> => {
    const rows: Array<{ 'QUERY PLAN': unknown }> = await sql(tx).query(
      `EXPLAIN (FORMAT JSON${analyze ? ', ANALYZE' : ''}) ${statement.text}`,
      statement.params,
    );
    const plan = rows[0]['QUERY PLAN'];
    return ((typeof plan === 'string' ? JSON.parse(plan) : plan) as Array<{ Plan: PlanNode }>)[0].Plan;
  };
  const scansOf = async (tx: Tx, statement: { text: string; params: unknown[] }): Promise<string[]> =>
    scannedTables(await planOf(tx, statement)).filter((t) => TABLES.includes(t));

  it('reads agents, sessions and items by key for a one-row write', async () => {
    const key = { sessionId: 'plans-7', agentId: 'a6' };
    const scans = await inMiddlingTables(async (tx) => ({
      enqueue: await scansOf(
        tx,
        new WorkItemRepository().enqueueManyStatement([
          {
            item: { ...key, kind: 'task', priority: 'normal', prompt: 'p', createdAt: AT },
            maxQueued: 100,
            claim: true,
          },
        ]),
      ),
      claim: await scansOf(tx, new WorkStepRepository().claimManyStatement([key], AT)),
      complete: await scansOf(
        tx,
        new WorkStepRepository().completeManyStatement(
          [
            {
              ...key,
              taskId: '806de2a2-6ff3-4f1c-98fc-2a76e31335e8',
              final: 'ok',
              usage: { promptTokens: 1, completionTokens: 1 },
              turns: [{ role: 'assistant', content: 'ok' }],
              claimNext: true,
            },
          ],
          AT,
        ),
      ),
      sleep: await scansOf(
        tx,
        new AgentWrites().sleepManyStatement([{ ...key, until: null, wakeEvents: ['go'] }]),
      ),
      wakeDue: await scansOf(
        tx,
        new AgentWrites().wakeDueManyStatement([{ ...key, agentIds: [key.agentId], dueBy: AT }]),
      ),
      close: await scansOf(
        tx,
        new HistoryRepository().closeStatement(
          [
            {
              sessionId: key.sessionId,
              records: [
                { sessionId: key.sessionId, seq: 1, at: AT, type: 'async.agent.stateChanged', payload: {} },
              ],
              fence: { nodeId: 'n1', epoch: 1 },
            },
          ],
          'mailroom',
        ),
      ),
    }));
    expect(scans).toEqual({ enqueue: [], claim: [], complete: [], sleep: [], wakeDue: [], close: [] });
  });

  /** The statements of a batch's queueing, claiming and completing for these agents, one row each. */
  const batchStatements = (keys: Array<{ sessionId: string; agentId: string }>) => ({
    enqueue: new WorkItemRepository().enqueueManyStatement(
      keys.map((key) => ({
        item: { ...key, kind: 'task' as const, priority: 'normal' as const, prompt: 'p', createdAt: AT },
        maxQueued: 100,
        claim: true,
      })),
    ),
    claim: new WorkStepRepository().claimManyStatement(keys, AT),
    complete: new WorkStepRepository().completeManyStatement(
      keys.map((key) => ({
        ...key,
        taskId: '806de2a2-6ff3-4f1c-98fc-2a76e31335e8',
        final: 'ok',
        usage: { promptTokens: 1, completionTokens: 1 },
        turns: [{ role: 'assistant' as const, content: 'ok' }],
        claimNext: true,
      })),
      AT,
    ),
  });

  it('joins a long input to what the statement made, never reading a CTE again for each row', async () => {
    const keys = Array.from({ length: 2000 }, (_, i) => ({
      sessionId: `plans-${(i % 3000) + 1}`,
      agentId: `a${i + 1}`,
    }));
    const { enqueue, claim, complete } = batchStatements(keys);
    const perRow = await db.read(async (tx) => ({
      enqueue: ctesReadPerRow(await planOf(tx, enqueue)),
      claim: ctesReadPerRow(await planOf(tx, claim)),
      complete: ctesReadPerRow(await planOf(tx, complete)),
    }));
    expect(perRow).toEqual({ enqueue: [], claim: [], complete: [] });
  });

  it('runs a batch of the size a group commit makes without joining its CTEs again for each row', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => ({
      sessionId: `plans-${((i + 1) % 3000) + 1}`,
      agentId: `a${i + 1}`,
    }));
    const { enqueue, claim, complete } = batchStatements(keys);
    const perRow = await inMiddlingTables(async (tx) => ({
      enqueue: cteJoinsRunPerRow(await planOf(tx, enqueue, true)),
      claim: cteJoinsRunPerRow(await planOf(tx, claim, true)),
      complete: cteJoinsRunPerRow(await planOf(tx, complete, true)),
    }));
    expect(perRow).toEqual({ enqueue: [], claim: [], complete: [] });
  });

  it('runs a batch of fifty writes of each kind in time linear in the batch', async () => {
    const n = 50;
    const keys = Array.from({ length: n }, (_, i) => ({ sessionId: 'plans-7', agentId: `b${i}` }));
    const agents = new AgentWrites();
    const found = await inMiddlingTables(async (tx) => {
      // Fifty idle agents of one session, each with an item running (so each completion and claim
      // finds its row); the agents with ids b… are this test's own.
      await sql(tx).query(
        `INSERT INTO agent (session_id, id, template, config, state, created_at)
         SELECT 'plans-7', 'b' || g, 'assistant', '{}', 'active', $1 FROM generate_series(0, ${n - 1}) g`,
        [AT],
      );
      const running: Array<{ id: string; agent_id: string }> = await sql(tx).query(
        `INSERT INTO work_item (session_id, agent_id, kind, state, prompt, created_at)
         SELECT 'plans-7', 'b' || g, 'task', 'running', 'x', $1 FROM generate_series(0, ${n - 1}) g
         RETURNING id, agent_id`,
        [AT],
      );
      const task = new Map(running.map((r) => [r.agent_id, r.id]));
      const analysed = async (statement: { text: string; params: unknown[] }) =>
        superLinear(await planOf(tx, statement, true), n);
      const { enqueue, claim } = batchStatements(keys);
      return {
        complete: await analysed(
          new WorkStepRepository().completeManyStatement(
            keys.map((key) => ({
              ...key,
              taskId: task.get(key.agentId)!,
              final: 'ok',
              usage: { promptTokens: 1, completionTokens: 1 },
              turns: [{ role: 'assistant' as const, content: 'ok' }],
              claimNext: true,
            })),
            AT,
          ),
        ),
        enqueue: await analysed(enqueue),
        claim: await analysed(claim),
        sleep: await analysed(agents.sleepManyStatement(keys.map((key) => ({ ...key, until: AT })))),
        wakeDue: await analysed(
          agents.wakeDueManyStatement([
            { sessionId: 'plans-7', agentIds: keys.map((k) => k.agentId), dueBy: AT },
          ]),
        ),
        insert: await analysed(
          agents.insertManyStatement(
            keys.map((k) => ({
              sessionId: 'plans-8',
              agentId: k.agentId,
              template: 'assistant',
              config: {},
              state: 'idle' as const,
              stopReason: null,
              wakeEvents: [],
              createdAt: AT,
            })) as never,
          ),
        ),
      };
    });
    expect(found).toEqual({ complete: [], enqueue: [], claim: [], sleep: [], wakeDue: [], insert: [] });
  });

  it('reads a short input as few rows and a long one as jsonb_array_elements', () => {
    expect(elementsOf('$1::jsonb', 1)).toBe('mailroom_few_elements($1::jsonb)');
    expect(elementsOf('$1::jsonb', FEW_ELEMENTS)).toBe('mailroom_few_elements($1::jsonb)');
    expect(elementsOf('$1::jsonb', FEW_ELEMENTS + 1)).toBe('jsonb_array_elements($1::jsonb)');
  });

  it('gives mailroom_few_elements the elements of the array, in order, and nothing for null', async () => {
    const rows: Array<{ e: unknown; n: number | string }> = await db.read((tx) =>
      sql(tx).query(
        `SELECT e, n FROM mailroom_few_elements($1::jsonb) WITH ORDINALITY AS x(e, n)
         UNION ALL SELECT e, n FROM mailroom_few_elements(NULL) WITH ORDINALITY AS y(e, n)`,
        [JSON.stringify([{ a: 1 }, 'two', 3])],
      ),
    );
    expect(rows.map((r) => [r.e, Number(r.n)])).toEqual([
      [{ a: 1 }, 1],
      ['two', 2],
      [3, 3],
    ]);
  });
});

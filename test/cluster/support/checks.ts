import { appendFileSync } from 'node:fs';
import { Cluster, ClusterNode } from './cluster';
import { AGENT, Load } from './load';
import { ownershipOverlaps } from './ownership';

/** Polls `check` (a database read) until it returns a value; a guard, not a timing assertion, ends a hung wait. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  guardMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + guardMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until no item of the load's sessions is queued or running (everything has ended). */
export function settled(cluster: Cluster, sessions: string[]): Promise<true> {
  return eventually('every work item to end', async () => {
    const [{ open }] = await cluster.query<{ open: number }>(
      `SELECT count(*)::int AS open FROM work_item WHERE session_id = ANY($1) AND state IN ('queued', 'running')`,
      [sessions],
    );
    return open === 0 ? true : undefined;
  });
}

/** The items running right now in these sessions: after a fault, the ones whose effect may repeat. */
export async function runningItems(cluster: Cluster, sessions: string[]): Promise<Set<string>> {
  const rows = await cluster.query<{ id: string }>(
    `SELECT id FROM work_item WHERE session_id = ANY($1) AND state = 'running'`,
    [sessions],
  );
  return new Set(rows.map((r) => r.id));
}

export interface RunFigures {
  acked: number;
  lost: number;
  completedTwice: number;
  repeatedEffects: number;
  /** Items whose effect repeated although they were not in flight on a faulted node (must be 0). */
  unexpectedRepeats: number;
  ownershipOverlaps: number;
  /** Retried items (attempts > 1). */
  retried: number;
}

/**
 * The invariants of every fault test, read from the database once the load has ended and settled:
 * every acknowledged task is done, none completed twice, an effect repeated only for an item that
 * was in flight when the fault struck, no two owners of a unit at once; and every watching client
 * saw every push of every session in `seq` order with no gap and no duplicate.
 */
export async function verifyRun(
  cluster: Cluster,
  load: Load,
  opts: { inFlight: Set<string>; watchers: ClusterNode[] },
): Promise<RunFigures> {
  await settled(cluster, load.sessions);
  const ids = load.ackedIds();
  const items = await cluster.query<{
    id: string;
    state: string;
    attempts: number;
    prompt: string;
    error: unknown;
  }>(
    `SELECT id, state, attempts, prompt, error FROM work_item WHERE session_id = ANY($1) AND agent_id = $2`,
    [load.sessions, AGENT],
  );
  const byId = new Map(items.map((i) => [i.id, i]));
  // An acknowledged task that did not end `done` (failed, or gone) is lost work; shown with why it ended.
  const lost = ids
    .filter((id) => byId.get(id)?.state !== 'done')
    .map((id) => {
      const item = byId.get(id);
      return item
        ? `${id} ${item.state} after ${item.attempts} attempt(s): ${JSON.stringify(item.error)}`
        : `${id} missing`;
    });

  const completions = await cluster.query<{ task_id: string; n: number }>(
    `SELECT payload->>'taskId' AS task_id, count(*)::int AS n FROM history
      WHERE session_id = ANY($1) AND type = 'async.task.completed' GROUP BY 1`,
    [load.sessions],
  );
  const completedTwice = completions.filter((c) => c.n > 1).map((c) => c.task_id);
  const completedOnce = new Set(completions.map((c) => c.task_id));
  const doneWithoutRecord = items
    .filter((i) => i.state === 'done' && !completedOnce.has(i.id))
    .map((i) => i.id);

  const effects = await cluster.query<{ subject: string; n: number }>(
    `SELECT subject, count(*)::int AS n FROM mail WHERE session_id = ANY($1) AND from_id = $2 GROUP BY 1`,
    [load.sessions, AGENT],
  );
  const effectCount = new Map(effects.map((e) => [e.subject, e.n]));
  const repeated = items.filter((i) => (effectCount.get(i.prompt) ?? 0) > 1);
  const unexpected = repeated.filter((i) => !opts.inFlight.has(i.id));
  const doneWithoutEffect = items.filter((i) => i.state === 'done' && !effectCount.has(i.prompt));

  for (const node of opts.watchers) {
    await expectEveryPush(cluster, node, load.sessions);
  }
  const overlaps = await ownershipOverlaps(cluster);

  expect({
    lost,
    completedTwice,
    doneWithoutRecord,
    doneWithoutEffect: doneWithoutEffect.map((i) => i.id),
  }).toEqual({
    lost: [],
    completedTwice: [],
    doneWithoutRecord: [],
    doneWithoutEffect: [],
  });
  expect(unexpected.map((i) => i.prompt)).toEqual([]);
  expect(overlaps).toEqual([]);
  // The test must have tested something: tasks were acknowledged all along.
  expect(ids.length).toBeGreaterThan(0);
  return {
    acked: ids.length,
    lost: lost.length,
    completedTwice: completedTwice.length,
    repeatedEffects: repeated.length,
    unexpectedRepeats: unexpected.length,
    ownershipOverlaps: overlaps.length,
    retried: items.filter((i) => i.attempts > 1).length,
  };
}

/**
 * A client sees, for each session, the push of every history record from its first one on, in `seq`
 * order, each once. A push counts as a record's when its name is the record's type (a push with no
 * history row, such as streamed text where it is not stored, carries its predecessor's seq and is
 * not a record's).
 */
async function expectEveryPush(cluster: Cluster, node: ClusterNode, sessions: string[]): Promise<void> {
  const rows = await cluster.query<{ session_id: string; seq: number; type: string }>(
    `SELECT session_id, seq, type FROM history WHERE session_id = ANY($1) ORDER BY session_id, seq`,
    [sessions],
  );
  for (const sessionId of new Set(rows.map((r) => r.session_id))) {
    const types = new Map(rows.filter((r) => r.session_id === sessionId).map((r) => [r.seq, r.type]));
    const last = Math.max(...types.keys());
    const seqsOf = () =>
      node.client.pushes
        .filter((p) => p.payload?.sessionId === sessionId && types.get(p.payload.seq) === p.name)
        .map((p) => p.payload.seq as number);
    await eventually(
      `${node.name} to receive ${sessionId}'s push ${last}`,
      () => Promise.resolve(seqsOf().includes(last) ? true : undefined),
      30_000,
    );
    const seqs = seqsOf();
    const expected = Array.from({ length: last - seqs[0] + 1 }, (_, i) => seqs[0] + i);
    expect({ node: node.name, sessionId, seqs }).toEqual({ node: node.name, sessionId, seqs: expected });
  }
}

/** Takeover: from a fault to the first item started afterwards in each session the faulted node was running. */
export async function takeoverTimes(
  cluster: Cluster,
  sessionsOf: Set<string>,
  faultAt: Date,
): Promise<number[]> {
  const times: number[] = [];
  for (const sessionId of sessionsOf) {
    const [row] = await eventually(`a new start in ${sessionId}`, async () => {
      const rows = await cluster.query<{ at: Date }>(
        `SELECT min(at) AS at FROM history WHERE session_id = $1 AND type = 'async.task.started' AND at > $2`,
        [sessionId, faultAt],
      );
      return rows[0]?.at ? rows : undefined;
    });
    times.push(row.at.getTime() - faultAt.getTime());
  }
  return times;
}

/** The sessions that had an item running among `items`. */
export async function sessionsOf(cluster: Cluster, items: Set<string>): Promise<Set<string>> {
  const rows = await cluster.query<{ session_id: string }>(
    `SELECT DISTINCT session_id FROM work_item WHERE id = ANY($1)`,
    [[...items]],
  );
  return new Set(rows.map((r) => r.session_id));
}

/**
 * Prints a scenario's figures (and appends them to FAULT_FIGURES, a file, when set): the table in
 * docs/reliability.md is made from these lines.
 */
export function report(scenario: string, figures: Record<string, unknown>): void {
  const line = JSON.stringify({ scenario, ...figures });
  console.log(`fault figures: ${line}`);
  if (process.env.FAULT_FIGURES) {
    appendFileSync(process.env.FAULT_FIGURES, `${line}\n`);
  }
}

export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) {
    return undefined;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

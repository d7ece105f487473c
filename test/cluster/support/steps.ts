import { Cluster, ClusterNode } from './cluster';
import { eventually } from './checks';
import { Load } from './load';
import { sessionsOwnedBy, takeovers } from './ownership';

/** Resolves once the load has `n` more acknowledgements than now. */
export function moreAcks(load: Load, n: number): Promise<true> {
  const target = load.acked.length + n;
  return eventually(`${n} more acknowledged tasks`, () =>
    Promise.resolve(load.acked.length >= target ? true : undefined),
  );
}

/** The items running right now in these sessions. */
export async function itemsRunningIn(cluster: Cluster, sessions: string[]): Promise<Set<string>> {
  const rows = await cluster.query<{ id: string }>(
    `SELECT id FROM work_item WHERE session_id = ANY($1) AND state = 'running'`,
    [sessions],
  );
  return new Set(rows.map((r) => r.id));
}

/**
 * A live node that owns a session with an item just taken (started under 100 ms ago, so still in hand
 * for a good while of its step): the victim of a fault "mid-task".
 */
export function nodeWithItemInHand(cluster: Cluster, candidates = cluster.live()): Promise<ClusterNode> {
  return eventually('a node with an item in hand', async () => {
    for (const node of candidates) {
      const [{ n }] = await cluster.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM work_item
          WHERE session_id = ANY($1) AND state = 'running' AND started_at > clock_timestamp() - interval '100 ms'`,
        [await sessionsOwnedBy(cluster, node.name)],
      );
      if (n > 0) {
        return node;
      }
    }
    return undefined;
  });
}

/** Waits until every one of `sessions` has been taken by another node than `from` after `since`; the times (ms). */
export function takenOver(
  cluster: Cluster,
  sessions: string[],
  from: string,
  since: Date,
): Promise<number[]> {
  return eventually(`${sessions.length} sessions of ${from} taken over`, async () => {
    const times = await takeovers(cluster, sessions, from, since);
    return times.length === sessions.length ? times : undefined;
  });
}

/**
 * The items of `sessions` in hand at some moment of a fault that lasted from `from` to `to`
 * (database clock; the nodes write history times from the same machine's clock): started by then,
 * not ended before it began. Read from the history afterwards, so that no claim slips between a
 * look and the fault.
 */
export async function inFlightDuring(
  cluster: Cluster,
  sessions: string[],
  from: Date,
  to: Date,
): Promise<Set<string>> {
  const rows = await cluster.query<{ id: string }>(
    `SELECT DISTINCT s.payload->>'taskId' AS id FROM history s
      WHERE s.session_id = ANY($1) AND s.type = 'async.task.started' AND s.at <= $3
        AND NOT EXISTS (SELECT 1 FROM history e
                         WHERE e.session_id = s.session_id AND e.type IN ('async.task.completed', 'async.task.failed')
                           AND e.payload->>'taskId' = s.payload->>'taskId' AND e.at < $2)`,
    [sessions, from, to],
  );
  return new Set(rows.map((r) => r.id));
}

/** A fault: the sessions it struck, from when (just before it was injected) to when (just after). */
export interface Fault {
  sessions: string[];
  from: Date;
  to: Date;
}

/** Every item in hand during any of the faults: the only ones whose effect may repeat. */
export async function inFlightAt(cluster: Cluster, faults: Fault[]): Promise<Set<string>> {
  const all = new Set<string>();
  for (const f of faults) {
    for (const id of await inFlightDuring(cluster, f.sessions, f.from, f.to)) {
      all.add(id);
    }
  }
  return all;
}

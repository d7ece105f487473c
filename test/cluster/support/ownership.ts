import type { Cluster } from './cluster';

/**
 * Every change of a session's lease, logged by a trigger that the test installs in its own database
 * (the product keeps only the current lease): who held it, at which epoch, until when, and when the
 * change was made, all on the database's clock.
 */
export async function logOwnership(cluster: Cluster): Promise<void> {
  await cluster.query(`
    CREATE TABLE IF NOT EXISTS test_ownership_log (
      id          bigserial PRIMARY KEY,
      session_id  text NOT NULL,
      owner_node  text,
      epoch       bigint NOT NULL,
      expires_at  timestamptz NOT NULL,
      at          timestamptz NOT NULL DEFAULT clock_timestamp()
    )`);
  await cluster.query(`
    CREATE OR REPLACE FUNCTION test_log_ownership() RETURNS trigger AS $$
    BEGIN
      INSERT INTO test_ownership_log (session_id, owner_node, epoch, expires_at)
      VALUES (NEW.session_id, NEW.owner_node, NEW.epoch, NEW.expires_at);
      RETURN NEW;
    END $$ LANGUAGE plpgsql`);
  await cluster.query(`DROP TRIGGER IF EXISTS test_log_ownership ON session_lease`);
  await cluster.query(`
    CREATE TRIGGER test_log_ownership AFTER INSERT OR UPDATE ON session_lease
    FOR EACH ROW EXECUTE FUNCTION test_log_ownership()`);
}

export interface OwnershipInterval {
  sessionId: string;
  owner: string;
  epoch: number;
  from: Date;
  until: Date;
}

/**
 * The ownership intervals from the log: epoch E of a session is held by one node from the change
 * that gave it the lease until the last expiry it was granted, or until it handed the lease back
 * (owner cleared at the same epoch), whichever is first.
 */
export async function ownershipIntervals(cluster: Cluster): Promise<OwnershipInterval[]> {
  const rows = await cluster.query<{
    session_id: string;
    owner_node: string;
    epoch: string;
    from: Date;
    until: Date;
    owners: number;
  }>(`
    SELECT l.session_id, min(l.owner_node) AS owner_node, l.epoch,
           count(DISTINCT l.owner_node)::int AS owners,
           min(l.at) AS "from",
           least(max(l.expires_at),
                 coalesce((SELECT min(r.at) FROM test_ownership_log r
                           WHERE r.session_id = l.session_id AND r.epoch = l.epoch AND r.owner_node IS NULL),
                          'infinity')) AS until
      FROM test_ownership_log l
     WHERE l.owner_node IS NOT NULL
     GROUP BY l.session_id, l.epoch
     ORDER BY l.session_id, l.epoch`);
  for (const r of rows) {
    if (r.owners !== 1) {
      throw new Error(`session ${r.session_id} epoch ${r.epoch} had ${r.owners} owners`);
    }
  }
  return rows.map((r) => ({
    sessionId: r.session_id,
    owner: r.owner_node,
    epoch: Number(r.epoch),
    from: r.from,
    until: r.until,
  }));
}

/**
 * Pairs of intervals of one session, held by two different nodes, that overlap: moments with two
 * owners (must be none). One node may hold two epochs at once: a node takes up a lease it was given
 * (or held in a previous life under the same NODE_ID) with a new epoch, which fences the old one.
 */
export async function ownershipOverlaps(cluster: Cluster): Promise<string[]> {
  const intervals = await ownershipIntervals(cluster);
  const overlaps: string[] = [];
  intervals.forEach((b, i) => {
    for (const a of intervals.slice(0, i)) {
      if (a.sessionId === b.sessionId && a.owner !== b.owner && b.from < a.until) {
        overlaps.push(
          `${a.sessionId}: ${a.owner}@${a.epoch} until ${a.until.toISOString()} overlaps ${b.owner}@${b.epoch} from ${b.from.toISOString()}`,
        );
      }
    }
  });
  return overlaps;
}

/** The sessions a node holds a lease on right now. */
export async function sessionsOwnedBy(cluster: Cluster, node: string): Promise<string[]> {
  const rows = await cluster.query<{ session_id: string }>(
    `SELECT session_id FROM session_lease WHERE owner_node = $1 ORDER BY session_id`,
    [node],
  );
  return rows.map((r) => r.session_id);
}

/** The database's clock now (every lease time is on it). */
export async function dbNow(cluster: Cluster): Promise<Date> {
  const [{ now }] = await cluster.query<{ now: Date }>(`SELECT clock_timestamp() AS now`);
  return now;
}

/** For each session, how long after `since` another node than `from` got its lease (ms, database clock). */
export async function takeovers(
  cluster: Cluster,
  sessions: string[],
  from: string,
  since: Date,
): Promise<number[]> {
  const rows = await cluster.query<{ session_id: string; at: Date | null }>(
    `SELECT s.id AS session_id,
            (SELECT min(l.at) FROM test_ownership_log l
              WHERE l.session_id = s.id AND l.owner_node IS NOT NULL AND l.owner_node <> $2 AND l.at > $3) AS at
       FROM unnest($1::text[]) AS s(id)`,
    [sessions, from, since],
  );
  return rows.filter((r) => r.at).map((r) => r.at!.getTime() - since.getTime());
}

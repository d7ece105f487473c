import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { num, query, queryOne } from 'src/database/sql';

export interface Lease {
  sessionId: string;
  epoch: number;
}

interface LeaseRow {
  session_id: string;
  epoch: number | string;
}

const toLease = (r: LeaseRow): Lease => ({ sessionId: r.session_id, epoch: num(r.epoch) });

/**
 * Nodes and session leases. Every time is the database's `clock_timestamp()`; `ttlMs` null means
 * a lease that never expires (the embedded database: one process, nobody to take over).
 */
@Injectable()
export class LeaseRepository {
  async heartbeat(tx: Tx, nodeId: string): Promise<void> {
    await query(
      tx,
      `INSERT INTO node (id, heartbeat, started_at) VALUES ($1, clock_timestamp(), clock_timestamp())
       ON CONFLICT (id) DO UPDATE SET heartbeat = clock_timestamp()`,
      [nodeId],
    );
  }

  /** Forgets nodes silent for `ms` (their leases expired long ago). */
  async forgetNodes(tx: Tx, ms: number): Promise<void> {
    await query(tx, `DELETE FROM node WHERE heartbeat < clock_timestamp() - $1 * interval '1 millisecond'`, [
      ms,
    ]);
  }

  /** The embedded database has one process: any other node row is a previous life of it. */
  async forgetOtherNodes(tx: Tx, nodeId: string): Promise<void> {
    await query(tx, `DELETE FROM node WHERE id <> $1`, [nodeId]);
  }

  async removeNode(tx: Tx, nodeId: string): Promise<void> {
    await query(tx, `DELETE FROM node WHERE id = $1`, [nodeId]);
  }

  /**
   * Extends every lease the node still has. One whose time ran out is extended too if nobody took
   * it meanwhile (same owner, same epoch: nothing was committed by anyone else).
   */
  async renew(tx: Tx, nodeId: string, ttlMs: number | null): Promise<Lease[]> {
    const rows = await query<LeaseRow>(
      tx,
      `UPDATE session_lease SET expires_at = ${expiry(2)}
       WHERE owner_node = $1 RETURNING session_id, epoch`,
      [nodeId, ttlMs],
    );
    return rows.map(toLease);
  }

  /**
   * Takes up, with a new epoch, leases that name this node but that it did not know it had: given to
   * it by another node, or left by its previous life under the same NODE_ID (whose writes the new
   * epoch now refuses).
   */
  async takeUp(tx: Tx, nodeId: string, sessionIds: string[]): Promise<Lease[]> {
    const rows = await query<LeaseRow>(
      tx,
      `UPDATE session_lease SET epoch = epoch + 1
       WHERE owner_node = $1 AND session_id = ANY($2::text[]) RETURNING session_id, epoch`,
      [nodeId, sessionIds],
    );
    return rows.map(toLease);
  }

  /** Live nodes (a heartbeat within `ttlMs`) and sessions, for each node's fair share. */
  async census(tx: Tx, ttlMs: number): Promise<{ nodes: number; sessions: number }> {
    const row = await queryOne<{ nodes: number | string; sessions: number | string }>(
      tx,
      `SELECT (SELECT count(*) FROM node WHERE heartbeat > clock_timestamp() - $1 * interval '1 millisecond') AS nodes,
              (SELECT count(*) FROM session_lease) AS sessions`,
      [ttlMs],
    );
    return { nodes: num(row?.nodes), sessions: num(row?.sessions) };
  }

  /**
   * Takes up to `limit` leases nobody holds (unowned or expired; with `all`, any other node's),
   * bumping each one's epoch: from here on the previous owner's writes are refused.
   */
  async claim(tx: Tx, nodeId: string, ttlMs: number | null, limit: number, all: boolean): Promise<Lease[]> {
    const free = all
      ? `owner_node IS DISTINCT FROM $1`
      : `(owner_node IS NULL OR expires_at <= clock_timestamp())`;
    const rows = await query<LeaseRow>(
      tx,
      `UPDATE session_lease l SET owner_node = $1, epoch = l.epoch + 1, expires_at = ${expiry(2)}
       FROM (SELECT session_id FROM session_lease WHERE ${free}
             ORDER BY expires_at, session_id LIMIT $3 FOR UPDATE SKIP LOCKED) c
       WHERE l.session_id = c.session_id
       RETURNING l.session_id, l.epoch`,
      [nodeId, ttlMs, limit],
    );
    return rows.map(toLease);
  }

  /** Hands leases back (now expired, unowned) for another node to take. */
  async release(tx: Tx, nodeId: string, leases: Lease[]): Promise<number> {
    if (leases.length === 0) {
      return 0;
    }
    const rows = await query<{ session_id: string }>(
      tx,
      `UPDATE session_lease l SET owner_node = NULL, expires_at = clock_timestamp()
       FROM unnest($2::text[], $3::bigint[]) AS r(session_id, epoch)
       WHERE l.session_id = r.session_id AND l.epoch = r.epoch AND l.owner_node = $1
       RETURNING l.session_id`,
      [nodeId, leases.map((l) => l.sessionId), leases.map((l) => l.epoch)],
    );
    return rows.length;
  }

  /** Hands back every lease the node has, including any given to it that it had not taken up yet. */
  async releaseAll(tx: Tx, nodeId: string): Promise<number> {
    const rows = await query<{ session_id: string }>(
      tx,
      `UPDATE session_lease SET owner_node = NULL, expires_at = clock_timestamp()
       WHERE owner_node = $1 RETURNING session_id`,
      [nodeId],
    );
    return rows.length;
  }

  /**
   * Gives a new session to the live node with the fewest leases (this one when it is alone) and
   * returns who got it; undefined when the lease row existed already.
   */
  async assign(
    tx: Tx,
    sessionId: string,
    ttlMs: number | null,
    liveWithinMs: number,
    fallbackNode: string,
  ): Promise<{ owner: string; epoch: number } | undefined> {
    const row = await queryOne<{ owner_node: string; epoch: number | string }>(
      tx,
      `INSERT INTO session_lease (session_id, owner_node, epoch, expires_at)
       SELECT $1, coalesce(
         (SELECT n.id FROM node n
          WHERE n.heartbeat > clock_timestamp() - $3 * interval '1 millisecond'
          ORDER BY (SELECT count(*) FROM session_lease l WHERE l.owner_node = n.id), random()
          LIMIT 1), $4), 1, ${expiry(2)}
       ON CONFLICT (session_id) DO NOTHING
       RETURNING owner_node, epoch`,
      [sessionId, ttlMs, liveWithinMs, fallbackNode],
    );
    return row && { owner: row.owner_node, epoch: num(row.epoch) };
  }

  /**
   * The fence: true when `nodeId` still holds the session at `epoch` and its lease has not run out.
   * FOR SHARE makes a takeover (which updates the row) wait until this transaction has committed,
   * so the new owner's recovery sees everything the old one committed, and nothing comes after.
   */
  async holds(tx: Tx, sessionId: string, nodeId: string, epoch: number): Promise<boolean> {
    const row = await queryOne<{ ok: number }>(
      tx,
      `SELECT 1 AS ok FROM session_lease
       WHERE session_id = $1 AND owner_node = $2 AND epoch = $3 AND expires_at > clock_timestamp()
       FOR SHARE`,
      [sessionId, nodeId, epoch],
    );
    return row !== undefined;
  }
}

/** `clock_timestamp() + ttl`, or a lease that never runs out when the ttl parameter is null. */
function expiry(param: number): string {
  return `CASE WHEN $${param}::int IS NULL THEN 'infinity'::timestamptz
          ELSE clock_timestamp() + $${param}::int * interval '1 millisecond' END`;
}

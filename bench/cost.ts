// What a unit of work costs: SQL statements and commits (counted at the drivers, so Mailroom and the
// peers are counted the same way), CPU of this Node process, and CPU of the Postgres server's processes.
import { readdirSync, readFileSync } from 'node:fs';
import { Client } from 'pg';

let statements = 0;
let commits = 0;

function count(text: unknown): void {
  statements += 1;
  if (typeof text !== 'string') {
    return;
  }
  // Mailroom's fused transactions send `BEGIN; …` and `…; COMMIT` as one query: two statements each.
  if (/^\s*BEGIN;/i.test(text)) {
    statements += 1;
  }
  if (/;\s*COMMIT\s*$/i.test(text)) {
    statements += 1;
    commits += 1;
  } else if (/^\s*COMMIT\b/i.test(text)) {
    commits += 1;
  }
}

/** Counts every statement sent through `pg` (Mailroom on Postgres, LangGraph's checkpointer) and PGlite. */
export function instrumentDrivers(): void {
  const proto = Client.prototype as unknown as { query: (...args: unknown[]) => unknown };
  const query = proto.query;
  proto.query = function (this: unknown, ...args: unknown[]) {
    const first = args[0];
    count(typeof first === 'string' ? first : (first as { text?: string } | undefined)?.text);
    return query.apply(this, args);
  };
  // typeorm-pglite reaches PGlite through its CommonJS build; so does this require.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { PGlite } = require('@electric-sql/pglite') as {
    PGlite: { prototype: Record<'query' | 'exec', (...args: unknown[]) => unknown> };
  };
  for (const method of ['query', 'exec'] as const) {
    const original = PGlite.prototype[method];
    PGlite.prototype[method] = function (this: unknown, ...args: unknown[]) {
      count(args[0]);
      return original.apply(this, args);
    };
  }
}

/** CPU ms used so far by each process named `postgres` (the server and its backends), by pid. */
function postgresCpu(): Map<string, number> {
  const tick = 100; // USER_HZ on Linux
  const byPid = new Map<string, number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      if (name !== 'postgres') {
        continue;
      }
      const fields = stat.slice(close + 2).split(' ');
      byPid.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1000) / tick); // utime, stime
    } catch {
      // the process ended while we looked
    }
  }
  return byPid;
}

/** CPU ms the `postgres` processes used since `before` (a backend that ended meanwhile is not counted). */
function postgresCpuSince(before: Map<string, number>): number {
  let total = 0;
  for (const [pid, ms] of postgresCpu()) {
    total += Math.max(0, ms - (before.get(pid) ?? 0));
  }
  return total;
}

export interface Cost {
  statements: number;
  commits: number;
  nodeCpuMs: number;
  postgresCpuMs: number;
}

/** Starts a measurement; the returned function gives the cost since then, per unit of `units`. */
export function measureCost(): (units: number) => Cost {
  const s0 = statements;
  const c0 = commits;
  const cpu0 = process.cpuUsage();
  const pg0 = postgresCpu();
  return (units) => {
    const cpu = process.cpuUsage(cpu0);
    return {
      statements: (statements - s0) / units,
      commits: (commits - c0) / units,
      nodeCpuMs: (cpu.user + cpu.system) / 1000 / units,
      postgresCpuMs: postgresCpuSince(pg0) / units,
    };
  };
}

import { Injectable } from '@nestjs/common';
import { Tx } from 'src/database/database.service';
import { num, query, queryOne } from 'src/database/sql';

/** The scrape-time counts: two aggregate reads, the queue one served by the partial claim index. */
@Injectable()
export class MetricsRepository {
  async agentsByState(tx: Tx): Promise<Map<string, number>> {
    const rows = await query<{ state: string; n: number | string }>(
      tx,
      `SELECT state, count(*) AS n FROM agent GROUP BY state`,
    );
    return new Map(rows.map((r) => [r.state, num(r.n)]));
  }

  async queueDepth(tx: Tx): Promise<number> {
    const row = await queryOne<{ n: number | string }>(
      tx,
      `SELECT count(*) AS n FROM work_item WHERE state = 'queued'`,
    );
    return num(row?.n);
  }
}

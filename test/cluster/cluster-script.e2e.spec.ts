import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { PG_SERVER, describeCluster, query } from './support/cluster';
import { eventually } from './support/checks';
import { ROOT, ensureBuilt } from '../support/server-process';

/** True when nothing listens on the port. */
function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port with `n` free ports from it (the script takes consecutive ports). */
async function freeRun(n: number): Promise<number> {
  for (let base = 20_000 + Math.floor(Math.random() * 20_000); ; base += n) {
    const free = await Promise.all(Array.from({ length: n }, (_, i) => isFree(base + i)));
    if (free.every(Boolean)) {
      return base;
    }
  }
}

describeCluster('npm run cluster (scripts/cluster.mjs)', () => {
  const database = `mailroom_script_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;

  afterAll(() => query(PG_SERVER!, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`));

  it('creates the database, starts the nodes on consecutive ports with prefixed logs, and Ctrl-C stops them all', async () => {
    ensureBuilt();
    const base = await freeRun(2);
    const url = new URL(PG_SERVER!);
    url.pathname = `/${database}`;
    const script = spawn(process.execPath, [join(ROOT, 'scripts', 'cluster.mjs')], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: url.toString(),
        CLUSTER_NODES: '2',
        CLUSTER_BASE_PORT: String(base),
        LEASE_TTL_MS: '2000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    script.stdout.on('data', (c: Buffer) => (output += c.toString()));
    script.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => script.once('exit', (code) => resolve(code)));

    await eventually('both nodes to listen', () =>
      Promise.resolve(
        [0, 1].every((i) =>
          new RegExp(`^\\[node-${i}\\] .*Mailroom listening on http://127\\.0\\.0\\.1:${base + i}`, 'm').test(
            output,
          ),
        )
          ? true
          : undefined,
      ),
    );
    expect(output).toContain(`[cluster] created database ${database}`);
    for (const port of [base, base + 1]) {
      await expect(fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status)).resolves.toBe(200);
    }
    // Both are nodes of one cluster: each has a heartbeat row.
    const nodes = await query<{ id: string }>(url.toString(), `SELECT id FROM node ORDER BY id`);
    expect(nodes.map((n) => n.id)).toEqual(['node-0', 'node-1']);

    script.kill('SIGINT'); // what Ctrl-C sends
    await expect(exited).resolves.toBe(0);
    expect(output).toContain('[cluster] all nodes stopped');
    // Each node shut down cleanly: it left the cluster (its row removed) rather than dying.
    await expect(query(url.toString(), `SELECT id FROM node`)).resolves.toEqual([]);
    for (const port of [base, base + 1]) {
      await expect(isFree(port)).resolves.toBe(true);
    }
  });
});

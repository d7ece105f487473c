import { Cluster, describeCluster, query } from './support/cluster';
import { report, verifyRun } from './support/checks';
import { Load } from './support/load';
import { dbNow, sessionsOwnedBy } from './support/ownership';
import { PrivatePostgres } from './support/private-postgres';
import { Fault, inFlightAt, moreAcks } from './support/steps';

describeCluster('the database fails under a cluster', () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it("survives pg_terminate_backend of one node's connections (three times), losing nothing", async () => {
    // Each node names its connections (libpq's PGAPPNAME), so that one node's can be cut.
    cluster = await Cluster.start(2);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
    load.start();
    await moreAcks(load, 20);

    const victim = cluster.nodes[1];
    const faults: Fault[] = [];
    let terminated = 0;
    for (let round = 0; round < 3; round++) {
      const from = await dbNow(cluster);
      const sessions = await sessionsOwnedBy(cluster, victim.name);
      const rows = await cluster.query<{ ok: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = $1`,
        [victim.name],
      );
      terminated += rows.length;
      faults.push({ sessions, from, to: await dbNow(cluster) });
      await moreAcks(load, 20);
    }
    await load.stop();
    const inFlight = await inFlightAt(cluster, faults);

    // Both nodes' clients, the cut one's too: its pushes resume once it has reconnected.
    const figures = await verifyRun(cluster, load, { inFlight, watchers: cluster.live() });
    expect(terminated).toBeGreaterThan(0);
    expect(victim.server.alive).toBe(true);
    report("pg_terminate_backend of one node's connections", {
      ...figures,
      nodes: 2,
      rounds: 3,
      connectionsTerminated: terminated,
    });
  });

  describe('a Postgres restart under load', () => {
    let pg: PrivatePostgres | { unavailable: string };

    beforeAll(async () => {
      // Never the shared server: other suites use it. A server of this test's own, on its own port.
      pg = await PrivatePostgres.start();
      if ('unavailable' in pg) {
        console.log(
          `Postgres restart test not run: cannot start a private Postgres server (${pg.unavailable})`,
        );
      }
    });

    afterAll(async () => {
      await cluster?.close();
      cluster = undefined;
      if (!('unavailable' in pg)) {
        pg.destroy();
      }
    });

    it('loses no acknowledged task and completes none twice (private server, restarted twice)', async () => {
      if ('unavailable' in pg) {
        return; // said why in beforeAll
      }
      const server = pg;
      cluster = await Cluster.start(2, { server: server.url });
      const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
      load.start();
      await moreAcks(load, 20);

      const startedAt = async () =>
        (await query<{ up: Date }>(server.url, `SELECT pg_postmaster_start_time() AS up`))[0].up.getTime();
      const firstStart = await startedAt();
      const faults: Fault[] = [];
      for (let round = 0; round < 2; round++) {
        const from = await dbNow(cluster);
        server.restart('immediate');
        faults.push({ sessions: load.sessions, from, to: await dbNow(cluster) });
        await moreAcks(load, 20);
      }
      await load.stop();
      const inFlight = await inFlightAt(cluster, faults);

      const figures = await verifyRun(cluster, load, { inFlight, watchers: cluster.live() });
      expect(cluster.live()).toHaveLength(2);
      report('a Postgres restart under load (immediate)', {
        ...figures,
        nodes: 2,
        restarts: 2,
        refusedWhileDown: load.refused,
      });
      expect(await startedAt()).toBeGreaterThan(firstStart); // it really was restarted
    });
  });
});

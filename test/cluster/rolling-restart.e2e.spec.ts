import { Cluster, describeCluster } from './support/cluster';
import { percentile, report, verifyRun } from './support/checks';
import { Load } from './support/load';
import { dbNow, sessionsOwnedBy } from './support/ownership';
import { Fault, inFlightAt, moreAcks, takenOver } from './support/steps';

describeCluster('a rolling restart of all three nodes under load', () => {
  let cluster: Cluster | undefined;

  afterAll(() => cluster?.close());

  it('replaces every node (new one up, old one SIGTERM) without losing a task or completing one twice', async () => {
    cluster = await Cluster.start(3);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
    load.start();
    await moreAcks(load, 20);

    const faults: Fault[] = [];
    const handoffs: number[] = [];
    for (const old of [...cluster.nodes]) {
      const replacement = await cluster.addNode();
      await load.watchFrom(replacement);
      const held = await sessionsOwnedBy(cluster, old.name);
      const stoppedAt = await dbNow(cluster);
      await cluster.terminate(old); // a clean shutdown hands its leases back at once
      faults.push({ sessions: held, from: stoppedAt, to: await dbNow(cluster) });
      handoffs.push(...(await takenOver(cluster, held, old.name, stoppedAt)));
      await moreAcks(load, 20);
    }
    await load.stop();
    const inFlight = await inFlightAt(cluster, faults);

    expect(cluster.live().map((n) => n.name)).toEqual(['node-3', 'node-4', 'node-5']);
    // node-5 has watched since it booted; the first replacement (node-3) saw two later handovers.
    const figures = await verifyRun(cluster, load, { inFlight, watchers: cluster.live() });
    report('rolling restart of three nodes (SIGTERM)', {
      ...figures,
      nodes: 3,
      restarts: 3,
      handoffMs: { p50: percentile(handoffs, 50), p99: percentile(handoffs, 99), max: Math.max(...handoffs) },
    });
  });
});

import { Cluster, describeCluster } from './support/cluster';
import { eventually, percentile, report, verifyRun } from './support/checks';
import { AGENT, Load } from './support/load';
import { dbNow, sessionsOwnedBy } from './support/ownership';
import { inFlightAt, moreAcks, nodeWithItemInHand, takenOver } from './support/steps';

describeCluster('a node paused (SIGSTOP) past its lease, then resumed (SIGCONT)', () => {
  let cluster: Cluster | undefined;

  afterAll(() => cluster?.close());

  it('commits nothing more for the sessions it lost: their new owners run its items, each effect once', async () => {
    cluster = await Cluster.start(3);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
    load.start();
    await moreAcks(load, 30);

    const victim = await nodeWithItemInHand(cluster);
    const pausedAt = await dbNow(cluster);
    victim.server.signal('SIGSTOP');
    const stoppedAt = await dbNow(cluster);
    const lost = await sessionsOwnedBy(cluster, victim.name);
    const inFlight = await inFlightAt(cluster, [{ sessions: lost, from: pausedAt, to: stoppedAt }]);
    // An item whose effect was committed before the pause may show it twice (it runs again elsewhere);
    // any other effect twice would be a commit by the paused node after it woke up.
    const effectBefore = await cluster.query<{ id: string }>(
      `SELECT w.id FROM work_item w JOIN mail m ON m.session_id = w.session_id AND m.subject = w.prompt
        WHERE w.id = ANY($1) AND m.from_id = $2`,
      [[...inFlight], AGENT],
    );
    expect(inFlight.size).toBeGreaterThan(0);

    const times = await takenOver(cluster, lost, victim.name, pausedAt);
    await moreAcks(load, 20);
    victim.server.signal('SIGCONT');
    // It wakes up with its items' timers overdue and tries to go on: its health answers once it runs again.
    await expect(fetch(`${victim.server.url}/health`).then((r) => r.status)).resolves.toBe(200);
    // …and finds out that it lost them, which it says.
    const why = await eventually('the resumed node to say it lost its sessions', () =>
      Promise.resolve(/Lost the lease of .*|Refused a write for session .*/.exec(victim.server.output)?.[0]),
    );
    await moreAcks(load, 30);
    await load.stop();

    const figures = await verifyRun(cluster, load, {
      inFlight: new Set(effectBefore.map((r) => r.id)),
      watchers: cluster.live().filter((n) => n !== victim),
    });
    expect(victim.server.alive).toBe(true);
    report('SIGSTOP past the TTL, then SIGCONT', {
      ...figures,
      nodes: 3,
      lostSessions: lost.length,
      inFlight: inFlight.size,
      resumedNodeSaid: why,
      takeoverMs: { p50: percentile(times, 50), p99: percentile(times, 99), max: Math.max(...times) },
    });
  });
});

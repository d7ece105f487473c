import { Cluster, describeCluster } from './support/cluster';
import { eventually, percentile, report, runningItems, verifyRun } from './support/checks';
import { Load } from './support/load';
import { dbNow, sessionsOwnedBy } from './support/ownership';
import { inFlightAt, itemsRunningIn, moreAcks, nodeWithItemInHand, takenOver } from './support/steps';

describeCluster('a node killed with SIGKILL mid-task', () => {
  let cluster: Cluster | undefined;

  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  it('loses nothing: its sessions move to the others, and only its items in flight run again', async () => {
    cluster = await Cluster.start(3);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
    load.start();
    await moreAcks(load, 30);

    const victim = await nodeWithItemInHand(cluster);
    const killedAt = await dbNow(cluster);
    await cluster.kill(victim);
    const deadAt = await dbNow(cluster);
    // Its leases outlive it until they expire: these are the sessions and items it had.
    const orphaned = await sessionsOwnedBy(cluster, victim.name);
    expect((await itemsRunningIn(cluster, orphaned)).size).toBeGreaterThan(0);

    const times = await takenOver(cluster, orphaned, victim.name, killedAt);
    await moreAcks(load, 30);
    await load.stop();

    const inFlight = await inFlightAt(cluster, [{ sessions: orphaned, from: killedAt, to: deadAt }]);
    const figures = await verifyRun(cluster, load, { inFlight, watchers: cluster.live() });
    // Each item it had in hand ran again on its session's new owner: all but one whose end it
    // committed in the moment between the reading of the time and the kill (its record's `at` is
    // not before `killedAt`, so it counts as in flight, yet it had ended).
    const attempts = await cluster.query<{ id: string; attempts: number; ended: boolean }>(
      `SELECT w.id, w.attempts, EXISTS (
         SELECT 1 FROM history e WHERE e.session_id = w.session_id
           AND e.type IN ('async.task.completed', 'async.task.failed')
           AND e.payload->>'taskId' = w.id::text AND e.at <= $2) AS ended
       FROM work_item w WHERE w.id = ANY($1)`,
      [[...inFlight], deadAt],
    );
    const ranAgain = (r: { attempts: number; ended: boolean }) =>
      r.attempts >= 2 || (r.ended && r.attempts === 1);
    expect(attempts.filter((r) => !ranAgain(r))).toEqual([]);
    report('kill -9 of a node mid-task', {
      ...figures,
      nodes: 3,
      orphanedSessions: orphaned.length,
      inFlight: inFlight.size,
      takeoverMs: { p50: percentile(times, 50), p99: percentile(times, 99), max: Math.max(...times) },
    });
  });

  it('a node booting beside a busy one takes a share and runs nothing twice', async () => {
    cluster = await Cluster.start(1);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 250 });
    load.start();
    await moreAcks(load, 20);
    const inHandAtBoot = await runningItems(cluster, load.sessions);

    const bootedAt = await dbNow(cluster);
    const newcomer = await cluster.addNode();
    await load.watchFrom(newcomer);
    // The busy node hands idle sessions back for the newcomer's share; the newcomer adopts them.
    const firstShare = await eventually('the new node to own a session', async () => {
      const [row] = await cluster!.query<{ at: Date | null }>(
        `SELECT min(at) AS at FROM test_ownership_log WHERE owner_node = $1`,
        [newcomer.name],
      );
      return row.at ?? undefined;
    });
    await moreAcks(load, 30);
    await load.stop();

    // Nobody died: no effect may repeat, not even of the items in hand when the new node booted.
    const figures = await verifyRun(cluster, load, { inFlight: new Set(), watchers: cluster.live() });
    expect(figures.repeatedEffects).toBe(0);
    report('a node booting beside a busy one', {
      ...figures,
      nodes: 2,
      inHandAtBoot: inHandAtBoot.size,
      firstShareAfterBootMs: firstShare.getTime() - bootedAt.getTime(),
      sessionsMoved: (await sessionsOwnedBy(cluster, newcomer.name)).length,
    });
  });
});

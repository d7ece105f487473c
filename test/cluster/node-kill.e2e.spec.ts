import { Cluster, describeCluster } from './support/cluster';
import { eventually, percentile, report, runningItems, verifyRun } from './support/checks';
import { Load } from './support/load';
import { dbNow, sessionsOwnedBy, takeovers } from './support/ownership';

/** Resolves once the load has `n` more acknowledgements than now. */
function moreAcks(load: Load, n: number): Promise<true> {
  const target = load.acked.length + n;
  return eventually(`${n} more acknowledged tasks`, () =>
    Promise.resolve(load.acked.length >= target ? true : undefined),
  );
}

describeCluster('a node killed with SIGKILL mid-task', () => {
  let cluster: Cluster;

  afterEach(async () => {
    await cluster?.close();
  });

  it('loses nothing: its sessions move to the others, only its items in flight run again', async () => {
    cluster = await Cluster.start(3);
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 150 });
    load.start();
    await moreAcks(load, 30);

    // The victim is a node that owns sessions with items in hand.
    const victim = await eventually('a node with an item in hand', async () => {
      const running = await runningItems(cluster, load.sessions);
      for (const node of cluster.live()) {
        const owned = await sessionsOwnedBy(cluster, node.name);
        const [{ n }] = await cluster.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM work_item WHERE id = ANY($1) AND session_id = ANY($2)`,
          [[...running], owned],
        );
        if (n > 0) {
          return node;
        }
      }
      return undefined;
    });
    const killedAt = await dbNow(cluster);
    await cluster.kill(victim);
    const orphaned = await sessionsOwnedBy(cluster, victim.name);
    const inFlight = await itemsRunningIn(cluster, orphaned);
    expect(inFlight.size).toBeGreaterThan(0);

    const times = await eventually('every orphaned session taken over', async () => {
      const t = await takeovers(cluster, orphaned, victim.name, killedAt);
      return t.length === orphaned.length ? t : undefined;
    });
    await moreAcks(load, 30);
    await load.stop();

    const figures = await verifyRun(cluster, load, { inFlight, watchers: cluster.live() });
    // Each item the victim had in hand ran again, on its session's new owner.
    const retried = await cluster.query<{ attempts: number }>(`SELECT attempts FROM work_item WHERE id = ANY($1)`, [
      [...inFlight],
    ]);
    expect(retried.every((r) => r.attempts >= 2)).toBe(true);
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
    const load = await Load.setUp(cluster, { sessions: 6, delayMs: 150 });
    load.start();
    await moreAcks(load, 20);
    const inFlightBefore = await runningItems(cluster, load.sessions);

    const newcomer = await cluster.addNode();
    await load.watchFrom(newcomer);
    // It takes sessions over (handed back by the busy node) and works on them.
    await eventually('the new node to own a session', async () =>
      (await sessionsOwnedBy(cluster, newcomer.name)).length > 0 ? true : undefined,
    );
    await moreAcks(load, 30);
    await load.stop();

    // Nothing was in flight on a dead node: no effect may repeat, not even of the items in hand at the boot.
    const figures = await verifyRun(cluster, load, { inFlight: new Set(), watchers: [cluster.nodes[0]] });
    expect(figures.repeatedEffects).toBe(0);
    report('a node booting beside a busy one', {
      ...figures,
      nodes: 2,
      inHandAtBoot: inFlightBefore.size,
      sessionsMoved: (await sessionsOwnedBy(cluster, newcomer.name)).length,
    });
  });
});

async function itemsRunningIn(cluster: Cluster, sessions: string[]): Promise<Set<string>> {
  const rows = await cluster.query<{ id: string }>(
    `SELECT id FROM work_item WHERE session_id = ANY($1) AND state = 'running'`,
    [sessions],
  );
  return new Set(rows.map((r) => r.id));
}

import { Subject } from 'rxjs';
import { AgentLifecycleService } from 'src/agents/agent-lifecycle.service';
import { AgentRepository } from 'src/agents/agent.repository';
import { AgentWrites } from 'src/agents/agent-writes.repository';
import { Agent } from 'src/agents/agent.types';
import { ClusterHints } from 'src/cluster/cluster-hints.service';
import { SessionHint } from 'src/cluster/cluster.types';
import { LeaseService } from 'src/cluster/lease.service';
import { TimerHandle } from 'src/common/clock';
import { FakeClock } from 'src/common/fake-clock';
import { AppConfig } from 'src/config/app-config';
import { DatabaseService, Tx } from 'src/database/database.service';
import { HistoryService } from 'src/sessions/history.service';
import { SleepTimerService } from './sleep-timer.service';

const POLL_MS = 5_000;

/** A clock whose longer timers fire a millisecond before their time, as a real one may by its own reading. */
class EarlyClock extends FakeClock {
  override setTimeout(fn: () => void, ms: number): TimerHandle {
    return super.setTimeout(fn, ms > 1 ? ms - 1 : ms);
  }
}

/** A clock whose timers fire 50 ms late (a busy event loop). */
class LateClock extends FakeClock {
  override setTimeout(fn: () => void, ms: number): TimerHandle {
    return super.setTimeout(fn, ms + 50);
  }
}

/** The one transaction of a firing: the session, and the wake-up asked in it. */
interface Firing {
  sessionId: string;
  agentIds: string[];
  reason: string;
  dueBy?: string;
}

function setup(clock: FakeClock = new FakeClock()) {
  const tx = {} as Tx;
  const firings: Firing[] = [];
  /** Wake-ups started, finished or not (see `hold`). */
  const begun: Firing[] = [];
  /** While `gate` is pending, wake-up transactions stay under way. */
  const hold: { gate?: Promise<void> } = {};
  const failing = { next: 0 };
  const serving = new Set(['s1', 's2', 's3']);
  const remote$ = new Subject<SessionHint>();
  const stored: Agent[] = [];
  const db = {
    read: <T>(fn: (t: Tx) => Promise<T>) => fn(tx),
    afterCommit: (_t: Tx, fn: () => void) => fn(),
  };
  const agents = {
    listSleepingWithDeadline: (_t: Tx, sessionIds: string[]) =>
      Promise.resolve(stored.filter((a) => sessionIds.includes(a.sessionId))),
  };
  let open: string | undefined;
  const history = {
    inSession: async <T>(sessionId: string, fn: (t: Tx) => Promise<T>) => {
      open = sessionId;
      try {
        return await fn(tx);
      } finally {
        open = undefined;
      }
    },
    // A firing on its own: the same wake-up as in a batch of merged firings (covered on a database).
    // Made as the session's owner: fenced by this node's lease.
    inSessionMerged: <T>(sessionId: string, fn: (t: Tx) => Promise<T>, _merge: unknown, options: unknown) => {
      expect(options).toEqual({ owner: true });
      return history.inSession(sessionId, fn);
    },
  };
  const lifecycle = {
    now: () => new Date(clock.now()).toISOString(),
    wakeAll: async (
      _t: Tx,
      sessionId: string,
      agentIds: string[],
      reason: string,
      opts?: { dueBy?: string },
    ) => {
      const dueBy = opts?.dueBy;
      expect(open).toBe(sessionId); // inside that session's transaction
      begun.push({ sessionId, agentIds: [...agentIds].sort(), reason, dueBy });
      await hold.gate;
      if (failing.next > 0) {
        failing.next -= 1;
        throw new Error('database away');
      }
      firings.push({ sessionId, agentIds: [...agentIds].sort(), reason, dueBy });
      return agentIds;
    },
  };
  const leases = { register: () => undefined, isServing: (s: string) => serving.has(s) };
  const hints = { remote$, add: jest.fn() };
  const sut = new SleepTimerService(
    db as unknown as DatabaseService,
    agents as unknown as AgentRepository,
    {} as AgentWrites,
    lifecycle as unknown as AgentLifecycleService,
    history as unknown as HistoryService,
    leases as unknown as LeaseService,
    hints as unknown as ClusterHints,
    clock,
    { pollIntervalMs: POLL_MS } as AppConfig,
  );
  sut.onModuleInit();
  const at = (ms: number) => new Date(clock.now() + ms).toISOString();
  /** Moves the clock and lets the firings' promises settle. */
  const advance = async (ms: number) => {
    clock.advance(ms);
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { sut, clock, firings, begun, hold, failing, serving, remote$, stored, hints, at, advance };
}

describe(SleepTimerService.name, () => {
  it('keeps one clock timer, for the nearest deadline, however many are armed', async () => {
    const { sut, clock, firings, at, advance } = setup();
    sut.arm('s1', 'late', at(30_000));
    sut.arm('s1', 'soon', at(10_000));
    sut.arm('s2', 'middle', at(20_000));
    for (let i = 0; i < 100; i++) {
      sut.arm('s3', `later${i}`, at(60_000));
    }
    expect(clock.pending()).toBe(1);

    await advance(9_999);
    expect(firings).toEqual([]);
    await advance(1);
    expect(firings).toEqual([{ sessionId: 's1', agentIds: ['soon'], reason: 'timer', dueBy: at(0) }]);
    expect(clock.pending()).toBe(1);
    await advance(10_000);
    expect(firings.map((f) => f.agentIds)).toEqual([['soon'], ['middle']]);
    await advance(40_000);
    expect(firings.map((f) => f.agentIds.length)).toEqual([1, 1, 1, 100]);
    expect(clock.pending()).toBe(0);
  });

  it('wakes the sleepers of one session that are due together in one transaction, one per session', async () => {
    const { sut, firings, at, advance } = setup();
    for (const agentId of ['c', 'a', 'b']) {
      sut.arm('s1', agentId, at(10_000));
    }
    sut.arm('s2', 'x', at(10_000));
    sut.arm('s1', 'notYet', at(10_001));

    await advance(10_000);
    expect(firings).toEqual([
      { sessionId: 's1', agentIds: ['a', 'b', 'c'], reason: 'timer', dueBy: at(0) },
      { sessionId: 's2', agentIds: ['x'], reason: 'timer', dueBy: at(0) },
    ]);
    await advance(1);
    expect(firings[2]).toMatchObject({ sessionId: 's1', agentIds: ['notYet'] });
  });

  it('wakes the sleepers that come due during a wake-up of their session together in the next one', async () => {
    const { sut, begun, firings, hold, at, advance } = setup();
    let release!: () => void;
    hold.gate = new Promise<void>((resolve) => (release = resolve));
    sut.arm('s1', 'a', at(1_000));
    sut.arm('s1', 'b', at(1_001));
    sut.arm('s2', 'x', at(1_001));
    sut.arm('s1', 'c', at(1_002));
    await advance(1_002);
    // s1's first transaction is under way: b and c wait for it; s2 waits for nobody.
    expect(begun.map((f) => [f.sessionId, f.agentIds])).toEqual([
      ['s1', ['a']],
      ['s2', ['x']],
    ]);
    hold.gate = undefined;
    release();
    await advance(0);
    expect(begun.map((f) => f.agentIds)).toEqual([['a'], ['x'], ['b', 'c']]);
    expect(firings).toHaveLength(3);
  });

  it('takes every deadline that has passed when its timer fires late', async () => {
    const { sut, firings, at, advance } = setup(new LateClock());
    sut.arm('s1', 'a', at(1_000));
    sut.arm('s1', 'b', at(1_020));
    sut.arm('s1', 'c', at(1_040));
    sut.arm('s1', 'd', at(1_100));
    await advance(1_050);
    expect(firings).toEqual([{ sessionId: 's1', agentIds: ['a', 'b', 'c'], reason: 'timer', dueBy: at(0) }]);
    await advance(100);
    expect(firings[1]).toMatchObject({ agentIds: ['d'] });
  });

  it('replaces a deadline, and clears it with null', async () => {
    const { sut, clock, firings, at, advance } = setup();
    sut.arm('s1', 'a', at(10_000));
    sut.arm('s1', 'a', at(30_000));
    sut.arm('s1', 'b', at(20_000));
    sut.arm('s1', 'b', null);
    expect(clock.pending()).toBe(1);
    await advance(29_999);
    expect(firings).toEqual([]);
    await advance(1);
    expect(firings).toEqual([expect.objectContaining({ agentIds: ['a'] })]);

    sut.arm('s1', 'c', at(1_000));
    sut.arm('s1', 'c', null);
    expect(clock.pending()).toBe(0);
  });

  it('drops the deadlines of released sessions, and arms none for a session it does not serve', async () => {
    const { sut, clock, firings, serving, at, advance } = setup();
    sut.arm('s1', 'a', at(1_000));
    sut.arm('s2', 'b', at(2_000));
    sut.arm('elsewhere', 'c', at(500));
    await sut.release(['s1']);
    serving.delete('s1');
    await advance(5_000);
    expect(firings).toEqual([expect.objectContaining({ sessionId: 's2', agentIds: ['b'] })]);
    expect(clock.pending()).toBe(0);
  });

  it('does nothing for a session that moved away before its deadline came', async () => {
    const { sut, firings, serving, at, advance } = setup();
    sut.arm('s1', 'a', at(1_000));
    serving.delete('s1');
    await advance(1_000);
    expect(firings).toEqual([]);
  });

  it('tries a failed firing again after the poll interval', async () => {
    const { sut, firings, failing, at, advance } = setup();
    failing.next = 1;
    sut.arm('s1', 'a', at(1_000));
    sut.arm('s1', 'b', at(1_000));
    await advance(1_000);
    expect(firings).toEqual([]);
    await advance(POLL_MS - 1);
    expect(firings).toEqual([]);
    await advance(1);
    expect(firings).toEqual([expect.objectContaining({ sessionId: 's1', agentIds: ['a', 'b'] })]);
  });

  it('lets a deadline set since a failed firing win over its retry', async () => {
    const { sut, firings, failing, at, advance } = setup();
    failing.next = 1;
    sut.arm('s1', 'a', at(1_000));
    await advance(1_000);
    sut.arm('s1', 'a', at(60_000)); // slept again meanwhile
    await advance(POLL_MS);
    expect(firings).toEqual([]);
    await advance(60_000);
    expect(firings).toHaveLength(1);
  });

  it('arms again when the clock timer fires a moment before the deadline by the clock', async () => {
    const { sut, clock, firings, at, advance } = setup(new EarlyClock());
    sut.arm('s1', 'a', at(1_000));
    await advance(999);
    expect(firings).toEqual([]);
    expect(clock.pending()).toBe(1);
    await advance(1);
    expect(firings).toEqual([expect.objectContaining({ agentIds: ['a'] })]);
  });

  it('arms the deadlines kept in the database when it serves sessions, and again on a remote hint', async () => {
    const { sut, firings, stored, remote$, at, advance } = setup();
    const sleeper = (sessionId: string, agentId: string, until: string) =>
      ({ sessionId, agentId, sleepingUntil: until }) as Agent;
    stored.push(sleeper('s1', 'a', at(1_000)), sleeper('s2', 'b', at(2_000)));
    await sut.serve(['s1']);
    stored.push(sleeper('s3', 'c', at(3_000)));
    remote$.next({ sessionId: 's3', timers: true });
    remote$.next({ sessionId: 'not-mine', timers: true });
    await advance(0);
    await advance(5_000);
    expect(firings.map((f) => f.agentIds[0])).toEqual(['a', 'c']);
  });

  it('arms once the transaction commits, and hints the owner', () => {
    const { sut, clock, hints, at } = setup();
    sut.armAfterCommit({} as Tx, { sessionId: 's1', agentId: 'a', sleepingUntil: at(1_000) });
    expect(hints.add).toHaveBeenCalledWith(expect.anything(), 's1', { timers: true });
    expect(clock.pending()).toBe(1);
  });

  it('cancels its timer on module destroy and arms nothing after', () => {
    const { sut, clock, at } = setup();
    sut.arm('s1', 'a', at(1_000));
    sut.onModuleDestroy();
    expect(clock.pending()).toBe(0);
    sut.arm('s1', 'b', at(1_000));
    expect(clock.pending()).toBe(0);
  });
});

import { Cost, measureCost } from '../cost';
import { oneAtATime, percentile, runShape } from '../stats';

/** The workloads every runtime is measured on: agents working at once × units each, then one at a time. */
// BENCH_QUICK=1 runs a tenth of the work: a check that the bench still runs, not a measurement.
const quick = process.env.BENCH_QUICK === '1';
export const SHAPES = [
  { agents: 20, perAgent: quick ? 10 : 100 },
  { agents: 200, perAgent: quick ? 1 : 10 },
] as const;
export const SEQUENTIAL = quick ? 20 : 200;

/**
 * Before each shape, every runtime runs its warm-up, unmeasured, on agents of its own: the shape's
 * agents with a quarter of its units, so that what is measured is code the JIT has compiled (a cold
 * first shape ran at two thirds of the speed of the same shape run again).
 */
export function warmUpOf(shape: { agents: number; perAgent: number }): { agents: number; perAgent: number } {
  return { agents: shape.agents, perAgent: Math.ceil(shape.perAgent / 4) };
}

export interface ShapeResult {
  agents: number;
  perAgent: number;
  unitsPerSecond: number;
  cost: Cost;
}

export interface RuntimeResult {
  runtime: string;
  durable: boolean;
  shapes: ShapeResult[];
  latencyP50: number;
  latencyP99: number;
}

/** A peer runtime as the bench drives it: `unit` runs one agent's n-th unit of work to its end. */
export interface Peer {
  runtime: string;
  durable: boolean;
  /** Called once per shape with the number of agents, before its units run. */
  prepare(agents: number): Promise<(agent: number, n: number) => Promise<unknown>>;
  close(): Promise<void>;
}

export async function measurePeer(peer: Peer): Promise<RuntimeResult> {
  const shapes: ShapeResult[] = [];
  for (const { agents, perAgent } of SHAPES) {
    const warm = warmUpOf({ agents, perAgent });
    await runShape(warm.agents, warm.perAgent, await peer.prepare(agents));
    const unit = await peer.prepare(agents);
    const done = measureCost();
    const unitsPerSecond = await runShape(agents, perAgent, unit);
    shapes.push({ agents, perAgent, unitsPerSecond, cost: done(agents * perAgent) });
  }
  const unit = await peer.prepare(1);
  const times = await oneAtATime(SEQUENTIAL, (n) => unit(0, n));
  await peer.close();
  return {
    runtime: peer.runtime,
    durable: peer.durable,
    shapes,
    latencyP50: percentile(times, 50),
    latencyP99: percentile(times, 99),
  };
}

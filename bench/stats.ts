/** The p-th percentile (0–100) of `xs`, nearest rank. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) {
    return NaN;
  }
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Runs `agents` loops at once, each doing `perAgent` units one after the other; returns units per second. */
export async function runShape(
  agents: number,
  perAgent: number,
  unit: (agent: number, n: number) => Promise<unknown>,
): Promise<number> {
  const start = performance.now();
  await Promise.all(
    Array.from({ length: agents }, async (_, a) => {
      for (let n = 0; n < perAgent; n++) {
        await unit(a, n);
      }
    }),
  );
  return (agents * perAgent) / ((performance.now() - start) / 1000);
}

/** Latencies (ms) of `count` units run one at a time. */
export async function oneAtATime(count: number, unit: (n: number) => Promise<unknown>): Promise<number[]> {
  const times: number[] = [];
  for (let n = 0; n < count; n++) {
    const t0 = performance.now();
    await unit(n);
    times.push(performance.now() - t0);
  }
  return times;
}

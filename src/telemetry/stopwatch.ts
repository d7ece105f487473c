import { performance } from 'node:perf_hooks';

/**
 * Elapsed seconds for metrics and spans only, never for a decision: a monotonic wall-time reading,
 * which the injectable Clock (the time behaviour runs on, fake in tests) could not give meaning to.
 */
export function stopwatch(): () => number {
  const start = performance.now();
  return () => (performance.now() - start) / 1000;
}

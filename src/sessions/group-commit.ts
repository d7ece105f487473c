import { RpcError } from 'src/common/rpc-error';

/** One caller's unit of work waiting for a batch; settled only once the batch that holds it has committed. */
export interface PendingUnit<R = unknown> {
  resolve(value: R): void;
  reject(reason: unknown): void;
}

/**
 * Commits a key's units in batches, one batch per key in flight at a time (group commit).
 *
 * A unit that arrives while its key has no batch in flight starts one at once, alone: an idle system
 * pays no waiting. Units that arrive while a batch is in flight wait for it and then go together
 * in the next one (at most `maxBatch`), so under load one commit carries many units and the batch
 * size follows the load. Between two batches the lane lets one turn of the event loop pass, so that
 * the writes the settled units lead to go together too. Units of a key are committed, and settled, in the order they arrived.
 *
 * Backpressure: when `maxPending` units of a key already wait (the database is slower than the
 * callers), a new one is refused with `unavailable` (safe to retry) instead of queueing without bound.
 */
export class GroupCommit<K, U extends PendingUnit> {
  private readonly waiting = new Map<K, U[]>();

  constructor(
    /** Runs one batch and settles each of its units (resolve after the commit, or reject). Never throws. */
    private readonly commit: (key: K, units: U[]) => Promise<void>,
    private readonly limits: { maxBatch: number; maxPending: number },
    private readonly describe: (key: K) => string = String,
  ) {}

  /** Units of `key` not yet in a batch (the one in flight excluded). */
  pending(key: K): number {
    return this.waiting.get(key)?.length ?? 0;
  }

  submit(key: K, unit: U): void {
    const queue = this.waiting.get(key);
    if (queue) {
      if (queue.length >= this.limits.maxPending) {
        unit.reject(
          new RpcError(
            'unavailable',
            `${queue.length} writes already wait for ${this.describe(key)}: the database is behind; retry later`,
          ),
        );
        return;
      }
      queue.push(unit);
      return;
    }
    // No batch in flight for this key: this unit starts one now.
    this.waiting.set(key, []);
    void this.drain(key, [unit]);
  }

  private async drain(key: K, first: U[]): Promise<void> {
    let batch = first;
    for (;;) {
      try {
        await this.commit(key, batch);
      } catch (err) {
        batch.forEach((u) => u.reject(err)); // a bug in `commit`; the next batch still runs
      }
      // The settled callers' next writes (their continuations run in the promise jobs the settling
      // queued) and what the event loop has received meanwhile join the next batch, instead of the
      // first of them committing alone.
      await new Promise<void>((resolve) => setImmediate(resolve));
      const queue = this.waiting.get(key)!;
      if (queue.length === 0) {
        this.waiting.delete(key);
        return;
      }
      batch = queue.splice(0, this.limits.maxBatch);
    }
  }
}

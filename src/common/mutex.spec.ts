import { Semaphore } from './mutex';

describe(Semaphore.name, () => {
  it('lets at most `limit` run at once and the rest in arrival order', async () => {
    const sut = new Semaphore(2);
    const order: string[] = [];
    const gates = new Map<string, () => void>();
    const job = (name: string) =>
      sut.run(
        () =>
          new Promise<void>((resolve) => {
            order.push(name);
            gates.set(name, resolve);
          }),
      );
    const all = ['a', 'b', 'c', 'd'].map(job);
    await Promise.resolve();
    expect(order).toEqual(['a', 'b']);
    expect(sut.inFlight).toBe(2);
    gates.get('a')!();
    await all[0];
    await Promise.resolve();
    expect(order).toEqual(['a', 'b', 'c']);
    gates.get('b')!();
    gates.get('c')!();
    await Promise.all(all.slice(1, 3));
    gates.get('d')!();
    await Promise.all(all);
    expect(sut.inFlight).toBe(0);
  });

  it('drops a waiter whose signal aborts, without taking a slot', async () => {
    const sut = new Semaphore(1);
    let release!: () => void;
    const first = sut.run(() => new Promise<void>((r) => (release = r)));
    const controller = new AbortController();
    let ran = false;
    const waiting = sut.run(() => {
      ran = true;
      return Promise.resolve();
    }, controller.signal);
    controller.abort(new Error('stopped'));
    await expect(waiting).rejects.toThrow('stopped');
    release();
    await first;
    expect(ran).toBe(false);
    expect(sut.inFlight).toBe(0);
    await expect(sut.run(() => Promise.resolve(42))).resolves.toBe(42);
  });
});
